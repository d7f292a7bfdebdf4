"""A compiled chunked LM head + cross-entropy that computes its gradient in the forward.

``compiled_lm_head_loss(hidden, weight, targets, valid_mask)`` promises what
``chunked_ce.chunked_lm_head_loss`` promises: the summed next-token NLL of ``targets`` under
``softmax(hidden @ weight.T)`` as a float32 scalar (float64 for float64 inputs), differentiable
w.r.t. ``hidden`` and ``weight``, never holding more than one chunk of [tokens, vocab] logits.

Design, and why:

* Gradient in the forward (the idea of Liger's fused linear cross-entropy). The gradient of a
  summed NLL w.r.t. the logits, ``(softmax - onehot) * valid``, is known as soon as the chunk's
  log-sum-exp is, so each chunk's logits are built once and turned into ``grad_hidden`` and a
  weight-gradient contribution right away. The backward only scales the stored gradients by the
  upstream scalar: no second [tokens, vocab] matmul, no second pass over the logits (the plain
  chunked path recomputes them).
* Large chunks (8192 rows by default). Each chunk adds one ``g.T @ h`` into the single float32
  weight-gradient buffer, i.e. a full read-modify-write of a vocab x d float32 tensor (545 MB for
  Qwen2.5's 152k x 896 head). Liger's small chunks do that ~128 times a step; 8192-row chunks do it
  twice for 8 x 2048 tokens, and the matmuls are big enough to run at full speed. The cost is one
  chunk of logits and their gradient in the compute dtype (2 x 2.5 GB in bf16 at 8192 x 152k).
* One torch.compile'd function per chunk (logits matmul, float32 log-sum-exp, NLL, logit
  gradient), so the float32 upcast is fused into the reductions and into the gradient's
  elementwise kernel instead of being a materialised float32 [chunk, vocab] copy, and the
  gradient is written once in the compute dtype (bf16 under autocast / for bf16 inputs). The
  two gradient matmuls stay outside it (eager cuBLAS calls either way) so that a frozen head or
  hidden state skips its matmul without a second compiled variant.

Under autocast the matmuls run in the autocast dtype; softmax, NLL and the weight-gradient sum are
float32. ``compile=False`` runs the very same per-chunk function eagerly (a reference and a
fallback where torch.compile cannot run).
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch.autograd.function import once_differentiable

from scaling.memory import COMPILED_CE_CHUNK
from trainer.kernels.common import IGNORE, _compute_dtype, _prepare, compile_unavailable

__all__ = ["COMPILED_CE_CHUNK", "IGNORE", "compiled_ce_unavailable", "compiled_lm_head_loss"]


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _chunk_loss(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Summed NLL of one chunk: h [c, d] and w [V, d] in the compute dtype, t [c] long, valid [c] bool."""
    z = (h @ w.t()).to(_acc_dtype(h.dtype))  # compiled: the upcast is fused into the reductions below
    lse = torch.logsumexp(z, dim=-1)
    tgt = z.gather(1, t.unsqueeze(1)).squeeze(1)
    return torch.where(valid, lse - tgt, 0.0).sum()


def _chunk_loss_and_grad(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor,
                         valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed NLL, d NLL / d logits) of one chunk; the gradient [c, V] is in h's dtype."""
    z = (h @ w.t()).to(_acc_dtype(h.dtype))
    lse = torch.logsumexp(z, dim=-1)
    tgt = z.gather(1, t.unsqueeze(1)).squeeze(1)
    nll = torch.where(valid, lse - tgt, 0.0).sum()
    # softmax - onehot; the comparison with an iota fuses into the same elementwise kernel (no
    # scatter into a materialised float32 softmax)
    onehot = torch.arange(z.shape[1], device=z.device).unsqueeze(0) == t.unsqueeze(1)
    g = torch.exp(z - lse.unsqueeze(1)) - onehot.to(z.dtype)
    g = torch.where(valid.unsqueeze(1), g, 0.0).to(h.dtype)
    return nll, g


_COMPILED: dict[str, Callable] = {}


def _step(name: str, compile: bool) -> Callable:
    fn = {"loss": _chunk_loss, "grad": _chunk_loss_and_grad}[name]
    if not compile:
        return fn
    if name not in _COMPILED:  # lazily: importing this module must not touch dynamo
        # fullgraph: a graph break would split the fusion and materialise the float32 logits;
        # dynamic=False: chunks always have the same row count (see _chunk_rows), so static
        # shapes cost no extra compiles and give the best kernels
        _COMPILED[name] = torch.compile(fn, fullgraph=True, dynamic=False)
    return _COMPILED[name]


def _chunk_rows(n: int, chunk_size: int) -> int:
    """Rows per chunk: every chunk, the last one included, has exactly this many rows (the last is
    padded with invalid rows). A short last chunk of its own size would cost one more compile per
    distinct remainder (and fullgraph=True turns dynamo's recompile limit, 8, into an error);
    padding costs at most one chunk of extra work, none when ``chunk_size`` divides the token count
    (8 x 2048 training tokens = 2 x 8192). Fewer tokens than a chunk: the next power of two, so that
    a call never does more than twice its work and the row counts a process sees stay few."""
    return min(chunk_size, 1 << max(n - 1, 0).bit_length())


def _chunks(hidden: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, rows: int, cdtype: torch.dtype):
    """(start, real rows, h [rows, d] in cdtype, targets [rows], valid [rows]) per chunk."""
    n = hidden.shape[0]
    for s in range(0, n, rows):
        e = min(s + rows, n)
        h, t, v = hidden[s:e].to(cdtype), targets[s:e], valid[s:e]
        if e - s < rows:
            pad = rows - (e - s)
            h = torch.cat([h, h.new_zeros(pad, h.shape[1])])
            t = torch.cat([t, t.new_zeros(pad)])
            v = torch.cat([v, v.new_zeros(pad)])
        yield s, e - s, h, t, v


class _GradInForwardCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                rows: int, cdtype: torch.dtype, compile: bool) -> torch.Tensor:
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        acc = _acc_dtype(cdtype)
        # cast once per call, not per chunk (a 152k x 896 cast is ~270 MB of traffic)
        w = weight.detach().to(cdtype)
        step = _step("grad", compile)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        total = torch.zeros((), dtype=acc, device=hidden.device)
        for s, r, h, t, v in _chunks(hidden.detach(), targets, valid, rows, cdtype):
            nll, g = step(h, w, t, v)
            total += nll
            g = g[:r]  # padded rows have zero gradient: skip them in the matmuls
            if need_h:
                grad_h[s:s + r] = g @ w
            if need_w:
                grad_w += g.t() @ h[:r]  # one float32 accumulation per chunk
            del g
        ctx.save_for_backward(grad_h, None if grad_w is None else grad_w.to(weight.dtype))
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        # out of place: a retained graph may run this backward again
        gh = None if grad_h is None else grad_h * grad_out.to(grad_h.dtype)
        gw = None if grad_w is None else grad_w * grad_out.to(grad_w.dtype)
        return gh, gw, None, None, None, None, None


def compiled_ce_unavailable(device: torch.device | str) -> str | None:
    """Why the compiled per-chunk function cannot run on ``device`` (None when it can)."""
    return compile_unavailable(device, "inductor")


def compiled_lm_head_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          valid_mask: torch.Tensor | None = None, *, chunk_size: int = COMPILED_CE_CHUNK,
                          compile: bool = True) -> torch.Tensor:
    """Summed NLL of ``targets`` under ``softmax(hidden @ weight.T)`` (float32 scalar; float64 for
    float64 inputs).

    hidden: [..., d]; weight: [vocab, d]; targets: [...] (``-100`` = ignored); valid_mask: [...]
    bool/0-1, positions where it is false are left out. With grad enabled and an input requiring
    it, the gradients are computed here, chunk by chunk, and the backward only scales them; else
    only the loss is computed. ``compile``: torch.compile the per-chunk function (inductor); where
    it cannot run (see ``compiled_ce_unavailable``) this warns and runs it eagerly."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    h, t, v = _prepare(hidden, targets, valid_mask)
    if compile:
        why = compiled_ce_unavailable(h.device)
        if why is not None:
            warnings.warn(f"compiled_lm_head_loss: {why}; running eagerly", RuntimeWarning, stacklevel=2)
            compile = False
    cdtype = _compute_dtype(h)
    rows = _chunk_rows(h.shape[0], int(chunk_size))
    # every dtype is explicit below: autocast stays out, so the compiled graph does not depend on it
    with torch.autocast(h.device.type, enabled=False):
        if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
            return _GradInForwardCE.apply(h, weight, t, v, rows, cdtype, compile)
        # loss only; no_grad even when grad is enabled but nothing requires it, so the compiled
        # graph always sees the same grad mode (dynamo guards on it: no second compile)
        with torch.no_grad():
            w = weight.detach().to(cdtype)
            step = _step("loss", compile)
            total = torch.zeros((), dtype=_acc_dtype(cdtype), device=h.device)
            for _s, _r, hc, tc, vc in _chunks(h.detach(), t, v, rows, cdtype):
                total += step(hc, w, tc, vc)
        return total
