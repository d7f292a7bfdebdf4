"""Variable-length attention over packed documents, with no dense mask: ``attn_implementation="varlen"``.

The promise: a packed micro-batch flattened to one row of N tokens, whose documents are given by
cumulative offsets ``cu_seq_lens_q`` = [0, end_1, ..., N] (int32), gets causal attention within each
document and none across, exactly as if every document ran alone from position 0 (position ids
restart per document, so rotary embeddings agree too). No [.., T, T] mask is ever built on a GPU.

Design:
- importing this module registers ``"varlen"`` with transformers: an attention function, and a mask
  function that returns None, so ``create_causal_mask`` never builds a mask for it (re-registering is
  a plain dict update: importing again, or reloading, is harmless);
- the documents travel as transformers' own ``FlashAttentionKwargs`` names (``cu_seq_lens_q/_k``,
  ``max_length_q/_k``), model kwargs that reach every attention call unchanged; ``varlen_inputs`` makes
  them from the row's restarting position ids. Without them every row is one sequence (plain causal);
- fast path: on CUDA, with bf16/fp16 q/k/v (or under a bf16/fp16 autocast, which the kernel call does
  not see, so q/k/v are cast here as transformers' FlashAttention path does), torch's
  ``varlen_attn`` (FlashAttention-2 varlen) with a causal window (-1, 0) and native GQA
  (``enable_gqa=True``: k/v keep their Hkv heads, nothing is repeated);
- otherwise (CPU, fp32, a torch without ``varlen_attn``) the exact REFERENCE: SDPA with native GQA
  under a block-diagonal causal [N, N] boolean mask built, with tensor ops only, from the same
  offsets. It is quadratic in memory: meant for CPU tests and fp32 checks, not for GPU training;
- both paths trace under ``torch.compile(fullgraph=True)`` and do not recompile when the document
  boundaries (or their number) change: nothing reads data on the host, ``max_length_*`` is a constant
  upper bound (the row length), and the offsets' length is marked dynamic by ``varlen_inputs``.

``varlen_available(device)`` says why the fast kernel would NOT run on a device (None when it would);
the attention function itself does not ask it (a CUDA device check inside a compiled region is not
traceable): on a CUDA GPU without FlashAttention (pre-Ampere) the kernel call fails loudly instead of
silently falling back to the quadratic reference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # torch >= 2.10 ships it; older torch: the reference path only
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # pragma: no cover - depends on the installed torch
    varlen_attn = None

NAME = "varlen"
# where and in which dtypes the fast kernel runs (module-level so a test can force the kernel branch
# on CPU with a stand-in for ``varlen_attn``)
KERNEL_DEVICES: tuple[str, ...] = ("cuda",)
KERNEL_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16)
CAUSAL = (-1, 0)  # varlen_attn's window for causal attention (unbounded left, nothing to the right)


def varlen_available(device: torch.device | str) -> str | None:
    """Why the fast ``varlen_attn`` kernel is NOT used on ``device`` (None when it is, for bf16/fp16
    q/k/v or under a bf16/fp16 autocast; fp32 always takes the reference path)."""
    dev = torch.device(device)
    if varlen_attn is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen.varlen_attn"
    if dev.type != "cuda":
        return f"varlen_attn is a CUDA (FlashAttention) kernel; device is {dev.type}"
    if not torch.cuda.is_available():
        return "CUDA is not available"
    if torch.version.hip is None:
        major, minor = torch.cuda.get_device_capability(dev)
        if major < 8:
            return f"FlashAttention needs compute capability >= 8.0 (Ampere); this GPU has {major}.{minor}"
    flash = getattr(torch.backends.cuda, "is_flash_attention_available", None)
    if flash is not None and not flash():
        return "this torch build has no FlashAttention kernels"
    return None


def varlen_inputs(position_ids: torch.Tensor, max_length: int | None = None) -> dict:
    """The model kwargs that give ``"varlen"`` its documents: int32 cumulative offsets
    ``cu_seq_lens_q``/``cu_seq_lens_k`` [n_docs + 1] over the flattened tokens of ``position_ids``
    (a document starts wherever the position id is not the previous one + 1, and at the first token)
    and ``max_length_q``/``max_length_k`` = ``max_length``, an upper bound of every document's length
    (default: the number of tokens; ``trainer.attention.packed_inputs`` passes the row length).

    The number of documents is data-dependent, so this finds the starts with ``nonzero`` (one
    host-device sync, here in eager code; transformers' FlashAttention path syncs on its position ids
    the same way). The offsets' length is marked dynamic for torch.compile, so a compiled layer does
    not recompile when it changes."""
    pos = position_ids.reshape(-1)
    n = pos.numel()
    start = torch.ones(n, dtype=torch.bool, device=pos.device)
    start[1:] = pos[1:] != pos[:-1] + 1
    cu = torch.cat([start.nonzero().flatten(), torch.tensor([n], device=pos.device)]).to(torch.int32)
    torch._dynamo.maybe_mark_dynamic(cu, 0)
    # The max length is only a kernel launch bound (grid size over query/key blocks): a constant
    # upper bound is exact and keeps it a compile-time constant, where the true maximum would need a
    # host sync (.item()) and give a new Python int, hence a recompile, at almost every batch.
    m = int(n if max_length is None else max_length)
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": m, "max_length_k": m}


def _kernel_dtype(q: torch.Tensor) -> torch.dtype | None:
    """The dtype the fast kernel runs in for ``q``, None for the reference path. Static under compile
    (device type, dtype, autocast state are all known at trace time)."""
    dev = q.device.type
    if varlen_attn is None or dev not in KERNEL_DEVICES:
        return None
    # under autocast q/k come out of the rotary embedding in fp32 (fp32 cos/sin) while v is bf16:
    # the kernel is not autocast-aware, so cast to the autocast dtype as transformers' FA path does
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else q.dtype
    return dtype if dtype in KERNEL_DTYPES else None


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, scale: float | None) -> torch.Tensor:
    """Causal attention within each document of [N, H, D] tokens: SDPA (GQA native) under a
    block-diagonal causal [N, N] mask made from the offsets ``cu`` (the CPU/fp32 reference)."""
    n = q.shape[0]
    idx = torch.arange(n, device=q.device, dtype=cu.dtype)
    doc = torch.searchsorted(cu, idx, right=True)  # document number of every token (+1, irrelevant)
    mask = (doc[:, None] == doc[None, :]) & (idx[:, None] >= idx[None, :])
    out = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                         attn_mask=mask, scale=scale, enable_gqa=True)
    return out.transpose(0, 1)


def varlen_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                             sliding_window: int | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: ``query`` [B, Hq, T, D], ``key``/``value`` [B, Hkv, T, D]
    -> ([B, T, Hq, D], None). The B*T tokens, taken row after row, are split into documents by
    ``kwargs["cu_seq_lens_q"]`` (``varlen_inputs``); without it every row is one sequence."""
    if attention_mask is not None:
        raise ValueError("varlen attention takes its documents from cu_seq_lens_q, not from an attention mask")
    if dropout:
        raise NotImplementedError("varlen attention has no attention dropout (varlen_attn fixes it at 0)")
    if sliding_window is not None:
        raise NotImplementedError("varlen attention over sliding-window layers")
    B, Hq, T, D = query.shape
    if key.shape[2] != T:
        raise NotImplementedError("varlen attention with a KV cache (query and key lengths differ)")
    cu = kwargs.get("cu_seq_lens_q")
    max_len = kwargs.get("max_length_q")
    if cu is None:  # plain causal rows: offsets 0, T, 2T, ... without reading any data
        cu = torch.arange(0, (B + 1) * T, T, device=query.device, dtype=torch.int32)
        max_len = T
    if max_len is None:
        max_len = B * T  # no document is longer than all the tokens
    # [B, H, T, D] -> [B*T, H, D], the kernel's token-major layout
    q, k, v = (t.transpose(1, 2).reshape(B * T, t.shape[1], D) for t in (query, key, value))
    dtype = _kernel_dtype(query)
    if dtype is not None:
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        cu_k = kwargs.get("cu_seq_lens_k")
        max_k = kwargs.get("max_length_k")
        out = varlen_attn(q, k, v, cu, cu if cu_k is None else cu_k, max_len, max_len if max_k is None else max_k,
                          scale=scaling, window_size=CAUSAL, enable_gqa=True)
    else:
        out = _reference(q, k, v, cu, scaling)
    return out.reshape(B, T, Hq, D), None


def varlen_mask(*args, **kwargs) -> None:
    """transformers' mask interface: no mask at all, the documents are in the offsets. A 2D padding
    mask is dropped too: exact for right padding (evaluation's padded rows: causal attention never
    looks right), wrong for left padding, which nothing here uses."""
    return None


def register() -> None:
    """Register ``"varlen"`` with transformers (attention + mask); safe to call any number of times."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_attention_forward)
    AttentionMaskInterface.register(NAME, varlen_mask)


register()
