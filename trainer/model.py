"""Building decoders from shapes, initialising speech LMs from text LMs (TWIST init).

All models are plain transformers classes (Qwen2ForCausalLM / LlamaForCausalLM), so every
checkpoint loads with AutoModelForCausalLM alone.
"""
from __future__ import annotations

from pathlib import Path

import torch

from scaling.errors import ConfigError
from scaling.shapes import ModelShape


def hf_config(shape: ModelShape, max_positions: int = 4096):
    common = dict(
        vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads, max_position_embeddings=max_positions,
        tie_word_embeddings=shape.tie_embeddings, rms_norm_eps=1e-6,
    )
    if shape.family == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(**common)
    if shape.family == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**common, attention_bias=shape.qkv_bias)
    raise ConfigError("unknown model family", field="shape.family", value=shape.family)


def attention_implementation() -> str:
    """FlashAttention-2 (varlen for packed documents) on a GPU that has it, else SDPA."""
    if torch.cuda.is_available():
        import importlib.util

        if importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
    return "sdpa"


def build_model(shape: ModelShape, seed: int, max_positions: int = 4096):
    """A randomly initialised decoder of the given shape (deterministic in ``seed``)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = hf_config(shape, max_positions)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attention_implementation())
    if shape.family == "qwen2" and shape.qkv_bias is False:
        raise ConfigError("Qwen2 always has q/k/v biases", field="shape.qkv_bias", value=False)
    return model


def quiet_transformers() -> None:
    """No progress bars or deprecation chatter from transformers in our logs."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def load_model(path: str | Path):
    from transformers import AutoModelForCausalLM

    quiet_transformers()

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ConfigError("not a Hugging Face model folder (no config.json)", source=str(path))
    return AutoModelForCausalLM.from_pretrained(str(path), attn_implementation="sdpa", dtype=torch.float32)


@torch.no_grad()
def extend_vocab(model, new_rows: int, real_rows: int, init: str = "mean") -> None:
    """Resize the embeddings to ``new_rows`` and initialise every row from ``real_rows`` on.

    ``real_rows`` is the text tokenizer's size: rows beyond it are padding in the text LM
    and are re-initialised too. ``init``: ``mean`` (mean of the real rows, Hewitt 2021: keeps
    the new tokens' initial probabilities close to the average), or ``normal`` (the model's
    initializer range).
    """
    old = model.get_input_embeddings().weight.shape[0]
    if real_rows > old or new_rows < old:
        raise ConfigError(f"cannot grow {old} embedding rows to {new_rows} from {real_rows} real rows", field="vocab_size", value=new_rows)
    model.resize_token_embeddings(new_rows, mean_resizing=False)
    mats = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != mats[0].data_ptr():
        mats.append(out.weight)
    for w in mats:
        if init == "mean":
            w[real_rows:] = w[:real_rows].mean(dim=0, keepdim=True)
        elif init == "normal":
            w[real_rows:].normal_(0.0, model.config.initializer_range)
        else:
            raise ConfigError("unknown embedding init; use 'mean' or 'normal'", field="embedding_init", value=init)
    model.config.vocab_size = new_rows


def count_model_params(model) -> int:
    """All distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
