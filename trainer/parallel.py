"""Applying parallelism to a built model, in torchtitan's order (the model file never knows about
distribution): activation checkpointing per decoder block, then per-block ``torch.compile``, then
FSDP2 ``fully_shard`` per block, then the root (embeddings, final norm, LM head).

``parallelize(model, world, train)`` is the one entry point of every path that runs the model:
training, validation, evaluation and ``scaling bench``. An option it cannot honour in the current
setting is a ``ConfigError`` before the first step, never a silent fallback, and what it applied
is returned as ``Applied`` (the ``effective`` block of result.json).

Launch: ``torchrun --nproc_per_node N -m scaling.cli train runs/<id>``. On GPU (``amp-bf16``)
parameters are gathered in bf16 and gradients reduced in fp32 while the fp32 master weights stay
sharded; with ``bf16`` the weights (and so the AdamW state) are bf16 themselves. The same code
runs on CPU with the gloo backend: that is how the tests prove two sharded processes reproduce
one process.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

from scaling.errors import ConfigError


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) when not launched distributed."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    return world()[0] == 0


def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def barrier() -> None:
    if distributed():
        torch.distributed.barrier()


def ensure_process_group(device: torch.device) -> None:
    """Join the launcher's process group (NCCL on GPU, gloo on CPU) when started by torchrun."""
    if world()[1] > 1 and not distributed():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (rank 0 decides, the others follow)."""
    if not distributed():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if distributed():
        torch.distributed.all_reduce(t)
    return t


@dataclass(frozen=True)
class Applied:
    """What was in force: the ``effective`` block of a run's result.json."""

    world_size: int
    activation_checkpointing: bool
    compile: bool
    compiled_layers: int
    chunked_ce: bool
    attention: str
    precision: str
    micro_batch_size: int
    accumulation: int
    fsdp: bool
    liger_ce: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def check_options(train, *, device: torch.device, world_size: int, compile_backend: str = "inductor") -> None:
    """Refuse, before any step, what this setting cannot do (never a silent fallback)."""
    from trainer.kernels.chunked_ce import compile_unavailable
    from trainer.model import PRECISIONS

    precision = getattr(train, "precision", "amp-bf16")
    if precision not in PRECISIONS:
        raise ConfigError(f"must be one of {PRECISIONS}", field="train.precision", value=precision)
    if getattr(train, "liger_ce", False):
        from trainer.kernels.chunked_ce import liger_available

        if device.type != "cuda" or not liger_available():
            raise ConfigError("Liger's fused cross-entropy needs a CUDA device and liger-kernel (pip install "
                              "'speech-scaling[gpu]'); set train.liger_ce: false", field="train.liger_ce", value=True)
    if train.compile:
        why = compile_unavailable(device, compile_backend)
        if why:
            raise ConfigError(f"torch.compile is not usable here: {why}; set train.compile: false", field="train.compile", value=True)


def parallelize(model, world_size: int, train, *, device: torch.device, compile_backend: str = "inductor",
                fsdp: bool | None = None) -> tuple[object, int]:
    """Activation checkpointing -> per-block compile -> ``fully_shard`` per block -> root.

    ``train`` needs ``activation_checkpointing``, ``compile`` and ``precision`` (a TrainConfig).
    ``model`` may live on the meta device (big models: materialise with ``materialize`` after
    this). ``fsdp`` defaults to ``world_size > 1`` (``scaling bench gpu`` forces it on one GPU).
    Returns (model, number of compiled blocks)."""
    check_options(train, device=device, world_size=world_size, compile_backend=compile_backend)
    layers = model.model.layers
    if train.activation_checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        # recompute each block in backward; with no KV cache (trainer.model) the recompute is pure
        for i, layer in enumerate(layers):
            layers[i] = checkpoint_wrapper(layer, preserve_rng_state=False)
    compiled = 0
    if train.compile:
        for layer in layers:  # one block compiled once, reused by all: start-up stays short
            layer.compile(backend=compile_backend)
            compiled += 1
    if world_size > 1 if fsdp is None else fsdp:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if device.type == "cuda" and getattr(train, "precision", "amp-bf16") == "amp-bf16" else MixedPrecisionPolicy())
        for i, layer in enumerate(layers):
            # the last block's parameters are needed right after backward starts: keep them gathered
            fully_shard(layer, mp_policy=mp, reshard_after_forward=i < len(layers) - 1)
        fully_shard(model, mp_policy=mp)  # root: embeddings, final norm, LM head (tied or not)
    return model, compiled


def materialize(model, device: torch.device) -> None:
    """Allocate a meta-built (and possibly sharded) model on ``device``; the values come next
    (``load_full_state``), the rotary buffers are recomputed here."""
    from trainer.model import init_buffers

    model.to_empty(device=device)
    init_buffers(model, device)


def load_full_state(model, full: dict | None) -> None:
    """Rank 0's full state dict into every rank's (sharded) parameters, tensor by tensor
    (the other ranks pass None and never hold the full model)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if distributed():
        set_model_state_dict(model, full if is_main() else {},
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    else:
        set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True))


def plain_state_dict(model) -> dict:
    """Full state dict with the plain parameter names (no wrapper prefixes); gathered when sharded."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
