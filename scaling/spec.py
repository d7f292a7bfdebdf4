"""The run spec: one typed, validated record that fully determines a training run.

``run_id`` is derived from the spec's content (not from paths on this machine), so the
same grid point gets the same id everywhere and a finished run is recognised on rerun.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


from scaling.datadir import STREAMS
from scaling.errors import ConfigError
from scaling.shapes import ModelShape

TEXT_ARM = "textlm"  # the arm of text-LM pre-training runs (the init of text_lm arms)
# Arm and model names become folder names (runs/<arm>-<model>-...): plain names only.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$")


def check_name(value, *, source: str | None = None, field: str = "name") -> str:
    """``value`` if it is a plain name (letters, digits, '.', '_', '+', '-'; no path separator, no '..')."""
    if not isinstance(value, str) or not NAME_RE.match(value) or ".." in value:
        raise ConfigError("must be a plain name (letters, digits, '.', '_', '+', '-'; no '/', no '..')",
                          source=source, field=field, value=value)
    return value


INIT_STDS = ("hf", "small_init")


def check_init_std(value, *, source: str | None = None, field: str = "train.init_std") -> None:
    if isinstance(value, str) and value in INIT_STDS:
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1:
        return
    raise ConfigError(f"must be one of {INIT_STDS} or a number in (0, 1)", source=source, field=field, value=value)


def init_std_value(init_std, hidden_size: int) -> float | None:
    """The weight std a random init uses for ``init_std`` at this width (None: the config's own, 0.02)."""
    if init_std == "hf":
        return None
    if init_std == "small_init":
        return (2.0 / (5.0 * hidden_size)) ** 0.5
    return float(init_std)


#: train.attention values (see TrainConfig.attention)
ATTENTIONS = ("auto", "sdpa", "varlen", "flash_attention_2", "flex_attention")


def ac_mode(value, *, source: str | None = None, field: str = "train.activation_checkpointing") -> tuple[str, int]:
    """(mode, k) of a ``train.activation_checkpointing`` value: ("none", 0), ("full", 1), ("op", 0),
    ("every", k) for every k-th block (k >= 2; k = 1 is "full"), or ("auto", 0)."""
    if value is False or value == "none":
        return "none", 0
    if value is True or value == "full" or (isinstance(value, int) and not isinstance(value, bool) and value == 1):
        return "full", 1
    if value in ("op", "auto"):
        return value, 0
    if isinstance(value, int) and not isinstance(value, bool) and value >= 2:
        return "every", value
    raise ConfigError("must be false, true, 'full', 'op', 'auto' or an integer k >= 1 (every k-th block)",
                      source=source, field=field, value=value)


@dataclass
class TrainConfig:
    seq_len: int = 128
    batch_size: int = 8  # sequences per optimiser step (the global batch)
    # sequences per forward pass on each process; 0 = the process's whole share of the batch (no accumulation);
    # "auto": the largest that `scaling memory` fits in memory_fraction of the device (resolved at run start)
    micro_batch_size: int | str = 0
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_frac: float = 0.01
    # what warmup_frac is a fraction of: "run" (the run's own steps) or "shortest" (its shortest budget: with
    # wsd, the first cooldown branch, so that no branch spends more than warmup_frac of its steps warming up)
    warmup_basis: str = "run"
    grad_clip: float = 0.5
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eval_every: int = 0  # optimiser steps between validations; 0 = only at the end
    schedule: str = "cosine"  # "cosine" (with min lr) or "wsd" (warmup-stable-decay with cooldown branches)
    cooldown_frac: float = 0.2  # wsd: each cooldown branch decays over this fraction of its budget (1-sqrt shape)
    # recompute in backward (memory for compute): false; true or "full" (every decoder block); "op" (selective,
    # per op: matmul and attention outputs kept, the rest recomputed); an integer k (every k-th block, 1 = full);
    # "auto": none if `scaling memory` fits the step without it, else full (resolved at run start)
    activation_checkpointing: bool | int | str = False
    doc_mask: bool = True  # attention never crosses document boundaries in packed sequences
    chunked_ce: bool = False  # LM head + cross-entropy in token chunks, never the full logits (any process count)
    compile: bool = False  # torch.compile each decoder layer (regional compile; falls back to eager with a warning)
    checkpoint_every: int = 0  # optimiser steps between resumable checkpoints; 0 = every 10% of the run
    keep_checkpoints: bool = False  # keep checkpoints/ after the run is done (model/ always stays)
    embedding_init: str = "mean"  # new embedding rows of a text-LM init: "mean" or "normal"
    # std of a randomly initialised model's weight matrices and embeddings: "hf" (the transformers config's
    # initializer_range, 0.02 for every width, as Qwen2.5 was trained), "small_init" (sqrt(2 / (5 hidden)),
    # Nguyen & Salazar 2019, GPT-NeoX/Pythia's default), or a positive number
    init_std: float | str = "hf"
    val_sequences: int = 16  # validation sequences per stream
    precision: str = "amp-bf16"  # "amp-bf16": fp32 master weights, bf16 compute (GPU); "bf16": bf16 weights and AdamW state
    liger_ce: bool = False  # Liger's fused linear cross-entropy for the LM head (CUDA + liger-kernel; the `gpu` extra)
    # the fast recipe (issue 27); all operational: none of them is in the run id
    compiled_ce: bool = False  # compiled chunked LM head + CE (large chunks, gradients in the forward; needs torch.compile)
    # attention over packed documents: "auto" (FlashAttention-2 varlen when flash-attn is installed on a GPU, else
    # "sdpa"), "sdpa" (a block-diagonal mask), "varlen" (torch's variable-length attention, no mask),
    # "flash_attention_2", "flex_attention"
    attention: str = "auto"
    # bf16 compute copies of the fp32 master weights with gradients reduced in fp32 (FSDP2 MixedPrecisionPolicy):
    # "auto" (under FSDP, i.e. with several processes), true (at any world size, one process included), false
    bf16_params: bool | str = "auto"
    memory_fraction: float = 0.9  # of the device's memory, for micro_batch_size / activation_checkpointing "auto"
    liger_kernels: bool = False  # Liger-Kernel's fused RMSNorm, SwiGLU and RoPE (CUDA + liger-kernel; the `gpu` extra)

    def validate(self, source: str | None = None, prefix: str = "train") -> None:
        for name in ("seq_len", "batch_size", "val_sequences"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError("must be a positive integer", source=source, field=f"{prefix}.{name}", value=v)
        for name in ("lr", "min_lr", "grad_clip"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                raise ConfigError("must be a positive number", source=source, field=f"{prefix}.{name}", value=v)
        if self.min_lr > self.lr:
            raise ConfigError(f"must not exceed lr ({self.lr})", source=source, field=f"{prefix}.min_lr", value=self.min_lr)
        if not 0 <= self.warmup_frac < 1:
            raise ConfigError("must be in [0, 1)", source=source, field=f"{prefix}.warmup_frac", value=self.warmup_frac)
        if self.warmup_basis not in ("run", "shortest"):
            raise ConfigError("must be 'run' or 'shortest'", source=source, field=f"{prefix}.warmup_basis", value=self.warmup_basis)
        mb = self.micro_batch_size
        if mb != "auto" and (not isinstance(mb, int) or isinstance(mb, bool) or mb < 0 or (mb and self.batch_size % mb)):
            raise ConfigError(f"must be 'auto' or a non-negative integer dividing batch_size ({self.batch_size})",
                              source=source, field=f"{prefix}.micro_batch_size", value=mb)
        ac_mode(self.activation_checkpointing, source=source, field=f"{prefix}.activation_checkpointing")
        if self.attention not in ATTENTIONS:
            raise ConfigError(f"must be one of {ATTENTIONS}", source=source, field=f"{prefix}.attention", value=self.attention)
        if self.bf16_params not in (True, False, "auto"):
            raise ConfigError("must be true, false or 'auto'", source=source, field=f"{prefix}.bf16_params", value=self.bf16_params)
        for name in ("compiled_ce", "chunked_ce", "liger_ce", "liger_kernels", "compile", "doc_mask", "keep_checkpoints"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError("must be true or false", source=source, field=f"{prefix}.{name}", value=getattr(self, name))
        if self.liger_ce and self.compiled_ce:
            raise ConfigError("pick one LM-head loss: liger_ce or compiled_ce", source=source, field=f"{prefix}.compiled_ce",
                              value=True)
        f = self.memory_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ConfigError("must be in (0, 1]", source=source, field=f"{prefix}.memory_fraction", value=f)
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            raise ConfigError("must be a non-negative integer", source=source, field=f"{prefix}.checkpoint_every", value=self.checkpoint_every)
        check_init_std(self.init_std, source=source, field=f"{prefix}.init_std")
        if self.embedding_init not in ("mean", "normal"):
            raise ConfigError("must be 'mean' or 'normal'", source=source, field=f"{prefix}.embedding_init", value=self.embedding_init)
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ConfigError("must be a non-negative integer", source=source, field=f"{prefix}.eval_every", value=self.eval_every)
        if self.schedule not in ("cosine", "wsd"):
            raise ConfigError("must be 'cosine' or 'wsd'", source=source, field=f"{prefix}.schedule", value=self.schedule)
        if not 0 < self.cooldown_frac <= 1:
            raise ConfigError("must be in (0, 1]", source=source, field=f"{prefix}.cooldown_frac", value=self.cooldown_frac)
        if self.precision not in ("amp-bf16", "bf16"):
            raise ConfigError("must be 'amp-bf16' or 'bf16'", source=source, field=f"{prefix}.precision", value=self.precision)
        if self.weight_decay < 0:
            raise ConfigError("must be >= 0", source=source, field=f"{prefix}.weight_decay", value=self.weight_decay)

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.batch_size


@dataclass
class RunSpec:
    arm: str
    model: str
    shape: ModelShape
    tokens: int  # exact training budget in tokens
    streams: dict[str, float]  # stream name -> share of training tokens
    init: str  # "random" or "run:<run_id>" (the model/ folder of that run) or a path to a HF folder
    data_fingerprint: str  # identity of the prepared data (part of the run id)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    budget: float | None = None  # nominal compute budget C of the grid point
    benchmarks: list[str] = field(default_factory=list)
    bench_items: int | None = None  # cap on items per benchmark (None = all)
    cooldowns: list[int] = field(default_factory=list)  # wsd: token budgets of cooldown branches (< tokens)
    # wsd: the nominal compute budget C each cooldown branch was planned for (same order as cooldowns;
    # a label, like budget in the results table, so not part of the id)
    cooldown_budgets: list[float] = field(default_factory=list)
    data_dir: str = ""  # where the prepared data lives on this machine (not part of the id)
    sweep: str = ""  # name of the sweep this run belongs to (not part of the id)

    def validate(self, source: str | None = None) -> None:
        check_name(self.arm, source=source, field="arm")
        check_name(self.model, source=source, field="model")
        if not isinstance(self.tokens, int) or self.tokens <= 0:
            raise ConfigError("must be a positive integer", source=source, field="tokens", value=self.tokens)
        if not self.streams:
            raise ConfigError("at least one stream is needed", source=source, field="streams", value=self.streams)
        for s, w in self.streams.items():
            if s not in STREAMS:
                raise ConfigError(f"unknown stream; known: {STREAMS}", source=source, field="streams", value=s)
            if not w > 0:
                raise ConfigError("stream shares must be positive", source=source, field=f"streams.{s}", value=w)
        self.train.validate(source)
        if self.cooldowns:
            if self.train.schedule != "wsd":
                raise ConfigError("cooldown branches need train.schedule: wsd", source=source, field="cooldowns", value=self.cooldowns)
            if sorted(set(self.cooldowns)) != self.cooldowns or not all(0 < c < self.tokens for c in self.cooldowns):
                raise ConfigError(f"must be increasing token budgets below tokens={self.tokens}", source=source,
                                  field="cooldowns", value=self.cooldowns)
        if self.cooldown_budgets and len(self.cooldown_budgets) != len(self.cooldowns):
            raise ConfigError(f"needs one budget per cooldown branch ({len(self.cooldowns)})", source=source,
                              field="cooldown_budgets", value=self.cooldown_budgets)
        if self.tokens < self.train.tokens_per_step:
            raise ConfigError(
                f"budget of {self.tokens} tokens is smaller than one optimiser step "
                f"({self.train.batch_size} x {self.train.seq_len} = {self.train.tokens_per_step} tokens)",
                source=source, field="tokens", value=self.tokens,
            )

    @property
    def steps(self) -> int:
        return -(-self.tokens // self.train.tokens_per_step)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = self.shape.to_dict()
        d["train"] = asdict(self.train)
        return d

    @property
    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(id_payload(self.to_dict()), sort_keys=True).encode()).hexdigest()[:10]
        budget = f"-C{self.budget:.2g}".replace("+", "") if self.budget else ""
        return f"{self.arm}-{self.model}{budget}-{digest}"

    @classmethod
    def from_dict(cls, d: dict, *, source: str | None = None) -> "RunSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"run_id"})
        if unknown:
            raise ConfigError(f"unknown key(s) {unknown}", source=source, field=unknown[0])
        d = dict(d)
        d.pop("run_id", None)
        d["shape"] = ModelShape.from_dict(d["shape"], source=source)
        tr = d.get("train", {}) or {}
        tknown = {f.name for f in fields(TrainConfig)}
        bad = sorted(set(tr) - tknown)
        if bad:
            raise ConfigError(f"unknown key(s) {bad}", source=source, field=f"train.{bad[0]}")
        d["train"] = TrainConfig(**tr)
        try:
            spec = cls(**d)
        except TypeError as e:
            raise ConfigError(str(e), source=source) from None
        spec.validate(source)
        return spec

    @classmethod
    def load(cls, path: str | Path) -> "RunSpec":
        path = Path(path)
        if not path.is_file():
            raise ConfigError("run spec not found", source=str(path))
        import yaml  # here, not at import: `scaling fit` reaches this module through the results columns

        with open(path, encoding="utf-8") as fh:
            d = yaml.safe_load(fh)
        if not isinstance(d, dict):
            raise ConfigError("a run spec must be a mapping", source=str(path))
        return cls.from_dict(d, source=str(path))

    def dump(self) -> dict:
        return {"run_id": self.run_id, **self.to_dict()}


# -- the run id ------------------------------------------------------------------------------------
# The id hashes the fields that change a run's results and nothing else, so that a knob of how a run
# is executed never orphans a finished run, and a field added later never changes an existing id.
#: Spec fields that change results (shape, data, budget, streams, init, seed, the evaluation recorded).
ID_FIELDS = ("arm", "model", "shape", "tokens", "streams", "init", "data_fingerprint", "train", "seed", "budget",
             "benchmarks", "bench_items", "cooldowns")
#: Training fields that do not change results (how often to save or evaluate, kernels, recompute, how the
#: global batch is split into micro-batches). They are hashed at these frozen values, as every id before
#: this rule hashed them at their defaults, so existing ids stay valid.
OPERATIONAL_TRAIN = {"micro_batch_size": 0, "eval_every": 0, "activation_checkpointing": False, "chunked_ce": False,
                     "compile": False, "checkpoint_every": 0, "keep_checkpoints": False}
#: Operational training fields added after the id rule was frozen: never hashed.
OPERATIONAL_SINCE = ("liger_ce", "compiled_ce", "attention", "bf16_params", "memory_fraction", "liger_kernels")
#: Training fields that existed when the id rule was frozen (2026-11-30); the hash always includes them.
#: A field added since is hashed only when it differs from its default.
FROZEN_TRAIN_FIELDS = ("seq_len", "batch_size", "micro_batch_size", "lr", "min_lr", "warmup_frac", "grad_clip",
                       "weight_decay", "beta1", "beta2", "eval_every", "schedule", "cooldown_frac",
                       "activation_checkpointing", "doc_mask", "chunked_ce", "compile", "checkpoint_every",
                       "keep_checkpoints", "embedding_init", "val_sequences")


def _defaults(cls) -> dict:
    from dataclasses import MISSING

    out = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def id_payload(spec: dict, *, train_defaults: dict | None = None, spec_defaults: dict | None = None) -> dict:
    """What the run id hashes, from a spec's ``to_dict()`` form (defaults: those of TrainConfig and RunSpec)."""
    train_defaults = _defaults(TrainConfig) if train_defaults is None else train_defaults
    spec_defaults = _defaults(RunSpec) if spec_defaults is None else spec_defaults
    train = {}
    for k, v in spec["train"].items():
        if k in OPERATIONAL_SINCE:
            continue
        if k in OPERATIONAL_TRAIN:
            train[k] = OPERATIONAL_TRAIN[k]
        elif k in FROZEN_TRAIN_FIELDS or k not in train_defaults or v != train_defaults[k]:
            train[k] = v
    for k, v in OPERATIONAL_TRAIN.items():
        train.setdefault(k, v)
    out = {k: spec[k] for k in ID_FIELDS if k != "train"}
    out["train"] = train
    for k, v in spec.items():  # result-changing fields added later: hashed when set
        if k not in ID_FIELDS and k not in NOT_HASHED and (k not in spec_defaults or v != spec_defaults[k]):
            out[k] = v
    return out


#: Spec fields that say where or in which sweep a run lives on this machine, never what it computes.
NOT_HASHED = ("data_dir", "sweep", "cooldown_budgets")
