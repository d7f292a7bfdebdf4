"""Data-parallel training with FSDP2 (torch ``fully_shard``), applied after the model is built
(as in torchtitan: the model file never knows about distribution).

Launch: ``torchrun --nproc_per_node N -m scaling.cli train runs/<id>`` (or ``accelerate launch
--num_processes N -m scaling.cli train runs/<id>``). Each decoder layer is one FSDP unit, the root
holds the embeddings and the LM head; on GPU parameters are gathered in bf16 and gradients reduced
in fp32 (fp32 master weights stay sharded). The same code runs on CPU with the gloo backend, which
is how the tests check that two sharded processes reproduce the single-process losses.
"""
from __future__ import annotations

import os

import torch


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) when not launched distributed."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    return world()[0] == 0


def shard(model, *, activation_checkpointing: bool = False):
    """Wrap every decoder layer and the root in FSDP2 (full shard). Resize embeddings before this."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if torch.cuda.is_available() else MixedPrecisionPolicy()
    layers = model.model.layers
    for i, layer in enumerate(layers):
        if activation_checkpointing:
            from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

            layer = checkpoint_wrapper(layer)
            layers[i] = layer
        # the last layer's parameters are needed right after backward starts: keep them gathered
        fully_shard(layer, mp_policy=mp, reshard_after_forward=i < len(layers) - 1)
    fully_shard(model, mp_policy=mp)
    return model


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
