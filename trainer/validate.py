"""Validation loss per stream on fixed held-out windows, by the training loss path.

The windows are packed like training sequences, so validation uses what training uses
(``trainer.attention.packed_inputs``: document masks and restarting positions for the model's
attention implementation; ``trainer.kernels.chunked_ce.lm_loss``: the chunked LM head, never the
[tokens, vocab] float32 logits). With several processes each rank takes every world-th batch
(all ranks run the same number of forwards, as FSDP's collectives need) and the sums are
all-reduced.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def val_windows(tokens: np.ndarray, seq_len: int, n: int) -> np.ndarray:
    """``n`` evenly spaced windows of ``seq_len`` tokens (all of them if fewer exist)."""
    total = len(tokens) // seq_len
    if total == 0:
        return np.asarray(tokens[None, : len(tokens)], dtype=np.int64)
    idx = np.unique(np.linspace(0, total - 1, num=min(n, total)).round().astype(int))
    return np.stack([np.asarray(tokens[i * seq_len:(i + 1) * seq_len], dtype=np.int64) for i in idx])


@torch.no_grad()
def val_loss(model, windows: np.ndarray, batch_size: int = 16, *, eos: int | None = None, chunked: bool = True,
             precision: str = "amp-bf16") -> float:
    """Mean next-token NLL (nats per predicted token); ``eos`` given: documents isolated as in training."""
    from trainer.attention import packed_inputs
    from trainer.kernels.chunked_ce import lm_loss
    from trainer.model import autocast
    from trainer.parallel import all_reduce_sum, reshard, world

    rank, n_ranks = world() if torch.distributed.is_initialized() else (0, 1)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    attn = getattr(getattr(model, "config", None), "_attn_implementation", "sdpa")
    batches = [windows[b:b + batch_size] for b in range(0, len(windows), batch_size)]
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # summed NLL, predicted tokens
    try:
        for k in range(math.ceil(len(batches) / n_ranks)):
            j = k * n_ranks + rank
            ids = torch.from_numpy(batches[min(j, len(batches) - 1)]).to(device)
            valid = torch.ones(ids.shape[0], ids.shape[1] - 1, dtype=torch.bool, device=device)
            ids, valid, extra = packed_inputs(ids, valid, -1 if eos is None else eos, attn=attn, doc_mask=eos is not None)
            with autocast(device, precision):
                s = lm_loss(model, ids, valid, extra, chunked=chunked)
            if j < len(batches):  # a rank past the end ran a padding forward for the collectives
                sums[0] += s.double()
                sums[1] += valid.sum()
    finally:
        model.train(was_training)
        reshard(model)
    all_reduce_sum(sums)
    return float(sums[0] / sums[1])
