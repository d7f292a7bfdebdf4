"""The run spec: one typed, validated record that fully determines a training run.

``run_id`` is derived from the spec's content (not from paths on this machine), so the
same grid point gets the same id everywhere and a finished run is recognised on rerun.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path


from scaling.datadir import STREAMS
from scaling.errors import ConfigError
from scaling.shapes import ModelShape

TEXT_ARM = "textlm"  # the arm of text-LM pre-training runs (the init of text_lm arms)
# Arm and model names become folder names (runs/<arm>-<model>-...): plain names only.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$")


def check_name(value, *, source: str | None = None, field: str = "name") -> str:
    """``value`` if it is a plain name (letters, digits, '.', '_', '+', '-'; no path separator, no '..').
    The whole string must match: ``re.match`` with ``$`` let a trailing newline through."""
    if not isinstance(value, str) or len(value) > MAX_TEXT or not NAME_RE.fullmatch(value) or ".." in value:
        raise ConfigError(f"must be a plain name of at most {MAX_TEXT} characters (letters, digits, '.', '_', '+', '-'; "
                          "no '/', no '..')", source=source, field=field, value=value)
    return value


#: The longest name or text value a config may give (a path, a partition name, a URL).
MAX_TEXT = 1024


def check_text(value, *, source: str | None = None, field: str) -> str:
    """The one rule for every string that reaches a path, a script or a command line (a sweep's folders,
    SLURM partition/account/qos/constraint, a storage URL): a non-empty string of printable characters, no
    control character (newline, carriage return, tab, NUL, escape...), at most :data:`MAX_TEXT` characters.
    A newline is what turned a partition name into a second line of an sbatch script; quotes, ``$()`` and
    backticks are allowed here and quoted wherever the text is written into a script (sweeps/slurm.py)."""
    if not isinstance(value, str) or not value:
        raise ConfigError("must be a non-empty string", source=source, field=field, value=value)
    if len(value) > MAX_TEXT:
        raise ConfigError(f"is longer than {MAX_TEXT} characters", source=source, field=field, value=value[:80] + "...")
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        raise ConfigError(f"holds a control character ({bad!r}): names, paths and cluster settings must be printable "
                          "text on one line", source=source, field=field, value=value)
    return value


# -- numbers ---------------------------------------------------------------------------------------
#: The most tokens one run may train on: 10^14 (100 trillion). The largest language-model pre-training runs
#: reported so far used a few tens of trillions of tokens; a speech LM of this framework's sizes at the
#: throughput of a large cluster (~10^7 tokens/s) would need about a year for 10^14, a CPU run millennia.
#: A budget beyond it (a typo, 1e300) is a run that never finishes, and never reports either (its progress
#: and checkpoints come at fractions of the run), so it is refused when the sweep is planned.
MAX_TOKENS = 10**14
#: Seeds are 32-bit unsigned: numpy's legacy seeding (np.random.seed, the training loop) takes no more.
MAX_SEED = 2**32 - 1
#: The largest learning rate: an AdamW update moves each weight by about lr, so above 10 nothing trains;
#: it is a bound against typos (3e3 for 3e-3), not advice.
MAX_LR = 10.0
#: Sequence length, sequences per step and validation sequences (orders of magnitude beyond any use here).
MAX_SEQ_LEN = 2**20
MAX_BATCH = 2**24


def shown(value):
    """``value`` as an error message shows it: an integer too long to read as digits is shortened."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**21:
        digits = len(str(abs(value)))
        return f"{'-' if value < 0 else ''}{str(abs(value))[:4]}... ({digits} digits)"
    return value


def check_real(value, *, source: str | None = None, field: str, low: float | None = None, high: float | None = None,
               low_open: bool = True, high_open: bool = False) -> float:
    """``value`` as a float if it is a finite number (an int or a float, never a bool or a string) within
    the bounds: (low, high] by default, ``low_open``/``high_open`` saying whether each end is excluded.
    Ints too large for a float (10**400) are refused as not finite, not an OverflowError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError("must be a number", source=source, field=field, value=value)
    try:
        x = float(value)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        raise ConfigError("must be a finite number", source=source, field=field, value=shown(value))
    below = low is not None and (x <= low if low_open else x < low)
    above = high is not None and (x >= high if high_open else x > high)
    if below or above:
        lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
        hi = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
        raise ConfigError(f"must be in {lo}, {hi}", source=source, field=field, value=shown(value))
    return x


def check_int(value, *, source: str | None = None, field: str, low: int = 1, high: int | None = None) -> int:
    """``value`` if it is an integer (never a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        kind = {1: "a positive integer", 0: "a non-negative integer"}.get(low, f"an integer of at least {low}")
        raise ConfigError(f"must be {kind}" + (f" of at most {high:,}" if high is not None else ""), source=source,
                          field=field, value=shown(value))
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
        """Every field's type and range; every float finite (a spec.yaml is read without the sweep schema)."""
        f_ = f"{prefix}."
        check_int(self.seq_len, source=source, field=f_ + "seq_len", high=MAX_SEQ_LEN)
        check_int(self.batch_size, source=source, field=f_ + "batch_size", high=MAX_BATCH)
        check_int(self.val_sequences, source=source, field=f_ + "val_sequences", high=MAX_BATCH)
        for name in ("lr", "min_lr"):
            check_real(getattr(self, name), source=source, field=f_ + name, low=0, high=MAX_LR)
        check_real(self.grad_clip, source=source, field=f_ + "grad_clip", low=0)
        if self.min_lr > self.lr:
            raise ConfigError(f"must not exceed lr ({self.lr})", source=source, field=f"{prefix}.min_lr", value=self.min_lr)
        check_real(self.warmup_frac, source=source, field=f_ + "warmup_frac", low=0, low_open=False, high=1, high_open=True)
        for name in ("beta1", "beta2"):
            check_real(getattr(self, name), source=source, field=f_ + name, low=0, low_open=False, high=1, high_open=True)
        check_real(self.weight_decay, source=source, field=f_ + "weight_decay", low=0, low_open=False)
        check_real(self.cooldown_frac, source=source, field=f_ + "cooldown_frac", low=0, high=1)
        if self.warmup_basis not in ("run", "shortest"):
            raise ConfigError("must be 'run' or 'shortest'", source=source, field=f"{prefix}.warmup_basis", value=self.warmup_basis)
        mb = self.micro_batch_size
        if mb != "auto" and (not isinstance(mb, int) or isinstance(mb, bool) or mb < 0 or (mb and self.batch_size % mb)):
            raise ConfigError(f"must be an integer >= 0 dividing batch_size ({self.batch_size}; 0: the whole batch in one "
                              "pass) or 'auto'",
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
        check_real(self.memory_fraction, source=source, field=f_ + "memory_fraction", low=0, high=1)
        check_int(self.checkpoint_every, source=source, field=f_ + "checkpoint_every", low=0)
        check_init_std(self.init_std, source=source, field=f"{prefix}.init_std")
        if self.embedding_init not in ("mean", "normal"):
            raise ConfigError("must be 'mean' or 'normal'", source=source, field=f"{prefix}.embedding_init", value=self.embedding_init)
        check_int(self.eval_every, source=source, field=f_ + "eval_every", low=0)
        if self.schedule not in ("cosine", "wsd"):
            raise ConfigError("must be 'cosine' or 'wsd'", source=source, field=f"{prefix}.schedule", value=self.schedule)
        if self.precision not in ("amp-bf16", "bf16"):
            raise ConfigError("must be 'amp-bf16' or 'bf16'", source=source, field=f"{prefix}.precision", value=self.precision)

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
        if not isinstance(self.tokens, int) or isinstance(self.tokens, bool) or self.tokens <= 0:
            raise ConfigError("must be a positive integer", source=source, field="tokens", value=self.tokens)
        if self.budget is not None:
            check_real(self.budget, source=source, field="budget", low=0)
        if self.tokens > MAX_TOKENS:
            at = f" at budget {self.budget:.3g} FLOPs" if self.budget else ""
            raise ConfigError(f"run {self.arm}/{self.model}{at} would train on {self.tokens:.3g} tokens, more than the "
                              f"{MAX_TOKENS:.0e} a run may have (it would never finish)", source=source, field="tokens",
                              value=shown(self.tokens))
        check_int(self.seed, source=source, field="seed", low=0, high=MAX_SEED)
        if not isinstance(self.streams, dict) or not self.streams:
            raise ConfigError("at least one stream is needed", source=source, field="streams", value=self.streams)
        for s, w in self.streams.items():
            if s not in STREAMS:
                raise ConfigError(f"unknown stream; known: {STREAMS}", source=source, field="streams", value=s)
            check_real(w, source=source, field=f"streams.{s}", low=0)
        for name in ("init", "data_fingerprint"):
            check_text(getattr(self, name), source=source, field=name)
        for name in ("data_dir", "sweep"):  # may be empty
            if getattr(self, name):
                check_text(getattr(self, name), source=source, field=name)
        if self.bench_items is not None:
            check_int(self.bench_items, source=source, field="bench_items")
        if not isinstance(self.benchmarks, list) or not all(isinstance(b, str) for b in self.benchmarks):
            raise ConfigError("must be a list of benchmark names", source=source, field="benchmarks", value=self.benchmarks)
        self.train.validate(source)
        if not isinstance(self.cooldowns, list) or not isinstance(self.cooldown_budgets, list):
            raise ConfigError("must be lists", source=source, field="cooldowns", value=self.cooldowns)
        if self.cooldowns:
            if self.train.schedule != "wsd":
                raise ConfigError("cooldown branches need train.schedule: wsd", source=source, field="cooldowns", value=self.cooldowns)
            if (not all(isinstance(c, int) and not isinstance(c, bool) for c in self.cooldowns)
                    or sorted(set(self.cooldowns)) != self.cooldowns or not all(0 < c < self.tokens for c in self.cooldowns)):
                raise ConfigError(f"must be increasing token budgets below tokens={self.tokens}", source=source,
                                  field="cooldowns", value=self.cooldowns)
        if self.cooldown_budgets and len(self.cooldown_budgets) != len(self.cooldowns):
            raise ConfigError(f"needs one budget per cooldown branch ({len(self.cooldowns)})", source=source,
                              field="cooldown_budgets", value=self.cooldown_budgets)
        for i, c in enumerate(self.cooldown_budgets):
            check_real(c, source=source, field=f"cooldown_budgets[{i}]", low=0)
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
        missing = [f.name for f in fields(cls) if f.name not in d and f.default is MISSING
                   and f.default_factory is MISSING]
        if missing:
            raise ConfigError("is required", source=source, field=missing[0])
        if not isinstance(d["shape"], dict):
            raise ConfigError("must be a mapping", source=source, field="shape", value=d["shape"])
        d["shape"] = ModelShape.from_dict(d["shape"], source=source)
        tr = d.get("train", {}) or {}
        if not isinstance(tr, dict):
            raise ConfigError("must be a mapping", source=source, field="train", value=tr)
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
        from scaling import yamlio  # imports yaml when called: `scaling fit` reaches this module and starts without it

        path = Path(path)
        if not path.is_file():
            raise ConfigError("run spec not found", source=str(path))
        d = yamlio.load(path, what="run spec")
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
