"""Document-aware attention on packed sequences.

Every document ends with eos, so a window's document segments follow from the eos positions
alone. Position ids restart at each document, and attention is causal within a document only:
with FlashAttention-2 transformers turns restarting position ids into varlen attention; with SDPA
(and on CPU) an explicit block-diagonal causal mask gives the same result exactly.
"""
from __future__ import annotations

import torch


def doc_segments(ids: torch.Tensor, eos: int) -> torch.Tensor:
    """Segment index of every token: a new document starts after each eos."""
    prev_eos = torch.zeros_like(ids, dtype=torch.long)
    prev_eos[:, 1:] = (ids[:, :-1] == eos).long()
    return prev_eos.cumsum(dim=1)


def doc_inputs(ids: torch.Tensor, eos: int, *, flash: bool = False) -> dict:
    """Extra model inputs (position_ids, and for SDPA a 4D mask) isolating packed documents."""
    seg = doc_segments(ids, eos)
    T = ids.shape[1]
    ar = torch.arange(T, device=ids.device).expand_as(ids)
    # position of each segment's first token, broadcast along the segment
    starts = torch.zeros_like(seg)
    is_start = torch.ones_like(seg, dtype=torch.bool)
    is_start[:, 1:] = seg[:, 1:] != seg[:, :-1]
    starts = torch.where(is_start, ar, torch.zeros_like(ar)).cummax(dim=1).values
    out = {"position_ids": ar - starts}
    if not flash:
        causal = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()
        out["attention_mask"] = ((seg.unsqueeze(2) == seg.unsqueeze(1)) & causal).unsqueeze(1)
    return out
