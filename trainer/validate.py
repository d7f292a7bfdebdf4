"""Validation loss per stream on fixed held-out windows."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def val_windows(tokens: np.ndarray, seq_len: int, n: int) -> np.ndarray:
    """``n`` evenly spaced windows of ``seq_len`` tokens (all of them if fewer exist)."""
    total = len(tokens) // seq_len
    if total == 0:
        return np.asarray(tokens[None, : len(tokens)], dtype=np.int64)
    idx = np.unique(np.linspace(0, total - 1, num=min(n, total)).round().astype(int))
    return np.stack([np.asarray(tokens[i * seq_len:(i + 1) * seq_len], dtype=np.int64) for i in idx])


@torch.no_grad()
def val_loss(model, windows: np.ndarray, batch_size: int = 16) -> float:
    """Mean next-token NLL (nats per predicted token)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for b in range(0, len(windows), batch_size):
        ids = torch.from_numpy(windows[b:b + batch_size]).to(device)
        logits = model(input_ids=ids).logits.float()
        total += F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum").item()
        count += ids[:, 1:].numel()
    model.train(was_training)
    return total / count
