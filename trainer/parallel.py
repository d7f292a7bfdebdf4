"""Applying parallelism to a built model, in torchtitan's order (the model file never knows about
distribution): activation checkpointing per decoder block, then per-block ``torch.compile``, then
FSDP2 ``fully_shard`` per block, then the root (embeddings, final norm, LM head).

``parallelize(model, world, train)`` is the one entry point of every path that runs the model:
training, validation, evaluation and ``scaling bench``. An option it cannot honour in the current
setting is a ``ConfigError`` before the first step, never a silent fallback, and what it applied
is returned as ``Applied`` (the ``effective`` block of result.json).

Activation checkpointing is full (every block, or every k-th) or selective per op (matmul and
attention outputs saved, the cheap ops recomputed); compile uses ``fullgraph=True`` wherever the
attention path traces whole.

Launch: ``torchrun --nproc_per_node N -m scaling.cli train runs/<id>``. On GPU (``amp-bf16``)
parameters are gathered in bf16 and gradients reduced in fp32 while the fp32 master weights stay
sharded (``train.bf16_params``; ``true`` does the same on one GPU, through a one-process group);
with ``bf16`` the weights (and so the AdamW state) are bf16 themselves. The process group waits
``dist_timeout_s()`` in a collective and is destroyed when the run ends. The same code runs on CPU
with the gloo backend: that is how the tests prove two sharded processes reproduce one process.
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


#: seconds a collective may wait before the process group gives up (torch's NCCL default is 10 minutes, less
#: than rank 0 may take to write a 7B export or a cooldown branch's evaluation while the others wait);
#: SCALING_DIST_TIMEOUT_S overrides it
DIST_TIMEOUT_S = 3600


def dist_timeout_s() -> float:
    raw = os.environ.get("SCALING_DIST_TIMEOUT_S")
    if raw is None:
        return float(DIST_TIMEOUT_S)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise ConfigError("must be a positive number of seconds", field="SCALING_DIST_TIMEOUT_S", value=raw)
    return value


def ensure_process_group(device: torch.device, *, single: bool = False) -> bool:
    """Join the launcher's process group (NCCL on GPU, gloo on CPU) when started by torchrun, or with
    ``single`` a one-process group (FSDP on one device: ``train.bf16_params: true``). The group's
    timeout is ``dist_timeout_s()``. True when this call created the group (its creator destroys it
    with ``close_process_group``)."""
    import datetime

    if distributed() or not (world()[1] > 1 or single):
        return False
    timeout = datetime.timedelta(seconds=dist_timeout_s())
    backend = "nccl" if device.type == "cuda" else "gloo"
    if world()[1] > 1:
        torch.distributed.init_process_group(backend, timeout=timeout)
    else:
        torch.distributed.init_process_group(backend, store=torch.distributed.HashStore(), rank=0, world_size=1,
                                             timeout=timeout)
    return True


def close_process_group(*, clean: bool = True) -> None:
    """Leave the process group: with ``clean``, every rank together (a barrier first), so that no rank
    exits while another still waits in a collective; NCCL's resources are released either way."""
    if distributed():
        if clean:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()


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
    activation_checkpointing: bool | int | str
    compile: bool
    compiled_layers: int
    chunked_ce: bool
    attention: str
    precision: str
    micro_batch_size: int
    accumulation: int
    fsdp: bool
    liger_ce: bool = False
    compiled_ce: bool = False
    bf16_params: bool = False
    master_dtype: str = "float32"
    fullgraph: bool = False
    optimizer: str = "adamw"
    liger_kernels: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def fsdp_in_force(train, world_size: int) -> bool:
    """FSDP2 wraps the model with several processes, and on one process when ``bf16_params: true``."""
    return world_size > 1 or getattr(train, "bf16_params", "auto") is True


def bf16_params_in_force(train, device: torch.device, *, fsdp: bool) -> bool:
    """bf16 compute copies of fp32 master weights (FSDP2's MixedPrecisionPolicy, gradients reduced in fp32):
    under amp-bf16 on a GPU, whenever FSDP wraps the model, unless ``bf16_params: false``. On the CPU the
    computation stays fp32 (exact, as autocast does there)."""
    return (fsdp and device.type == "cuda" and getattr(train, "precision", "amp-bf16") == "amp-bf16"
            and getattr(train, "bf16_params", "auto") is not False)


def check_options(train, *, device: torch.device, world_size: int, compile_backend: str = "inductor") -> None:
    """Refuse, before any step, what this setting cannot do (never a silent fallback)."""
    from scaling.spec import ac_mode
    from trainer.kernels.chunked_ce import compile_unavailable
    from trainer.model import PRECISIONS

    precision = getattr(train, "precision", "amp-bf16")
    if precision not in PRECISIONS:
        raise ConfigError(f"must be one of {PRECISIONS}", field="train.precision", value=precision)
    if getattr(train, "liger_ce", False) and getattr(train, "compiled_ce", False):
        raise ConfigError("pick one LM-head loss: liger_ce or compiled_ce", field="train.compiled_ce", value=True)
    if ac_mode(getattr(train, "activation_checkpointing", False))[0] == "auto":
        raise ConfigError("'auto' must be resolved before the model is built (trainer.autotune)",
                          field="train.activation_checkpointing", value="auto")
    if getattr(train, "liger_ce", False):
        from trainer.kernels.chunked_ce import liger_available

        if device.type != "cuda" or not liger_available():
            raise ConfigError("Liger's fused cross-entropy needs a CUDA device and liger-kernel (pip install "
                              "'speech-scaling[gpu]'); set train.liger_ce: false", field="train.liger_ce", value=True)
    if getattr(train, "liger_kernels", False):
        from trainer.kernels.liger import liger_kernels_unavailable

        why = liger_kernels_unavailable(device)
        if why:
            raise ConfigError(f"{why}; set train.liger_kernels: false", field="train.liger_kernels", value=True)
    for key in ("compile", "compiled_ce"):
        if getattr(train, key, False):
            why = compile_unavailable(device, compile_backend)
            if why:
                raise ConfigError(f"torch.compile is not usable here: {why}; set train.{key}: false", field=f"train.{key}",
                                  value=True)


def _checkpoint_block(layer, mode: str):
    """``layer`` wrapped for recompute in backward: the whole block (``full``) or, with ``op``, only the
    cheap ops (norms, rotary embeddings, activations, residual adds): matmul and attention outputs are
    saved (torch's selective activation checkpointing), so the recompute costs almost no FLOPs."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    # with no KV cache (trainer.model) the recompute is pure; the block has no dropout, so no RNG to replay
    if mode == "full":
        return checkpoint_wrapper(layer, preserve_rng_state=False)
    import functools

    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    return checkpoint_wrapper(layer, preserve_rng_state=False,
                              context_fn=functools.partial(create_selective_checkpoint_contexts, _save_matmuls_and_attention))


def _saved_ops() -> set:
    aten = torch.ops.aten
    names = ["mm", "addmm", "bmm", "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
             "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu", "_flash_attention_forward",
             "_efficient_attention_forward"]
    ops = {getattr(aten, n).default for n in names if hasattr(aten, n)}
    varlen = getattr(getattr(torch.ops, "torch_attn", None), "_varlen_attn", None)  # torch's varlen attention (custom op)
    if varlen is not None:
        ops.add(varlen.default)
    return ops


_SAVED_OPS: set | None = None


def _save_matmuls_and_attention(ctx, op, *args, **kwargs):
    from torch.utils.checkpoint import CheckpointPolicy

    global _SAVED_OPS
    if _SAVED_OPS is None:
        _SAVED_OPS = _saved_ops()
    return CheckpointPolicy.MUST_SAVE if op in _SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def plain_forwards(model) -> int:
    """Bind the model's own ``forward`` on every module whose class the ``kernels`` package (a transformers
    dependency) wrapped for hub kernels: the wrapper stores the active kernels in a context variable on
    every call, which dynamo cannot trace (a graph break in every attention block, an error under
    ``fullgraph``). No hub kernel is ever loaded here (no downloads), so the wrapped functions (rotary
    embeddings) run their plain implementation either way. Returns the number of modules rebound."""
    import types

    n = 0
    for m in model.modules():
        fwd = type(m).forward
        if "_kernel_funcs" in m.__dict__ and hasattr(fwd, "__wrapped__") and "forward" not in m.__dict__:
            m.forward = types.MethodType(fwd.__wrapped__, m)
            n += 1
    return n


def fullgraph_ok(attn: str) -> bool:
    """Whether a decoder block compiles as one graph with this attention: transformers' FlashAttention-2
    path derives its varlen offsets from the position ids with data-dependent host code (graph breaks);
    SDPA, torch's varlen attention and flex trace whole."""
    return attn != "flash_attention_2"


def parallelize(model, world_size: int, train, *, device: torch.device, compile_backend: str = "inductor",
                fsdp: bool | None = None) -> tuple[object, int]:
    """Activation checkpointing -> per-block compile -> ``fully_shard`` per block -> root.

    ``train`` needs ``activation_checkpointing``, ``compile`` and ``precision`` (a TrainConfig; the fast
    recipe's keys are read when present). ``model`` may live on the meta device (big models: materialise
    with ``materialize`` after this). ``fsdp`` defaults to ``fsdp_in_force`` (several processes, or
    ``bf16_params: true``); FSDP needs a process group (``ensure_process_group``).
    Returns (model, number of compiled blocks)."""
    from scaling.spec import ac_mode

    check_options(train, device=device, world_size=world_size, compile_backend=compile_backend)
    if getattr(train, "liger_kernels", False):  # module swaps first: checkpointing and compile wrap what runs
        from trainer.kernels import liger

        model._liger_restore = liger.apply(model)
    layers = model.model.layers
    mode, k = ac_mode(getattr(train, "activation_checkpointing", False))
    if mode != "none":
        for i, layer in enumerate(layers):
            if mode != "every" or i % k == 0:
                layers[i] = _checkpoint_block(layer, "op" if mode == "op" else "full")
    compiled = 0
    if train.compile:
        plain_forwards(model)
        fullgraph = fullgraph_ok(model.config._attn_implementation)
        for layer in layers:  # one block compiled once, reused by all: start-up stays short
            layer.compile(backend=compile_backend, fullgraph=fullgraph)
            compiled += 1
    fsdp = fsdp_in_force(train, world_size) if fsdp is None else fsdp
    if fsdp:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if bf16_params_in_force(train, device, fsdp=True) else MixedPrecisionPolicy())
        for i, layer in enumerate(layers):
            # the last block's parameters are needed right after backward starts: keep them gathered
            fully_shard(layer, mp_policy=mp, reshard_after_forward=i < len(layers) - 1)
        fully_shard(model, mp_policy=mp)  # root: embeddings, final norm, LM head (tied or not)
    return model, compiled


def adamw(model, *, lr: float, betas: tuple[float, float], weight_decay: float, device: torch.device):
    """AdamW with weight decay on matrices only, as one multi-tensor kernel: ``fused`` on CUDA (plain
    tensors and FSDP2's DTensors alike), ``foreach`` elsewhere; never the per-tensor loop. Returns
    (optimizer, implementation name)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    impl = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **impl), f"adamw ({next(iter(impl))})"


def reshard(model) -> None:
    """Free the gathered parameters FSDP2 keeps after a forward without backward (the root and the last
    block are not resharded after forward). Every evaluation on the training model ends with this: a
    no-grad forward that is the model's first (FSDP's lazy initialisation) otherwise leaves those
    parameters gathered, and the training step after the next one reads them stale. A no-op unsharded."""
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


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

    if distributed() and world()[1] > 1:
        set_model_state_dict(model, full if is_main() else {},
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    else:
        set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True))


def plain_state_dict(model) -> dict:
    """Full state dict with the plain parameter names (no wrapper prefixes); gathered when sharded."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
