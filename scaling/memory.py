"""Per-GPU memory estimate for a training plan (AdamW; FSDP2 full shard on several GPUs), what the
trainer does, and what ``scaling bench`` measures on one GPU (``torch.cuda.max_memory_allocated``).

The peak is the largest of four moments of a training step, each the sum of what is alive then:

- ``loss``: the end of the forward and the LM head + cross-entropy backward. All saved activations
  are alive (with activation checkpointing only each block's input), and so is the loss's working
  set: with full logits, the log-softmax kept for backward, its gradient and the logits' gradient,
  three float32 [tokens, vocab] tensors (12 B per logit; the forward's bf16 logits, their float32
  copy and the log-softmax are 10 B and come first); with the chunked loss (trainer/kernels/
  chunked_ce.py) one chunk's float32 logits and softmax (8 B per logit) and the float32 accumulator
  of the LM-head weight gradient, or, later in the same backward, the chunk's bf16 gradient and the
  chunk's bf16 and float32 [vocab, d] weight-gradient terms;
- ``blocks``: the backward of the last block, with checkpointing its recomputed activations;
- ``end of backward``: all gradients, and under FSDP the root's (embeddings, LM head) gradients on
  their way through the reduce-scatter (the root is reduced last, in the reduce dtype, unsharded);
- ``optimizer``: weights, gradients and moments; the fused AdamW kernel (the trainer's choice on a GPU,
  with or without FSDP) allocates nothing; ``foreach`` (the CPU's) one temporary the size of the
  parameters' shard; the per-tensor loop (what FSDP runs used before 2026-12-07, and the records
  of that time) two temporaries the size of the largest tensor's shard.

Terms, each from what the code allocates:
- state: ``amp-bf16`` keeps fp32 weights, fp32 gradients and fp32 AdamW moments (16 B/param);
  ``bf16`` keeps all of them in bf16 (8 B/param, SlamKit's setting); divided over the GPUs under
  FSDP (``fsdp``, default: more than one GPU), whole on every GPU without it. Gradients exist in
  the forward only with gradient accumulation (``accumulation`` > 1, the default assumption); with
  one micro-batch per step ``zero_grad(set_to_none=True)`` frees them before every forward;
- ``amp-bf16`` without FSDP: autocast casts every fp32 matmul weight to bf16 and the cast is saved
  for the backward, so a bf16 copy of all matmul weights (the LM head included) lives from the
  forward to the backward (only the LM head's with checkpointing: the blocks' casts are redone in
  the recompute); FSDP gathers bf16 weights instead: the root (not resharded after forward) and one
  block (two during the backward: the one computing and the one prefetched); pure ``bf16`` casts
  nothing;
- activations per token and block, from the tensors autograd saves in a Qwen2/Llama block
  (``activation_bytes``, checked against saved-tensor hooks in tests/test_memory_and_init.py);
- a fixed overhead for the CUDA context, NCCL buffers and allocator fragmentation (not in
  ``max_memory_allocated``; the bench passes 0).

Not modelled: ``torch.compile``d blocks (Inductor's partitioner decides what a fused block saves and
recomputes: fewer activations than eager; the estimate is the eager one) and Liger's fused linear
cross-entropy (it computes the gradients in the forward, in chunks of about tokens x d logits; the
chunked-loss figure is an upper bound for it). Measured against these peaks on one H200:
``python benchmarks/bench_memory_model.py``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from scaling.flops import count_params
from scaling.shapes import (
    QWEN_TOKENIZER_SIZE,
    SPEECH_TOKENS,
    ModelShape,
    get_shape,
    padded_vocab,
)

GIB = 2**30
PRECISIONS = ("amp-bf16", "bf16")
ATTENTIONS = ("flash", "sdpa")
ADAMW = ("fused", "foreach", "per-tensor")
CE_CHUNK = 4096  # rows per chunk of the Python chunked LM head + CE (trainer/kernels/chunked_ce.py reads it here)
COMPILED_CE_CHUNK = 8192  # rows per chunk of the compiled one (trainer/kernels/fused_ce.py)
COMPUTE_BYTES = 2  # bf16 compute on a GPU


@dataclass(frozen=True)
class MemoryPlan:
    model: str
    params: int
    gpus: int
    micro_batch: int
    seq: int
    activation_checkpointing: bool
    chunked_ce: bool
    precision: str
    gpu_memory_gib: float
    parts: dict  # name -> GiB, at the peak moment
    fsdp: bool = False
    attention: str = "flash"
    accumulation: int | None = None
    peak: str = "loss"  # the moment of the step where the peak is
    moments: dict | None = None  # moment -> GiB (overhead included)
    compiled_ce: bool = False
    adamw: str = "fused"

    @property
    def total_gib(self) -> float:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.total_gib <= self.gpu_memory_gib

    def to_dict(self) -> dict:
        return {**asdict(self), "total_gib": self.total_gib, "fits": self.fits}


def speech_shape(name: str) -> ModelShape:
    """The published shape with the 502 speech tokens added (rows padded to a multiple of 64)."""
    shape = get_shape(name, field="--model")
    base = QWEN_TOKENIZER_SIZE if shape.family == "qwen2" else shape.vocab_size
    return shape.with_vocab(max(shape.vocab_size, padded_vocab(base + SPEECH_TOKENS)))


def state_bytes_per_param(precision: str) -> dict:
    """Bytes per parameter of the training state."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    w = 4 if precision == "amp-bf16" else 2
    return {"weights": w, "gradients": w, "adamw": 2 * w}


def activation_bytes(shape: ModelShape, *, compute_bytes: int = COMPUTE_BYTES, residual_bytes: int | None = None,
                     attention: str = "flash", seq: int = 0) -> float:
    """Bytes autograd keeps per token in one decoder block (Qwen2/Llama, SwiGLU).

    ``residual_bytes``: the dtype of the residual stream, the weights' (4 under amp-bf16 without
    FSDP: fp32 weights, fp32 embeddings; 2 with bf16 weights, FSDP's gathered ones included;
    default ``compute_bytes``). ``compute_bytes``: the matmuls' (2 under autocast/bf16, 4 on CPU).
    - each RMSNorm keeps its float32 input (or float32 copy of it) and its normalised output in the
      residual dtype: (4 + residual) d per norm;
    - the matmul inputs: when the norm output is not in the compute dtype, autocast casts it once
      per projection (q, k, v, gate, up: 5 d; activations are not in autocast's cache), else the
      q/k/v and gate/up projections share it (2 d); plus the o projection's input (d);
    - attention (saved by SDPA/FlashAttention): q, k, v and the output; with ``attention='sdpa'``
      (the trainer's SDPA path: an explicit [B, 1, T, T] document mask) transformers repeats the
      k/v heads to the query heads (so k and v are d wide, not kv) and torch turns the boolean mask
      into an additive one in the compute dtype, saved by every block (``seq`` bytes x compute per
      token); with FlashAttention/flex (or SDPA without a mask) no seq^2 term and k, v stay kv wide;
    - the SwiGLU MLP: gate, up, silu(gate) and the down projection's input (4 f).
    The per-head softmax statistics are negligible."""
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, not {attention!r}")
    cb, rb = compute_bytes, compute_bytes if residual_bytes is None else residual_bytes
    d, f = shape.hidden_size, shape.intermediate_size
    kv = shape.num_kv_heads * shape.head_dim
    norms = 2 * (4 + rb) * d
    inputs = (5 if rb != cb else 2) * d + d
    if attention == "sdpa":
        attn = 4 * d + seq  # q, repeated k and v, output; the additive mask row of each token
    else:
        attn = 2 * d + 2 * kv
    return norms + cb * (inputs + attn + 4 * f)


def op_saved_bytes(shape: ModelShape, *, compute_bytes: int = COMPUTE_BYTES, residual_bytes: int | None = None) -> float:
    """Bytes per token one decoder block keeps under selective (per-op) checkpointing
    (``activation_checkpointing: op``, trainer.parallel): the block's input (residual dtype), every
    matmul output (q, k, v, o, gate, up, down: 3 d + 2 kv + 2 f) and the attention output (d); the
    norms, rotary embeddings, SwiGLU product and casts are recomputed."""
    cb, rb = compute_bytes, compute_bytes if residual_bytes is None else residual_bytes
    d, f = shape.hidden_size, shape.intermediate_size
    kv = shape.num_kv_heads * shape.head_dim
    return rb * d + cb * (4 * d + 2 * kv + 2 * f)


def _head_params(shape: ModelShape) -> int:
    return shape.vocab_size * shape.hidden_size


def estimate(shape: ModelShape, *, model: str, gpus: int, micro_batch: int, seq: int,
             activation_checkpointing: bool | int | str = True, chunked_ce: bool = False, precision: str = "amp-bf16",
             gpu_memory_gib: float = 80.0, overhead_gib: float = 4.0, ce_chunk: int = CE_CHUNK, fsdp: bool | None = None,
             attention: str = "flash", accumulation: int | None = None, compiled_ce: bool = False,
             adamw: str = "fused") -> MemoryPlan:
    """Peak memory per GPU of a training step (see the module doc for every term).

    ``activation_checkpointing``: false, true / "full" (every block), "op" (selective: matmul and attention
    outputs kept, ``op_saved_bytes``) or an integer k (every k-th block). ``compiled_ce``: the compiled
    gradient-in-forward LM head (trainer/kernels/fused_ce.py, chunks of ``COMPILED_CE_CHUNK`` rows).
    ``adamw``: ``fused`` (the trainer's choice on a GPU, FSDP included: no temporaries), ``foreach``
    (one temporary the size of the parameters' shard) or ``per-tensor`` (two of the largest tensor's shard).

    ``fsdp``: FSDP2 full shard (default: ``gpus > 1``, as the trainer; False on several GPUs: whole state
    on each, DDP's gradient buckets not counted); ``attention``: ``flash``
    (FlashAttention-2 varlen, flex, or SDPA without a mask) or ``sdpa`` (SDPA with the explicit
    document mask: the trainer's path where flash-attn is not installed); ``accumulation``:
    micro-batches per optimiser step (None: more than one, the gradients held through the forward)."""
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, not {attention!r}")
    if adamw not in ADAMW:
        raise ValueError(f"adamw must be one of {ADAMW}, not {adamw!r}")
    from scaling.spec import ac_mode

    mode, every = ac_mode(activation_checkpointing, field="activation_checkpointing")
    if mode == "auto":
        raise ValueError("activation_checkpointing 'auto' is resolved by trainer.autotune, not estimated")
    chunked_ce = chunked_ce or compiled_ce
    fsdp = gpus > 1 if fsdp is None else fsdp
    pc = count_params(shape)
    P, d, L, V = pc.total, shape.hidden_size, shape.num_layers, shape.vocab_size
    layer = (pc.non_embedding - d) // L
    head = _head_params(shape)
    root = P - L * layer  # embeddings, untied LM head, final norm: FSDP's root group
    largest = max(head, d * shape.intermediate_size)  # the largest tensor: the embedding / LM head, or an MLP matrix
    tokens = micro_batch * seq
    sb = state_bytes_per_param(precision)
    w = sb["weights"]
    cb = COMPUTE_BYTES
    amp = precision == "amp-bf16"
    shard = gpus if fsdp else 1
    held = accumulation is None or accumulation > 1
    # the weights' dtype as the forward sees them (fp32 under amp without FSDP; bf16 parameters or FSDP's bf16
    # gather otherwise): the residual stream, the final hidden state and the LM-head weight the loss reads follow it
    rb = hb = 4 if amp and not fsdp else cb
    reduce_bytes = 4 if amp else w  # FSDP reduce dtype: fp32 under amp-bf16, the parameters' otherwise

    weights = {"weights (sharded)": w * P / shard / GIB, "AdamW moments (sharded)": sb["adamw"] * P / shard / GIB}
    grads = {"gradients (sharded)": sb["gradients"] * P / shard / GIB}
    gathered = {}
    if fsdp:
        gathered["bf16 root (embeddings, LM head), gathered"] = cb * root / GIB
    matmul_weights = P - (0 if shape.tie_embeddings else head) - (L * 2 + 1) * d  # every weight a matmul reads
    per_layer = activation_bytes(shape, compute_bytes=cb, residual_bytes=rb, attention=attention, seq=seq)
    # what the layers keep from the forward to the backward, per checkpointing mode
    checkpointed = {"none": 0, "full": L, "op": 0, "every": -(-L // max(every, 1))}[mode]
    plain_blocks = L - checkpointed if mode != "op" else 0
    acts = {}
    if checkpointed:
        acts["activations (checkpointed layer inputs)"] = rb * tokens * d * checkpointed / GIB
    if mode == "op":
        acts["activations (matmul and attention outputs, all layers)"] = (
            op_saved_bytes(shape, compute_bytes=cb, residual_bytes=rb) * tokens * L / GIB)
    elif plain_blocks:
        acts[f"activations ({'all' if plain_blocks == L else plain_blocks} layers)"] = per_layer * tokens * plain_blocks / GIB

    # -- loss: forward end + LM head / cross-entropy backward
    loss = {**weights, **(grads if held else {}), **gathered}
    if fsdp:
        loss["bf16 gathered layers (1: the last, kept after forward)"] = cb * layer / GIB
    elif amp:
        # the casts of the blocks that keep their activations (recomputed in the others' backward)
        copies = head + (matmul_weights - head) * plain_blocks / L
        if chunked_ce:  # the chunked loss casts the LM head inside its own autograd function, saving nothing
            copies -= head
        if copies:
            loss["bf16 weight casts saved for backward (autocast)"] = cb * copies / GIB
    loss.update(acts)
    loss["final norm + hidden state"] = (4 + 2 * rb) * tokens * d / GIB
    head_grad_unsharded = cb * head if fsdp else 0  # the LM head's gradient waits, unsharded, for the root's reduce
    if compiled_ce:
        c = min(tokens, COMPILED_CE_CHUNK)
        cast = cb * head if hb != cb else 0  # weight.to(compute dtype), once per call
        # gradients computed in the forward: the fp32 weight-gradient accumulator, one chunk's logits and their
        # gradient in the compute dtype, the chunk's [V, d] product, and the hidden state's gradient kept to backward
        loss["LM head + CE (compiled, gradients in the forward)"] = (
            4 * head + cast + cb * head + 2 * cb * c * V + hb * tokens * d) / GIB
    elif chunked_ce:
        c = min(tokens, ce_chunk)
        cast = cb * head if hb != cb else 0  # weight.to(compute dtype) inside the chunked loss
        softmax = 8 * c * V  # one chunk's float32 logits and softmax
        weight_grad = c * V * cb + (cb + 4) * head  # the chunk's bf16 gradient, its bf16 and fp32 [V, d] terms
        final = hb * head if hb != 4 else 0  # the fp32 accumulator cast to the weight's dtype at the end
        loss["LM head + CE (one chunk)"] = (4 * head + cast + max(softmax, weight_grad, final)) / GIB
    else:
        loss["LM head + CE (full logits)"] = 12 * tokens * V / GIB

    # -- the last block's backward (with checkpointing: its recompute)
    blocks = {**weights, **gathered}
    if held:
        blocks.update(grads)
    elif not fsdp:
        blocks["LM-head gradient"] = w * head / GIB
    if fsdp:
        blocks["bf16 gathered layers (2: computing, prefetched)"] = 2 * cb * layer / GIB
        blocks["root gradients (unsharded until reduce-scatter)"] = head_grad_unsharded / GIB
        blocks["bf16 layer gradients (before reduce-scatter)"] = cb * layer / GIB
    elif amp:  # the casts of the blocks that keep their activations, and the recomputed block's
        blocks["bf16 weight casts saved for backward (autocast)"] = cb * (
            (matmul_weights - head) * plain_blocks / L + (layer if plain_blocks < L else head)) / GIB
    blocks.update(acts)
    if mode != "none":
        blocks["activations (one layer recomputed)"] = per_layer * tokens / GIB

    # -- end of backward: every gradient; under FSDP the root's through the reduce-scatter
    end = {**weights, **grads}
    if fsdp:  # the reduce-scatter input (unsharded, reduce dtype), while the bf16 gradients are copied in
        end["root gradients (unsharded until reduce-scatter)"] = (
            reduce_bytes * root + max(0.0, cb * root - sb["gradients"] * root / shard)) / GIB

    # -- optimizer step
    opt = {**weights, **grads}
    if adamw == "per-tensor":
        opt["AdamW temporaries (per-tensor, largest shard x 2)"] = 2 * w * largest / shard / GIB
    elif adamw == "foreach":
        opt["AdamW temporaries (foreach: one per parameter shard)"] = w * P / shard / GIB

    moments = {"loss": loss, "blocks": blocks, "end of backward": end, "optimizer": opt}
    peak = max(moments, key=lambda k: sum(moments[k].values()))
    parts = dict(moments[peak])
    parts["CUDA context, buffers, fragmentation"] = overhead_gib
    return MemoryPlan(model, P, gpus, micro_batch, seq, activation_checkpointing, chunked_ce, precision, gpu_memory_gib,
                      parts, fsdp=fsdp, attention=attention, accumulation=accumulation, peak=peak,
                      moments={k: sum(v.values()) + overhead_gib for k, v in moments.items()}, compiled_ce=compiled_ce,
                      adamw=adamw)


def _ac_words(value) -> str:
    from scaling.spec import ac_mode

    mode, k = ac_mode(value)
    return {"none": "off", "full": "on (every block)", "op": "selective (per op)"}.get(mode, f"on every {k} blocks")


def format_plan(plan: MemoryPlan) -> str:
    head = (f"{plan.model}: {plan.params:,} parameters (incl. the 502 speech rows), {plan.gpus} GPU(s)"
            f"{' under FSDP2' if plan.fsdp else ''}, micro-batch {plan.micro_batch} x seq {plan.seq}, precision "
            f"{plan.precision}, activation checkpointing {_ac_words(plan.activation_checkpointing)}, chunked CE "
            f"{('compiled' if plan.compiled_ce else 'on') if plan.chunked_ce else 'off'}, attention {plan.attention}, "
            f"AdamW {plan.adamw}")
    lines = [head]
    w = max(len(k) for k in plan.parts)
    lines.append(f"  peak at: {plan.peak} ("
                 + ", ".join(f"{k} {v:.2f}" for k, v in (plan.moments or {}).items()) + " GiB)")
    lines += [f"  {k:<{w}}  {v:8.2f} GiB" for k, v in plan.parts.items()]
    lines.append(f"  {'total per GPU':<{w}}  {plan.total_gib:8.2f} GiB of {plan.gpu_memory_gib:g} GiB: "
                 f"{'fits' if plan.fits else 'DOES NOT FIT'}")
    master = "fp32 master weights, gradients and AdamW state" if plan.precision == "amp-bf16" else "bf16 weights, gradients and AdamW state"
    held = "held through the forward (gradient accumulation)" if plan.accumulation is None or plan.accumulation > 1 else "freed before each forward (one micro-batch per step)"
    attn = ("FlashAttention/flex (no seq^2 activations)" if plan.attention == "flash"
            else "SDPA with the explicit document mask (a seq^2 mask saved per block)")
    lines.append(f"  assumes {'FSDP2 full shard' if plan.fsdp else 'no sharding (FSDP off)'}, bf16 compute with {master}, "
                 f"gradients {held}, SwiGLU blocks with {attn}, eager blocks (no torch.compile); see scaling/memory.py")
    return "\n".join(lines)
