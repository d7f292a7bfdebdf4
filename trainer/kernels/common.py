"""What the LM-head losses share (trainer/kernels/chunked_ce.py, trainer/kernels/fused_ce.py): the ignore
index, the compute dtype under autocast, the flattening of hidden states and targets, and whether
torch.compile can run on a device."""
from __future__ import annotations

import importlib.util
import shutil

import torch

IGNORE = -100


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype the matmuls of ``t`` run in: the autocast dtype when autocast is on, else ``t``'s."""
    dev = t.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return t.dtype


def _prepare(hidden, targets, valid_mask):
    """(hidden [N, d], targets [N] with ignored ones set to 0, valid [N] bool) of a batch."""
    d = hidden.shape[-1]
    hidden = hidden.reshape(-1, d)
    targets = targets.reshape(-1)
    valid = targets != IGNORE
    if valid_mask is not None:
        valid = valid & valid_mask.reshape(-1).to(torch.bool)
    safe = torch.where(valid, targets, torch.zeros_like(targets))
    return hidden, safe, valid


def compile_unavailable(device, backend: str = "inductor") -> str | None:
    """Why torch.compile cannot run on ``device`` with ``backend`` (None when it can)."""
    if not hasattr(torch, "compile"):
        return "this torch has no torch.compile"
    try:
        import torch._dynamo as dynamo

        if not dynamo.is_dynamo_supported():
            return "torch.compile (dynamo) is not supported on this Python"
    except Exception as e:  # noqa: BLE001
        return f"torch._dynamo unavailable ({e})"
    dev = torch.device(device)
    if backend == "inductor" and dev.type == "cpu" and not any(shutil.which(c) for c in ("cc", "gcc", "clang", "c++", "g++")):
        return "inductor on CPU needs a C/C++ compiler and none was found"
    if backend == "inductor" and dev.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "inductor on CUDA needs triton"
    return None
