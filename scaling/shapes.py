"""Model shapes: the published families and the toy ladder of the demo.

A shape is everything needed to build a decoder (Qwen2/Llama-style: RMSNorm, rotary
positions, SwiGLU MLP, grouped-query attention) and to count its parameters and FLOPs
without building it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from scaling.errors import ConfigError

SPEECH_TOKENS = 502  # <Un0>..<Un499>, <speech>, <text>
VOCAB_MULTIPLE = 64  # embedding rows are padded to a multiple of this


@dataclass(frozen=True)
class ModelShape:
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool = True
    qkv_bias: bool = True  # Qwen2 has q/k/v biases; Llama does not
    family: str = "qwen2"

    def __post_init__(self):
        for f in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError("must be a positive integer", field=f, value=v)
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_heads", field="num_heads", value=self.num_heads)
        if self.head_dim % 2:  # rotary embeddings turn pairs of channels; an odd head fails inside attention
            raise ConfigError(f"head dimension hidden_size / num_heads = {self.hidden_size} / {self.num_heads} = "
                              f"{self.head_dim} is odd; rotary embeddings need an even one", field="num_heads",
                              value=self.num_heads)
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"num_heads {self.num_heads} is not divisible by num_kv_heads", field="num_kv_heads", value=self.num_kv_heads)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def with_vocab(self, vocab_size: int) -> "ModelShape":
        return replace(self, vocab_size=vocab_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, *, source: str | None = None) -> "ModelShape":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown shape key(s) {unknown}; known: {sorted(known)}", source=source, field="shape")
        return cls(**d)


def padded_vocab(n: int, multiple: int = VOCAB_MULTIPLE) -> int:
    return -(-n // multiple) * multiple


# Published shapes. Vocabulary = the checkpoint's embedding rows (before adding speech tokens).
_QWEN = dict(family="qwen2", qkv_bias=True)
_LLAMA = dict(family="llama", qkv_bias=False)
PUBLISHED: dict[str, ModelShape] = {
    "qwen2.5-0.5b": ModelShape(896, 24, 14, 2, 4864, 151936, True, **_QWEN),
    "qwen2.5-1.5b": ModelShape(1536, 28, 12, 2, 8960, 151936, True, **_QWEN),
    "qwen2.5-3b": ModelShape(2048, 36, 16, 2, 11008, 151936, True, **_QWEN),
    "qwen2.5-7b": ModelShape(3584, 28, 28, 4, 18944, 152064, False, **_QWEN),
    "llama-3.2-1b": ModelShape(2048, 16, 32, 8, 8192, 128256, True, **_LLAMA),
    "llama-3.2-3b": ModelShape(3072, 28, 24, 8, 8192, 128256, True, **_LLAMA),
}
# Rows actually used by the Qwen2.5 tokenizer (the checkpoints pad the matrix beyond it).
QWEN_TOKENIZER_SIZE = 151665

# The demo ladder: Qwen2-style toy decoders. vocab_size is a placeholder; the demo
# replaces it with the size of the tokenizer it trains (see trainer.model).
DEMO: dict[str, ModelShape] = {
    "toy-xs": ModelShape(32, 2, 4, 2, 96, 1024),
    "toy-s": ModelShape(48, 2, 4, 2, 128, 1024),
    "toy-m": ModelShape(64, 3, 4, 2, 192, 1024),
    "toy-ml": ModelShape(80, 4, 4, 2, 224, 1024),
    "toy-l": ModelShape(96, 4, 4, 2, 256, 1024),
    "toy-xl": ModelShape(128, 4, 4, 2, 384, 1024),
    # the default CPU demo ladder (scaling demo), named by non-embedding parameters at its 256-row
    # vocabulary (96 units + 2 markers + 158 text tokens): 4.4k-81k, non-embedding parameters dominating.
    # On this corpus the loss-optimal D/N is ~40-130, so 2 cores' budgets (2e10-2e11) want sizes this small
    "micro-4k": ModelShape(12, 2, 2, 1, 48, 1024),
    "micro-8k": ModelShape(16, 2, 2, 1, 64, 1024),
    "micro-15k": ModelShape(20, 3, 2, 1, 64, 1024),
    "micro-23k": ModelShape(24, 3, 2, 1, 80, 1024),
    "micro-46k": ModelShape(32, 3, 4, 2, 128, 1024),
    "micro-61k": ModelShape(40, 3, 4, 2, 128, 1024),
    "micro-81k": ModelShape(40, 4, 4, 2, 128, 1024),
    # the GPU demo ladder (scaling demo --scale gpu), named by non-embedding parameters: 1.3M-30M,
    # every size non-embedding dominated at the demo's 1,024 rows
    "mini-1m": ModelShape(128, 6, 4, 2, 448, 1024),
    "mini-3m": ModelShape(192, 6, 6, 2, 640, 1024),
    "mini-7m": ModelShape(256, 8, 8, 2, 896, 1024),
    "mini-15m": ModelShape(384, 8, 6, 2, 1280, 1024),
    "mini-30m": ModelShape(512, 10, 8, 2, 1536, 1024),
}

KNOWN: dict[str, ModelShape] = {**PUBLISHED, **DEMO}


#: ``model_type`` of a SlamKit ``UnitLM`` config.json (slp-rl/slamkit ``UnitLMConfig``): the text LM's config
#: under ``base_config``, the rows of its embeddings (speech tokens included) in the top-level ``vocab_size``.
#: Read and written by trainer.slamkit_ckpt.
UNITLM_MODEL_TYPE = "speech_language_model"


def shape_from_hf_config(config: dict, *, source: str | None = None) -> ModelShape:
    """The shape of a Hugging Face Qwen2 / Llama ``config.json`` (a text LM to initialise from). A SlamKit
    UnitLM config's shape is its ``base_config``'s, with the UnitLM's ``vocab_size`` (the rows its weights hold;
    ``base_config.vocab_size`` is the text LM's before SlamKit resized the embeddings)."""
    if config.get("model_type") == UNITLM_MODEL_TYPE:
        base = config.get("base_config")
        if not isinstance(base, dict):
            raise ConfigError("a SlamKit UnitLM config holds its text LM's config under 'base_config'; it is missing",
                              source=source, field="base_config", value=base)
        config = {**base, "vocab_size": config.get("vocab_size", base.get("vocab_size"))}
    family = {"qwen2": "qwen2", "llama": "llama"}.get(config.get("model_type", ""))
    if family is None:
        raise ConfigError("only qwen2 and llama checkpoints are supported", source=source, field="model_type",
                          value=config.get("model_type"))
    try:
        return ModelShape(
            hidden_size=config["hidden_size"], num_layers=config["num_hidden_layers"], num_heads=config["num_attention_heads"],
            num_kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
            intermediate_size=config["intermediate_size"], vocab_size=config["vocab_size"],
            tie_embeddings=bool(config.get("tie_word_embeddings", family == "qwen2")),
            qkv_bias=True if family == "qwen2" else bool(config.get("attention_bias", False)), family=family)
    except KeyError as e:
        raise ConfigError("missing key in the model config", source=source, field=str(e.args[0])) from None


def get_shape(name: str, *, source: str | None = None, field: str = "model") -> ModelShape:
    try:
        return KNOWN[name]
    except KeyError:
        raise ConfigError(f"unknown model '{name}'; known: {', '.join(KNOWN)}", source=source, field=field) from None
