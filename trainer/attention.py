"""Document-aware attention on packed sequences, for every attention implementation.

Every document ends with eos, so a window's document segments follow from the eos positions
alone. Position ids restart at each document, and attention is causal within a document only:

- SDPA: an explicit block-diagonal causal mask [B, 1, T, T] (exact);
- FlashAttention-2/3, flex_attention and eager: the packed micro-batch is flattened to ONE row whose
  position ids restart at every document (and every row); transformers turns restarting position ids
  into varlen attention (cu_seqlens) for FlashAttention, a BlockMask for flex, or a packed-sequence
  mask for eager, only at batch size 1, so a [B, T] batch with B > 1 would silently attend across
  documents (and eager misreads a boolean 4D mask). The targets at the row seams are masked out of the loss.
- ``varlen`` (``trainer.kernels.varlen``): the same one flattened row, plus the documents' cumulative
  offsets (``cu_seq_lens_q/_k``, int32) and the row length as ``max_length_q/_k``; no mask is built,
  on a GPU torch's ``varlen_attn`` runs on the offsets. With ``doc_mask=False`` every original row is
  one sequence.

``packed_inputs`` is the one place that decides this; the training step, validation and the
benchmark all call it.
"""
from __future__ import annotations

import torch

# documents from restarting position ids (transformers builds varlen / packed-sequence masks from them;
# for flex_attention a block-sparse BlockMask)
FLATTENED = ("flash_attention_2", "flash_attention_3", "flex_attention", "eager")
# flattened too, and the documents passed explicitly as cumulative offsets (trainer.kernels.varlen)
VARLEN = "varlen"


def doc_segments(ids: torch.Tensor, eos: int) -> torch.Tensor:
    """Segment index of every token: a new document starts after each eos."""
    prev_eos = torch.zeros_like(ids, dtype=torch.long)
    prev_eos[:, 1:] = (ids[:, :-1] == eos).long()
    return prev_eos.cumsum(dim=1)


def doc_positions(seg: torch.Tensor) -> torch.Tensor:
    """Position ids restarting at 0 at the first token of every segment."""
    ar = torch.arange(seg.shape[1], device=seg.device).expand_as(seg)
    is_start = torch.ones_like(seg, dtype=torch.bool)
    is_start[:, 1:] = seg[:, 1:] != seg[:, :-1]
    starts = torch.where(is_start, ar, torch.zeros_like(ar)).cummax(dim=1).values
    return ar - starts


def doc_inputs(ids: torch.Tensor, eos: int, *, flash: bool = False) -> dict:
    """Extra model inputs (position_ids, and unless ``flash`` a 4D mask) isolating packed documents."""
    seg = doc_segments(ids, eos)
    out = {"position_ids": doc_positions(seg)}
    if not flash:
        T = ids.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()
        out["attention_mask"] = ((seg.unsqueeze(2) == seg.unsqueeze(1)) & causal).unsqueeze(1)
    return out


def packed_inputs(ids: torch.Tensor, valid: torch.Tensor, eos: int, *, attn: str, doc_mask: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(ids, valid, extra model inputs) of a packed micro-batch ``ids`` [B, T] for implementation ``attn``.

    ``valid`` [B, T-1] marks the predicted positions that count. With FlashAttention, eager or varlen the
    batch comes back as one row [1, B*T] (see the module doc); otherwise shapes are unchanged."""
    if attn in FLATTENED or attn == VARLEN:
        B, T = ids.shape
        seg = doc_segments(ids, eos) if doc_mask else torch.zeros_like(ids)
        pos = doc_positions(seg)  # restarts at every document and at every row start
        flat_valid = torch.zeros(B, T, dtype=torch.bool, device=ids.device)
        flat_valid[:, :-1] = valid  # the last token of a row never predicts the next row's first
        extra = {"position_ids": pos.reshape(1, B * T)}
        if attn == VARLEN:
            from trainer.kernels.varlen import varlen_inputs

            # no document crosses a row seam, so the row length bounds every document
            extra.update(varlen_inputs(extra["position_ids"], max_length=T))
        return ids.reshape(1, B * T), flat_valid.reshape(1, B * T)[:, :-1], extra
    if not doc_mask:
        return ids, valid, {}
    return ids, valid, doc_inputs(ids, eos, flash=False)
