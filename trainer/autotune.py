"""``micro_batch_size: auto`` and ``activation_checkpointing: auto``, resolved from ``scaling memory``.

At run start the trainer knows what the plan did not: the device and its memory, the world size, the
attention implementation in force. ``resolve_memory`` turns the 'auto' values of a train config into
concrete ones with the estimate of ``scaling.memory`` (the figure `scaling memory` prints for the same
settings), within ``train.memory_fraction`` of the device:

- ``micro_batch_size: auto``: the largest divisor of the process's share of the global batch whose step
  fits (divisors, so that every micro-batch of a step is full);
- ``activation_checkpointing: auto``: none when a micro-batch of at least ``MIN_MICRO`` sequences (or the
  whole share, if smaller) fits without recompute, else full checkpointing (recompute costs about a
  quarter of a step; a micro-batch too small to fill the device costs more). Selective per-op
  checkpointing is used only when asked for: its memory is modelled but not yet measured on a GPU.

Nothing fits: a ``ConfigError`` naming the field, before any model is built. Both settings are
operational (never in the run id); result.json's ``effective`` block records what was chosen.
"""
from __future__ import annotations

import dataclasses
import math
import os

import torch

from scaling.errors import ConfigError
from scaling.memory import GIB, MemoryPlan, estimate
from scaling.shapes import ModelShape
from scaling.spec import TrainConfig, ac_mode

MIN_MICRO = 4  # sequences per micro-batch below which recompute is the cheaper way to fit (seq 2048: 8k tokens)
CUDA_OVERHEAD_GIB = 4.0  # CUDA context, NCCL buffers, fragmentation (as `scaling memory`)


def device_memory_gib(device: torch.device) -> float:
    """The device's memory: the GPU's, or the host's RAM for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory / GIB
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB


def step_plan(shape: ModelShape, tc: TrainConfig, *, world: int, micro: int, ac, attn: str, device: torch.device,
              memory_gib: float) -> MemoryPlan:
    """``scaling memory``'s estimate of one training step with these settings (``memory_gib``: the budget)."""
    from trainer.parallel import fsdp_in_force

    per_rank = math.ceil(tc.batch_size / world)
    cuda = device.type == "cuda"
    return estimate(shape, model="run", gpus=world, micro_batch=micro, seq=tc.seq_len, activation_checkpointing=ac,
                    chunked_ce=tc.chunked_ce or tc.liger_ce, compiled_ce=tc.compiled_ce, precision=tc.precision,
                    gpu_memory_gib=memory_gib, overhead_gib=CUDA_OVERHEAD_GIB if cuda else 0.0,
                    fsdp=fsdp_in_force(tc, world), attention="sdpa" if attn == "sdpa" and tc.doc_mask else "flash",
                    accumulation=math.ceil(per_rank / micro), adamw="fused" if cuda else "foreach")


def resolve_memory(shape: ModelShape, tc: TrainConfig, *, world: int, device: torch.device, attn: str,
                   memory_gib: float | None = None) -> TrainConfig:
    """``tc`` with its 'auto' micro-batch and checkpointing replaced by what fits ``memory_fraction`` of
    ``memory_gib`` (default: the device's memory); ``tc`` itself when neither is 'auto'."""
    auto_micro, auto_ac = tc.micro_batch_size == "auto", ac_mode(tc.activation_checkpointing)[0] == "auto"
    if not (auto_micro or auto_ac):
        return tc
    budget = tc.memory_fraction * (device_memory_gib(device) if memory_gib is None else memory_gib)
    per_rank = math.ceil(tc.batch_size / world)
    micros = [m for m in range(per_rank, 0, -1) if per_rank % m == 0] if auto_micro else [tc.micro_batch_size or per_rank]
    modes = ["none", "full"] if auto_ac else [tc.activation_checkpointing]
    for i, ac in enumerate(modes):
        for m in micros:
            plan = step_plan(shape, tc, world=world, micro=m, ac=ac, attn=attn, device=device, memory_gib=budget)
            if not plan.fits:
                continue
            if auto_ac and i < len(modes) - 1 and m < min(MIN_MICRO, per_rank):
                break  # fits only at a micro-batch too small to fill the device: recompute instead
            return dataclasses.replace(tc, micro_batch_size=m, activation_checkpointing=False if ac == "none" else ac)
    field = "train.micro_batch_size" if auto_micro else "train.activation_checkpointing"
    raise ConfigError(f"no micro-batch of this run fits {tc.memory_fraction:g} x {budget / tc.memory_fraction:.1f} GiB per "
                      f"device on {world} process(es) (`scaling memory` with the run's settings shows the terms); use more "
                      "GPUs, a shorter seq_len, activation checkpointing, or a chunked loss", field=field,
                      value=tc.micro_batch_size if auto_micro else tc.activation_checkpointing)
