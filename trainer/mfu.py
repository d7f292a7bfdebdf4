"""Model FLOPs utilisation: achieved model FLOP/s over the peak of ALL the devices doing the work.

    MFU = tokens/s (global) x model FLOPs per token / (world size x per-device peak)

Dividing global throughput by one device's peak (the mistake this module exists to prevent)
reads N times too high on N GPUs. Peaks are dense bf16 tensor-core FLOP/s from the vendors' data
sheets (no sparsity); ``SCALING_PEAK_TFLOPS`` overrides the table (another GPU, clocks capped).
"""
from __future__ import annotations

import os

# name fragment (as torch.cuda.get_device_name reports it) -> dense bf16 TFLOP/s; first match wins
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
)
OVERRIDE_ENV = "SCALING_PEAK_TFLOPS"


def peak_flops(device_name: str | None) -> float | None:
    """Per-device peak FLOP/s of ``device_name`` (None when unknown); the env override wins."""
    if os.environ.get(OVERRIDE_ENV):
        return float(os.environ[OVERRIDE_ENV]) * 1e12
    if not device_name:
        return None
    return next((t * 1e12 for k, t in PEAK_BF16_TFLOPS if k in device_name), None)


def device_peak_flops(device) -> float | None:
    import torch

    device = torch.device(device)
    if os.environ.get(OVERRIDE_ENV):
        return peak_flops(None)
    if device.type != "cuda":
        return None
    return peak_flops(torch.cuda.get_device_name(device))


def mfu(tokens_per_s: float, flops_per_token: float, world_size: int, peak_per_device: float | None) -> float | None:
    """``tokens_per_s`` is the global rate (all ranks together)."""
    if not peak_per_device:
        return None
    return tokens_per_s * flops_per_token / (world_size * peak_per_device)
