"""LM head + cross-entropy chunk by chunk over tokens, and regional torch.compile.

``chunked_lm_head_loss`` returns the summed next-token NLL of ``hidden @ weight.T`` without ever
holding the [tokens, vocab] logits: the forward keeps one chunk's logits at a time (float32
log-softmax), and the custom backward recomputes each chunk's logits and accumulates the
gradients of ``hidden`` and ``weight`` chunk by chunk, so the extra memory is O(chunk x vocab)
instead of O(tokens x vocab) (for Qwen2.5 at 8 x 2048 tokens the full float32 logits alone are
~10 GiB, plus their gradient).

Under autocast the matmuls run in the autocast dtype (bf16 on GPU), as the plain
``model(...).logits`` path does; the softmax and the sums are float32; the weight gradient is
accumulated in float32.
"""
from __future__ import annotations

import importlib.util
import warnings

import torch
import torch.nn.functional as F

from scaling.memory import CE_CHUNK as CHUNK, COMPILED_CE_CHUNK  # noqa: F401 - rows per chunk, beside the memory model
from trainer.kernels.common import IGNORE, _compute_dtype, _prepare, compile_unavailable  # noqa: F401 - re-exported


class _ChunkedLinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, valid, chunk_size: int, cdtype):
        n = hidden.shape[0]
        w = weight.to(cdtype)
        acc = torch.promote_types(cdtype, torch.float32)  # float32 softmax (float64 stays float64)
        total = torch.zeros((), dtype=acc, device=hidden.device)
        for s in range(0, n, chunk_size):
            e = min(s + chunk_size, n)
            logits = (hidden[s:e].to(cdtype) @ w.t()).to(acc)
            lse = torch.logsumexp(logits, dim=-1)
            tgt = logits.gather(1, targets[s:e].unsqueeze(1)).squeeze(1)
            total += ((lse - tgt) * valid[s:e]).sum()
            del logits
        ctx.save_for_backward(hidden, weight, targets, valid)
        ctx.chunk_size, ctx.cdtype = chunk_size, cdtype
        return total

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, targets, valid = ctx.saved_tensors
        cs, cdtype = ctx.chunk_size, ctx.cdtype
        n = hidden.shape[0]
        w = weight.to(cdtype)
        acc = torch.promote_types(cdtype, torch.float32)
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        g = grad_out.to(acc)
        for s in range(0, n, cs):
            e = min(s + cs, n)
            h = hidden[s:e].to(cdtype)
            logits = (h @ w.t()).to(acc)
            # d(lse - logit_t)/d logits = softmax - onehot, scaled by the mask and the upstream grad
            p = torch.softmax(logits, dim=-1)
            del logits
            rows = torch.arange(e - s, device=p.device)
            p[rows, targets[s:e]] -= 1.0
            p *= (valid[s:e] * g).unsqueeze(1)
            p = p.to(cdtype)
            if need_h:
                grad_h[s:e] = (p @ w).to(hidden.dtype)
            if need_w:
                grad_w += (p.t() @ h).to(acc)
            del p
        if need_w:
            grad_w = grad_w.to(weight.dtype)
        return grad_h, grad_w, None, None, None, None


def chunked_lm_head_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         valid_mask: torch.Tensor | None = None, *, chunk_size: int = 4096) -> torch.Tensor:
    """Summed NLL of ``targets`` under ``softmax(hidden @ weight.T)`` (float32 scalar).

    hidden: [..., d]; weight: [vocab, d]; targets: [...] (``-100`` = ignored); valid_mask: [...]
    bool/0-1, positions where it is false are left out. Never holds more than ``chunk_size`` rows
    of logits, in the forward or the backward."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    h, t, v = _prepare(hidden, targets, valid_mask)
    return _ChunkedLinearCE.apply(h, weight, t, v.to(torch.promote_types(h.dtype, torch.float32)), int(chunk_size), _compute_dtype(h))


def liger_available() -> bool:
    """Liger's fused linear cross-entropy is importable and usable (it needs CUDA + Triton)."""
    if not torch.cuda.is_available() or importlib.util.find_spec("liger_kernel") is None:
        return False
    try:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy  # noqa: F401
    except Exception:  # noqa: BLE001 - any import problem means: not usable
        return False
    return True


def fused_lm_head_loss(hidden, weight, targets, valid_mask=None, *, chunk_size: int = 4096, prefer_liger: bool = True):
    """Liger's fused linear cross-entropy on CUDA when installed, else ``chunked_lm_head_loss``."""
    if prefer_liger and hidden.is_cuda and liger_available():
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        h, t, v = _prepare(hidden, targets, valid_mask)
        t = torch.where(v, t, torch.full_like(t, IGNORE))
        out = liger_fused_linear_cross_entropy(h, weight, t, ignore_index=IGNORE, reduction="sum")
        out = out[0] if isinstance(out, tuple) else out
        return out.float()
    return chunked_lm_head_loss(hidden, weight, targets, valid_mask, chunk_size=chunk_size)


# -- the model's loss: the one loss path of training, validation, evaluation and the benchmark --
def _unwrap(model):
    """The HF causal LM under DDP / torch.compile wrappers (accelerate keeps the class on 1 GPU)."""
    for _ in range(4):
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if inner is None:
            break
        model = inner
    return model


def decoder_hidden(model, ids: torch.Tensor, extra_inputs: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(final hidden states [B, T, d], LM-head weight) from the model's own forward.

    The forward is the top-level one, so FSDP's root hooks gather the embeddings, the final norm and
    the LM head (the root is not resharded after forward, so the returned weight is the gathered one
    and its gradient is reduced by FSDP's post-backward); the LM head itself is applied to no
    position (``logits_to_keep`` = an empty index), so no logits are ever built here."""
    base = _unwrap(model)
    head = base.lm_head
    if getattr(head, "bias", None) is not None:
        raise NotImplementedError("chunked LM head with a bias")
    box = {}

    def grab(_module, _args, out):
        box["h"] = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    hook = base.model.register_forward_hook(grab)
    try:
        model(input_ids=ids, logits_to_keep=torch.empty(0, dtype=torch.long, device=ids.device), **(extra_inputs or {}))
    finally:
        hook.remove()
    return box["h"], base.lm_head.weight


def plain_lm_loss(model, ids: torch.Tensor, valid: torch.Tensor, extra_inputs: dict | None = None) -> torch.Tensor:
    """The reference path: full logits, float32 cross-entropy over contiguous vocabulary rows (a
    [B, V, T] cross-entropy reduces over a strided axis: on one H200 it held the plain Qwen2.5-0.5B
    step, 152k rows, at 6.7% MFU against 20.6% with contiguous rows)."""
    logits = model(input_ids=ids, **(extra_inputs or {})).logits
    targets, mask = _targets(ids, valid)
    flat = logits.float().reshape(-1, logits.shape[-1])
    nll = F.cross_entropy(flat, targets.reshape(-1), ignore_index=IGNORE, reduction="none")
    return (nll * mask.reshape(-1)).sum()


def _targets(ids: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # targets over all T positions (the last one never valid) so that hidden needs no copy
    targets = torch.full_like(ids, IGNORE)
    targets[:, :-1] = ids[:, 1:]
    mask = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
    mask[:, :-1] = valid.to(torch.bool)
    return targets, mask


def lm_loss(model, ids: torch.Tensor, valid: torch.Tensor, extra_inputs: dict | None = None, *,
            chunked: bool, chunk_size: int | None = None, liger: bool = False, compiled: bool = False) -> torch.Tensor:
    """Summed next-token NLL of ``ids`` [B, T]; ``valid`` [B, T-1] marks the predicted positions
    that count (target ``ids[:, 1:]``). ``chunked``: decoder body, then the LM head + CE in chunks
    (``liger``: Liger's kernel on CUDA when installed), under FSDP too; else the full-logit path.
    ``compiled`` (implies ``chunked``): the compiled gradient-in-forward LM head + CE of
    ``fused_ce.compiled_lm_head_loss`` (it takes precedence over ``liger``). ``chunk_size``: rows per
    chunk, default ``CHUNK`` (``COMPILED_CE_CHUNK`` for ``compiled``)."""
    if not (chunked or compiled):
        return plain_lm_loss(model, ids, valid, extra_inputs)
    hidden, weight = decoder_hidden(model, ids, extra_inputs)
    targets, mask = _targets(ids, valid)
    if compiled:
        from trainer.kernels.fused_ce import compiled_lm_head_loss  # fused_ce imports this module

        size = COMPILED_CE_CHUNK if chunk_size is None else chunk_size
        return compiled_lm_head_loss(hidden, weight, targets, mask, chunk_size=size)
    fn = fused_lm_head_loss if liger else chunked_lm_head_loss
    return fn(hidden, weight, targets, mask, chunk_size=CHUNK if chunk_size is None else chunk_size)


@torch.no_grad()
def token_nll(model, ids: torch.Tensor, extra_inputs: dict | None = None, *, chunked: bool = True,
              chunk_size: int = 4096) -> torch.Tensor:
    """Per-position next-token NLL [B, T-1] (float32) by the same forward as ``lm_loss``: with
    ``chunked`` never more than ``chunk_size`` rows of float32 logits at once."""
    base = _unwrap(model)
    if not chunked or not (hasattr(base, "lm_head") and hasattr(base, "model")):  # not a decoder + head: plain logits
        logits = model(input_ids=ids, **(extra_inputs or {})).logits
        # one contiguous row per position: a row's value cannot depend on the batch's width or on its
        # neighbours (a strided [B, V, T] reduction can, by an ulp)
        flat = logits[:, :-1].float().reshape(-1, logits.shape[-1]).contiguous()
        return F.cross_entropy(flat, ids[:, 1:].reshape(-1), reduction="none").view(ids.shape[0], -1)
    hidden, weight = decoder_hidden(model, ids, extra_inputs)
    B, T, d = hidden.shape
    h = hidden[:, :-1].reshape(-1, d)
    tgt = ids[:, 1:].reshape(-1)
    cdtype = _compute_dtype(h)
    w = weight.to(cdtype)
    out = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)
    for s in range(0, h.shape[0], chunk_size):
        e = min(s + chunk_size, h.shape[0])
        logits = (h[s:e].to(cdtype) @ w.t()).float()
        out[s:e] = torch.logsumexp(logits, dim=-1) - logits.gather(1, tgt[s:e].unsqueeze(1)).squeeze(1)
    return out.view(B, T - 1)


# -- regional compile -------------------------------------------------------------------------
def regional_compile(model, *, backend: str = "inductor", mode: str | None = None, dynamic: bool | None = None,
                     fullgraph: bool = False) -> int:
    """torch.compile every decoder layer in place (``layer.compile()``: parameter names and
    checkpoints are unchanged), which compiles one block once and reuses it for all layers,
    so start-up stays short. Returns the number of layers compiled; on any problem (no dynamo,
    no C compiler for inductor on CPU, unknown backend, ...) warns and returns 0, leaving the
    model eager."""
    base = _unwrap(model)
    layers = getattr(getattr(base, "model", None), "layers", None)
    if layers is None:
        warnings.warn("regional_compile: the model has no .model.layers; left eager", RuntimeWarning, stacklevel=2)
        return 0
    why = compile_unavailable(next(base.parameters()).device, backend)
    if why is None:
        try:
            from torch._dynamo import list_backends

            if backend not in list_backends(exclude_tags=()):
                why = f"unknown torch.compile backend '{backend}'"
        except Exception:  # noqa: BLE001 - older torch: let compile() decide
            pass
    if why is not None:
        warnings.warn(f"regional_compile: {why}; the model stays eager", RuntimeWarning, stacklevel=2)
        return 0
    done = []
    try:
        for layer in layers:
            layer.compile(backend=backend, mode=mode, dynamic=dynamic, fullgraph=fullgraph)
            done.append(layer)
    except Exception as e:  # noqa: BLE001
        for layer in done:  # undo: all layers eager again
            layer._compiled_call_impl = None
        warnings.warn(f"regional_compile: torch.compile failed ({e}); the model stays eager", RuntimeWarning, stacklevel=2)
        return 0
    return len(done)


def is_compiled(layer) -> bool:
    return getattr(layer, "_compiled_call_impl", None) is not None
