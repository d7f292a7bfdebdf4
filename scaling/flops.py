"""Parameter and FLOP accounting, without building a model.

Two conventions are recorded for every run (Porian et al. 2024; Pearce & Song 2024):
- ``flops`` = 6 N D with N = all parameters (embeddings included), as SIMS and Chinchilla;
- ``flops_exact`` = D x (6 x matmul parameters incl. the LM head + 6 x layers x seq x hidden),
  the formula behind the MFU figures in REFERENCE section 4 (attention scores and values
  for a causal mask; the embedding lookup is not a matmul and is not counted).
"""
from __future__ import annotations

from dataclasses import dataclass

from scaling.shapes import ModelShape


@dataclass(frozen=True)
class ParamCount:
    total: int
    embedding: int  # input embedding rows (+ untied LM head)
    non_embedding: int


def count_params(shape: ModelShape) -> ParamCount:
    d, hd = shape.hidden_size, shape.head_dim
    q, kv = shape.num_heads * hd, shape.num_kv_heads * hd
    attn = d * q + 2 * d * kv + q * d
    if shape.qkv_bias:
        attn += q + 2 * kv
    mlp = 3 * d * shape.intermediate_size
    norms = 2 * d
    per_layer = attn + mlp + norms
    embed = shape.vocab_size * d
    head = 0 if shape.tie_embeddings else shape.vocab_size * d
    non_emb = shape.num_layers * per_layer + d  # + final norm
    return ParamCount(total=non_emb + embed + head, embedding=embed + head, non_embedding=non_emb)


def matmul_params(shape: ModelShape) -> int:
    """Parameters that take part in a matmul per token: all layers' weights plus the LM head."""
    pc = count_params(shape)
    return pc.non_embedding + shape.vocab_size * shape.hidden_size


def flops_6nd(params: int, tokens: int) -> float:
    return 6.0 * params * tokens


def wsd_branch_tokens(cooldowns, cooldown_frac: float) -> int:
    """Tokens a wsd run trains beyond its trunk for its cooldown branches: each branch decays over
    ``cooldown_frac`` of its own token count (rounded to a whole token). How plans, and the grids
    `scaling design` compares, count a wsd run's compute."""
    return sum(int(round(c * cooldown_frac)) for c in cooldowns)


def flops_per_token_exact(shape: ModelShape, seq_len: int) -> float:
    return 6.0 * matmul_params(shape) + 6.0 * shape.num_layers * seq_len * shape.hidden_size


def flops_exact(shape: ModelShape, tokens: int, seq_len: int) -> float:
    return flops_per_token_exact(shape, seq_len) * tokens
