"""Per-GPU memory estimate for a training plan (FSDP2 full shard, AdamW), what the trainer does.

An estimate to read before launching, with every assumption stated in its output:
- sharded state, divided over the GPUs (FSDP2 full shard): ``amp-bf16`` keeps fp32 weights,
  fp32 gradients and fp32 AdamW moments (16 B/param); ``bf16`` keeps all of them in bf16
  (8 B/param, SlamKit's setting);
- gathered bf16 weights: two decoder layers at a time (the one computing and the one prefetched),
  plus the root (embeddings, LM head), which FSDP does not reshard after forward, and the root's
  gradients, which exist unsharded until they are reduce-scattered at the end of backward;
- activations per token and layer, counted from the tensors autograd saves in a Qwen2/Llama
  block (SwiGLU MLP; SDPA/FlashAttention, so no seq^2 term; checked against saved-tensor hooks
  in tests/test_memory_and_init.py); with activation checkpointing each layer keeps its input
  and one layer is recomputed at a time;
- the LM head + cross-entropy: logits, their float32 copy, the log-softmax kept for backward and
  the float32 gradient; with the chunked loss only one chunk of those, plus the float32 gradient
  accumulator of the LM-head weight;
- a fixed overhead for the CUDA context, NCCL buffers and allocator fragmentation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from scaling.flops import count_params
from scaling.shapes import QWEN_TOKENIZER_SIZE, SPEECH_TOKENS, ModelShape, get_shape, padded_vocab

GIB = 2**30
PRECISIONS = ("amp-bf16", "bf16")
CE_CHUNK = 4096  # trainer.kernels.chunked_ce default chunk (tokens)


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
    parts: dict  # name -> GiB

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
    """Bytes per parameter of the sharded training state."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    w = 4 if precision == "amp-bf16" else 2
    return {"weights": w, "gradients": w, "adamw": 2 * w}


def activation_bytes(shape: ModelShape, *, compute_bytes: int = 2) -> float:
    """Bytes autograd keeps per token in one decoder block (Qwen2/Llama, SwiGLU, SDPA/flash).

    In ``compute_bytes`` (bf16 = 2 under autocast; 4 on CPU in fp32): the inputs of the q/k/v,
    o and gate/up projections (3d), the rotated q, k, v and the attention output (2d + 2kv), the
    SwiGLU gate, up, silu(gate) and the down projection's input (4f). In float32 whatever the
    precision (RMSNorm computes in fp32): each of the 2 norms keeps its input and its normalised
    output (4d). The per-head softmax statistics are negligible."""
    d, f = shape.hidden_size, shape.intermediate_size
    kv = shape.num_kv_heads * (d // shape.num_heads)
    return compute_bytes * (5 * d + 2 * kv + 4 * f) + 4 * (4 * d)


def estimate(shape: ModelShape, *, model: str, gpus: int, micro_batch: int, seq: int, activation_checkpointing: bool = True,
             chunked_ce: bool = False, precision: str = "amp-bf16", gpu_memory_gib: float = 80.0, overhead_gib: float = 4.0,
             ce_chunk: int = CE_CHUNK) -> MemoryPlan:
    pc = count_params(shape)
    P, d, L, V = pc.total, shape.hidden_size, shape.num_layers, shape.vocab_size
    layer = pc.non_embedding // L
    tokens = micro_batch * seq
    sb = state_bytes_per_param(precision)
    grad_bytes = sb["gradients"]
    residual = 4 if precision == "amp-bf16" else 2  # the residual stream follows the weights' dtype
    parts = {
        "weights (sharded)": sb["weights"] * P / gpus / GIB,
        "gradients (sharded)": sb["gradients"] * P / gpus / GIB,
        "AdamW moments (sharded)": sb["adamw"] * P / gpus / GIB,
        "bf16 gathered layers (2)": 2 * 2 * layer / GIB,
        "bf16 root: embedding + LM head": 2 * pc.embedding / GIB,
        "root gradients (unsharded until reduce-scatter)": (grad_bytes * pc.embedding / GIB) if gpus > 1 else 0.0,
    }
    per_layer = activation_bytes(shape, compute_bytes=2)
    if activation_checkpointing:
        parts["activations (checkpointed layer inputs)"] = residual * tokens * d * L / GIB
        parts["activations (one layer recomputed)"] = per_layer * tokens / GIB
    else:
        parts["activations (all layers)"] = per_layer * tokens * L / GIB
    if chunked_ce:
        # one chunk: fp32 logits + fp32 softmax/gradient; the LM-head weight gradient accumulates in fp32
        parts["LM head + CE (one chunk)"] = (8 * min(tokens, ce_chunk) * V + 4 * V * d) / GIB
    else:
        # bf16 logits + their fp32 copy + the log-softmax saved for backward + the fp32 gradient
        parts["LM head + CE (full logits)"] = 14 * tokens * V / GIB
    parts["CUDA context, buffers, fragmentation"] = overhead_gib
    return MemoryPlan(model, P, gpus, micro_batch, seq, activation_checkpointing, chunked_ce, precision, gpu_memory_gib, parts)


def format_plan(plan: MemoryPlan) -> str:
    lines = [f"{plan.model}: {plan.params:,} parameters (incl. the 502 speech rows), {plan.gpus} GPU(s), "
             f"micro-batch {plan.micro_batch} x seq {plan.seq}, precision {plan.precision}, activation checkpointing "
             f"{'on' if plan.activation_checkpointing else 'off'}, chunked CE {'on' if plan.chunked_ce else 'off'}"]
    w = max(len(k) for k in plan.parts)
    lines += [f"  {k:<{w}}  {v:8.2f} GiB" for k, v in plan.parts.items()]
    lines.append(f"  {'total per GPU':<{w}}  {plan.total_gib:8.2f} GiB of {plan.gpu_memory_gib:g} GiB: "
                 f"{'fits' if plan.fits else 'DOES NOT FIT'}")
    master = "fp32 master weights, gradients and AdamW state" if plan.precision == "amp-bf16" else "bf16 weights, gradients and AdamW state"
    lines.append(f"  assumes FSDP2 full shard, bf16 compute with {master}, SwiGLU blocks with "
                 "FlashAttention/SDPA (no seq^2 activations); see scaling/memory.py")
    return "\n".join(lines)
