"""Building decoders from shapes, initialising speech LMs from text LMs (TWIST init).

All models are plain transformers classes (Qwen2ForCausalLM / LlamaForCausalLM), so every
checkpoint loads with AutoModelForCausalLM alone.

Every model built or loaded here has ``use_cache=False`` in its config: training, validation and
evaluation never want a KV cache, and with activation checkpointing a recomputed layer would
write its keys/values into the cache a second time (a shape error on the first backward).

Big models without big hosts (``build_meta`` + ``full_state_dict``): every rank builds the model
on the meta device (no memory), it is sharded, and only rank 0 reads the text LM's safetensors
(file by file) and grows its embedding rows; ``trainer.parallel.load_full_state`` then
broadcasts the tensors into the sharded parameters, one at a time.

A SlamKit ``UnitLM`` folder (trainer.slamkit_ckpt) is accepted wherever a checkpoint is (``load_model``,
``load_config``, ``full_state_dict``, so ``scaling eval``, ``scaling generate`` and ``init:``): it is read as the
plain causal LM it wraps, with the speech rows.
"""
from __future__ import annotations

from pathlib import Path

import torch

from scaling.errors import ConfigError
from scaling.shapes import ModelShape
from trainer import slamkit_ckpt

PRECISIONS = ("amp-bf16", "bf16")


def hf_config(shape: ModelShape, max_positions: int = 4096, *, init_std: float | None = None):
    """The transformers config of ``shape``; ``init_std`` (a std) replaces the config's initializer_range."""
    common = dict(
        vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads, max_position_embeddings=max_positions,
        tie_word_embeddings=shape.tie_embeddings, rms_norm_eps=1e-6, use_cache=False,
    )
    if init_std is not None:
        common["initializer_range"] = float(init_std)
    if shape.family == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(**common)
    if shape.family == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**common, attention_bias=shape.qkv_bias)
    raise ConfigError("unknown model family", field="shape.family", value=shape.family)


def attention_implementation(setting: str = "auto", device: torch.device | str | None = None) -> str:
    """The transformers attention implementation of ``train.attention``. ``auto``: FlashAttention-2 on a
    GPU that has it (packed documents go in as one row with restarting position ids, see
    trainer.attention), else SDPA with a block-diagonal mask. ``varlen``: torch's variable-length
    attention (trainer.kernels.varlen, registered with transformers here). A choice this machine
    cannot run is refused."""
    import importlib.util

    cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if setting == "auto":
        return "flash_attention_2" if cuda and importlib.util.find_spec("flash_attn") is not None else "sdpa"
    if setting == "varlen":
        from trainer.kernels.varlen import varlen_available  # registers "varlen" with transformers

        why = varlen_available(device or "cuda") if cuda else None
        if why is not None:  # on a GPU the exact reference path would be quadratic in the packed length: refuse
            raise ConfigError(f"torch's variable-length attention kernel is not usable here: {why}", field="train.attention",
                              value=setting)
    elif setting == "flash_attention_2" and (not cuda or importlib.util.find_spec("flash_attn") is None):
        raise ConfigError("needs a CUDA device and flash-attn (pip install 'speech-scaling[gpu]')", field="train.attention",
                          value=setting)
    elif setting == "flex_attention" and not cuda:
        raise ConfigError("flex_attention is used on a GPU only (it has no backward on the CPU)", field="train.attention",
                          value=setting)
    elif setting not in ("sdpa", "flash_attention_2", "flex_attention"):
        raise ConfigError("unknown attention implementation", field="train.attention", value=setting)
    return setting


def resolve_attention(attn: str | None) -> str:
    """``attn``, or the default implementation when None. Our own implementations are registered
    with transformers here, before it validates the name (``varlen``: trainer.kernels.varlen)."""
    attn = attn or attention_implementation()
    if attn == "varlen":
        import trainer.kernels.varlen  # noqa: F401 - registers "varlen" at import
    return attn


def no_cache(model):
    """No KV cache, at the source: the config every forward reads."""
    model.config.use_cache = False
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.use_cache = False
    return model


def build_model(shape: ModelShape, seed: int, max_positions: int = 4096, *, attn: str | None = None,
                init_std: float | None = None):
    """A randomly initialised decoder of the given shape (deterministic in ``seed``): transformers'
    initialisation, normal(0, ``init_std``) weights and embeddings (default: the config's 0.02)."""
    from transformers import AutoModelForCausalLM

    if shape.family == "qwen2" and shape.qkv_bias is False:
        raise ConfigError("Qwen2 always has q/k/v biases", field="shape.qkv_bias", value=False)
    torch.manual_seed(seed)
    cfg = hf_config(shape, max_positions, init_std=init_std)
    return no_cache(AutoModelForCausalLM.from_config(cfg, attn_implementation=resolve_attention(attn)))


def build_meta(config, *, dtype: torch.dtype, attn: str | None = None):
    """The model of ``config`` on the meta device in ``dtype``: shapes only, no memory, no initialisation.

    ``dtype`` is required: a text LM's config carries the dtype it was saved in (``bfloat16`` for every
    published Qwen2.5 checkpoint) and transformers builds in it, so without an explicit one the master
    weights, and with them the AdamW moments, would silently be bf16 under ``amp-bf16``."""
    from transformers import AutoModelForCausalLM

    config = type(config).from_dict(config.to_dict())
    config.use_cache = False
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, attn_implementation=resolve_attention(attn), dtype=dtype)
    return no_cache(model)


def master_dtype(precision: str) -> torch.dtype:
    """The dtype of the weights the optimiser updates (and of its moments): fp32 under ``amp-bf16``,
    bf16 under ``bf16`` (SlamKit's setting)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"must be one of {PRECISIONS}", field="train.precision", value=precision)
    return torch.bfloat16 if precision == "bf16" else torch.float32


def init_buffers(model, device) -> None:
    """Recompute the non-persistent buffers (rotary frequencies) after ``to_empty``: they are not
    in any state dict, so a meta-built model has garbage there until this runs."""
    for name, m in model.named_modules():
        if hasattr(m, "inv_freq") and "inv_freq" in m._buffers:
            fresh = type(m)(config=m.config)
            for b, v in fresh.named_buffers(recurse=False):
                getattr(m, b).copy_(v.to(device))


def quiet_transformers() -> None:
    """No progress bars or deprecation chatter from transformers in our logs."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def resolve_source(source: str | Path, *, field: str = "init") -> Path:
    """A local Hugging Face folder for ``source``: the folder itself, or a hub id's snapshot in the
    local HF cache. Never downloads: without a cached copy the error says how to fetch it first."""
    path = Path(source)
    if (path / "config.json").is_file():
        return path
    from scaling.initref import InitRef

    ref = InitRef.parse(str(source), field=field)
    if ref.kind != "hub":
        raise ConfigError("not a Hugging Face model folder (no config.json)", source=str(path), field=field, value=str(source))
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ref.value, local_files_only=True, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except Exception as e:  # noqa: BLE001 - any miss in the local cache: the same advice
        raise ConfigError(
            f"hub model '{ref.value}' is not in the local Hugging Face cache and runs never download "
            f"({type(e).__name__}); fetch it beforehand on a machine with network: "
            f"`huggingface-cli download {ref.value}` (same HF_HOME as the run), or set init to a local folder",
            field=field, value=ref.value) from None


def load_model(path: str | Path, *, attn: str | None = None, dtype=torch.float32):
    """A text LM from a local folder or a cached hub id (fp32 master weights by default); a SlamKit UnitLM
    folder gives the causal LM it wraps."""
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    src = resolve_source(path)
    if slamkit_ckpt.is_unitlm(src):
        return no_cache(slamkit_ckpt.load_lm(src, attn=resolve_attention(attn), dtype=dtype))
    return no_cache(AutoModelForCausalLM.from_pretrained(str(src), attn_implementation=resolve_attention(attn), dtype=dtype))


def load_config(path: str | Path):
    """The transformers config of a model folder or cached hub id (of the wrapped LM for a SlamKit UnitLM)."""
    from transformers import AutoConfig

    src = resolve_source(path)
    if slamkit_ckpt.is_unitlm(src):
        return slamkit_ckpt.lm_config(src)
    return AutoConfig.from_pretrained(str(src))


def grown_rows(weight: torch.Tensor, new_rows: int, real_rows: int, init: str, *, seed: int, std: float) -> torch.Tensor:
    """``weight`` [old, d] grown to [new_rows, d]; rows from ``real_rows`` on (padding in the text LM
    and the new ones) re-initialised: ``mean`` of the real rows (Hewitt 2021: the new tokens start
    near the average probability) or ``normal`` (std, from a generator seeded with ``seed``).
    The one growth rule of every init path (in-memory model or safetensors on rank 0)."""
    old, d = weight.shape
    if real_rows > old or new_rows < old:
        raise ConfigError(f"cannot grow {old} embedding rows to {new_rows} from {real_rows} real rows", field="vocab_size", value=new_rows)
    out = torch.empty(new_rows, d, dtype=weight.dtype, device=weight.device)
    out[:real_rows] = weight[:real_rows]
    if init == "mean":
        out[real_rows:] = weight[:real_rows].mean(dim=0, keepdim=True)
    elif init == "normal":
        g = torch.Generator(device="cpu").manual_seed(seed)
        out[real_rows:] = torch.empty(new_rows - real_rows, d, dtype=torch.float32).normal_(0.0, std, generator=g).to(out)
    else:
        raise ConfigError("unknown embedding init; use 'mean' or 'normal'", field="embedding_init", value=init)
    return out


@torch.no_grad()
def extend_vocab(model, new_rows: int, real_rows: int, init: str = "mean", *, seed: int = 0) -> None:
    """Resize the embeddings to ``new_rows`` and initialise every row from ``real_rows`` on
    (``real_rows`` is the text tokenizer's size: rows beyond it are padding in the text LM)."""
    emb = model.get_input_embeddings()
    out = model.get_output_embeddings()
    tied = out is not None and out.weight is emb.weight
    std = model.config.initializer_range
    grown = grown_rows(emb.weight, new_rows, real_rows, init, seed=seed, std=std)
    new_emb = torch.nn.Embedding(new_rows, grown.shape[1], dtype=grown.dtype, device=grown.device)
    new_emb.weight.copy_(grown)
    model.set_input_embeddings(new_emb)
    if out is not None:
        if tied:
            out.weight = new_emb.weight
        else:
            w = grown_rows(out.weight, new_rows, real_rows, init, seed=seed + 1, std=std)
            out.weight = torch.nn.Parameter(w)
            out.out_features = new_rows
    model.config.vocab_size = new_rows


def full_state_dict(source: str | Path, *, new_rows: int, real_rows: int, init: str, seed: int, dtype=torch.float32) -> dict:
    """The text LM's weights read from its safetensors files (one file at a time), with the
    embedding rows grown exactly as ``extend_vocab`` grows them when their number differs from
    ``new_rows`` (as ``init_model`` does). Rank 0 calls this; nothing is built, so host memory is one
    copy of the weights. A SlamKit UnitLM folder gives the tensors of the LM it wraps."""
    src = resolve_source(source)
    cfg = load_config(src)
    if slamkit_ckpt.is_unitlm(src):  # the wrapped LM's tensors, 'lm.' stripped
        sd = slamkit_ckpt.lm_state_dict(src, dtype=dtype)
    else:
        files = sorted(src.glob("*.safetensors"))
        if not files:
            raise ConfigError("no *.safetensors weights in the model folder", source=str(src))
        sd = slamkit_ckpt.read_tensors(files, dtype=dtype)
    std = cfg.initializer_range
    emb_key, head_key = "model.embed_tokens.weight", "lm_head.weight"
    # as init_model: the rows grow only when their number changes (a speech LM with the speech rows already,
    # such as a SlamKit UnitLM, keeps every row it learnt)
    grow = sd[emb_key].shape[0] != new_rows
    if grow:
        sd[emb_key] = grown_rows(sd[emb_key], new_rows, real_rows, init, seed=seed, std=std)
    if cfg.tie_word_embeddings:
        sd.pop(head_key, None)
        sd[head_key] = sd[emb_key]
    elif grow:
        sd[head_key] = grown_rows(sd[head_key], new_rows, real_rows, init, seed=seed + 1, std=std)
    return sd


def count_model_params(model) -> int:
    """All distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def autocast(device: torch.device, precision: str = "amp-bf16"):
    """The compute context of every forward: bf16 autocast on GPU with fp32 master weights
    (``amp-bf16``); nothing for ``bf16`` weights (already bf16) or on CPU (exact fp32)."""
    import contextlib

    if torch.device(device).type == "cuda" and precision == "amp-bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
