"""Liger-Kernel's fused RMSNorm, SwiGLU and RoPE (Triton, CUDA only; the ``gpu`` extra), applied to one model.

``train.liger_kernels: true`` swaps these three for Liger's kernels in a built Qwen2 or Llama model
(the LM head + cross-entropy has its own switches: ``liger_ce``, ``compiled_ce``). Liger patches the
norm and MLP modules of the instance, and the rotary embedding as a function of the transformers
modelling module, which every model of that family in the process then uses; ``apply`` returns a
callable that puts the module's own functions and classes back (the benchmark runs plain variants
after a Liger one in the same process). Values equal the reference to bf16 rounding (Liger's tests).
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Callable

from scaling.errors import ConfigError

_FAMILIES = {"qwen2": ("qwen2", "Qwen2RMSNorm", "Qwen2MLP"), "llama": ("llama", "LlamaRMSNorm", "LlamaMLP")}


def liger_kernels_unavailable(device) -> str | None:
    """Why Liger's kernels cannot run on ``device`` (None when they can)."""
    import torch

    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return "Liger's kernels are Triton kernels for CUDA devices"
    if importlib.util.find_spec("liger_kernel") is None:
        return "liger-kernel is not installed (pip install 'speech-scaling[gpu]')"
    return None


def apply(model) -> Callable[[], None]:
    """Liger's RMSNorm, SwiGLU MLP and RoPE in ``model`` (a Qwen2/Llama causal LM); returns ``restore``."""
    family = getattr(model.config, "model_type", None)
    if family not in _FAMILIES:
        raise ConfigError("Liger's kernels are applied to Qwen2 and Llama models only", field="train.liger_kernels",
                          value=family)
    from liger_kernel.transformers import monkey_patch

    name, norm_cls, mlp_cls = _FAMILIES[family]
    modeling = importlib.import_module(f"transformers.models.{name}.modeling_{name}")
    saved = {k: getattr(modeling, k) for k in ("apply_rotary_pos_emb", norm_cls, mlp_cls)}
    getattr(monkey_patch, f"apply_liger_kernel_to_{name}")(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                                           fused_linear_cross_entropy=False, model=model)
    # the classes only matter for models built later: put them back now; the rotary function is looked up
    # at every forward, so it stays Liger's until restore()
    for k in (norm_cls, mlp_cls):
        setattr(modeling, k, saved[k])

    def restore() -> None:
        for k, v in saved.items():
            setattr(modeling, k, v)

    return restore
