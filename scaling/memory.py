"""Per-GPU memory estimate for a training plan (FSDP2 full shard, AdamW, bf16 compute).

An estimate to read before launching, with every assumption stated in its output:
- sharded state: fp32 master weights (4 B/param), fp32 gradients (4 B), AdamW moments (8 B),
  divided over the GPUs (FSDP2 full shard; with --offload the optimizer moments and master
  weights live in host memory instead);
- gathered bf16 weights: two decoder layers at a time (the one computing and the one prefetched),
  plus the embedding and LM head while they are in use;
- activations: with activation checkpointing, each layer's bf16 input is kept and one layer is
  recomputed at a time; without it, 34 x seq x batch x hidden bytes per layer (Korthikanti et
  al. 2022, with FlashAttention so no seq^2 term);
- logits: bf16 logits + their fp32 copy for the cross-entropy + the fp32 gradient
  (10 B per token per vocabulary row), or one chunk of them with a chunked LM-head loss;
- a fixed overhead for the CUDA context, NCCL buffers and allocator fragmentation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from scaling.flops import count_params
from scaling.shapes import QWEN_TOKENIZER_SIZE, SPEECH_TOKENS, ModelShape, get_shape, padded_vocab

GIB = 2**30


@dataclass(frozen=True)
class MemoryPlan:
    model: str
    params: int
    gpus: int
    micro_batch: int
    seq: int
    activation_checkpointing: bool
    chunked_ce: bool
    offload: bool
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


def estimate(shape: ModelShape, *, model: str, gpus: int, micro_batch: int, seq: int, activation_checkpointing: bool = True,
             chunked_ce: bool = False, offload: bool = False, gpu_memory_gib: float = 80.0, overhead_gib: float = 4.0,
             ce_chunk: int = 1024) -> MemoryPlan:
    pc = count_params(shape)
    P, d, L, V = pc.total, shape.hidden_size, shape.num_layers, shape.vocab_size
    layer = pc.non_embedding // L
    tokens = micro_batch * seq
    parts = {
        "fp32 weights (sharded)": 0.0 if offload else 4 * P / gpus / GIB,
        "fp32 gradients (sharded)": 4 * P / gpus / GIB,
        "AdamW moments (sharded)": 0.0 if offload else 8 * P / gpus / GIB,
        "bf16 gathered layers (2)": 2 * 2 * layer / GIB,
        "bf16 embedding + LM head": 2 * pc.embedding / GIB,
    }
    if activation_checkpointing:
        parts["activations (checkpointed inputs)"] = 2 * tokens * d * L / GIB
        parts["activations (one layer recomputed)"] = 34 * tokens * d / GIB
    else:
        parts["activations (all layers)"] = 34 * tokens * d * L / GIB
    parts["logits + CE"] = 10 * (min(tokens, ce_chunk) if chunked_ce else tokens) * V / GIB
    parts["CUDA context, buffers, fragmentation"] = overhead_gib
    return MemoryPlan(model, P, gpus, micro_batch, seq, activation_checkpointing, chunked_ce, offload, gpu_memory_gib, parts)


def format_plan(plan: MemoryPlan) -> str:
    lines = [f"{plan.model}: {plan.params:,} parameters (incl. the 502 speech rows), {plan.gpus} GPU(s), "
             f"micro-batch {plan.micro_batch} x seq {plan.seq}, activation checkpointing "
             f"{'on' if plan.activation_checkpointing else 'off'}, chunked CE {'on' if plan.chunked_ce else 'off'}, "
             f"optimizer offload {'on' if plan.offload else 'off'}"]
    w = max(len(k) for k in plan.parts)
    lines += [f"  {k:<{w}}  {v:8.2f} GiB" for k, v in plan.parts.items()]
    lines.append(f"  {'total per GPU':<{w}}  {plan.total_gib:8.2f} GiB of {plan.gpu_memory_gib:g} GiB: "
                 f"{'fits' if plan.fits else 'DOES NOT FIT'}")
    lines.append("  assumes FSDP2 full shard, bf16 compute with fp32 master weights and gradients, AdamW, "
                 "FlashAttention (no seq^2 activations); see scaling/memory.py")
    return "\n".join(lines)
