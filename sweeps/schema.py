"""Sweep files: a YAML description of a compute-budget grid, validated before anything runs."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from scaling import yamlio
from scaling.datadir import (BENCHMARKS, MANIFEST, MIX_STREAMS, N_UNITS, PAIR_BENCHMARKS, STREAMS, check_benchmarks,
                             check_n_units)
from scaling.errors import ConfigError
from scaling.initref import InitRef
from scaling.shapes import KNOWN, ModelShape
from scaling.spec import (MAX_BATCH, MAX_LR, MAX_SEED, MAX_TOKENS, TEXT_ARM, TrainConfig, check_int, check_name,
                          check_real, check_text, shown)

# Arms are data: any number of named arms, each with its init, streams (shares) and data folder.
# These two names come with defaults (SIMS's main comparison); any other arm spells its own.
PRESET_ARMS = ("interleaved", "textless")
DEFAULT_STREAMS = {"interleaved": {s: 1.0 for s in MIX_STREAMS}, "textless": {"speech": 1.0}}
DEFAULT_INIT = {"interleaved": "text_lm", "textless": "random"}
ARM_KEYS = ("init", "streams", "data", "family", "models", "tokenizer")
FAMILIES = ("qwen2", "llama")
# What a family changes in a shape (biases and tied embeddings as the published models have them).
FAMILY_SHAPE = {"qwen2": dict(family="qwen2", qkv_bias=True), "llama": dict(family="llama", qkv_bias=False)}


@dataclass
class TextPretrain:
    tokens: int = 300_000
    lr: float | None = None  # default: the sweep's train.lr
    min_lr: float | None = None


@dataclass
class EvalConfig:
    benchmarks: list[str] = field(default_factory=lambda: list(PAIR_BENCHMARKS))  # what runs evaluate while training
    max_items: int | None = None


@dataclass
class Constraints:
    min_steps: int = 1
    min_tokens_per_param: float | None = None
    max_tokens_per_param: float | None = None
    max_params: float | None = None  # runs of larger models are dropped from the grid


@dataclass
class Hyperparameters:
    """Per-size overrides of train.lr / train.batch_size: given inline, or read from a tuning study."""
    lr: dict[str, float] = field(default_factory=dict)
    batch_size: dict[str, int] = field(default_factory=dict)
    from_study: str | None = None  # tuned.yaml written by `scaling tune` (relative to the sweep file)


@dataclass
class Tuning:
    """`scaling tune`: an optuna study per model size at a small token budget."""
    tokens: int = 65_536
    arm: str = "textless"
    lr_min: float = 1e-4
    lr_max: float = 3e-2
    batch_sizes: list[int] = field(default_factory=list)  # empty: batch size is not tuned
    trials: int = 8
    storage: str | None = None  # any optuna RDB URL; default sqlite:///<sweep dir>/tuning.db
    output: str = "tuned.yaml"


@dataclass
class Resources:
    """What one run's cluster job asks for (`scaling run --launcher slurm`): one task per node, each
    starting torchrun with one process per GPU (one process on a CPU node)."""
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    time_min: int = 24 * 60
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None


# Text tokenizers whose size is known without local data: (entries, name).
TOKENIZERS = {"qwen2.5": 151665, "llama-3.2": 128256}


@dataclass
class Sweep:
    path: Path
    name: str
    data: Path | None
    output: Path
    models: list[str]
    budgets: list[float]
    arms: list[str]
    grid: str = "isoflop"
    shapes: dict[str, ModelShape] = field(default_factory=dict)  # name -> shape (vocab_size = checkpoint rows)
    tokenizer: str = "data"  # data | qwen2.5 | llama-3.2 | units | vocab:<N>
    units: int = N_UNITS  # the speech unit inventory when planning without data (a data folder's is in data.json)
    tokens_per_param: list[float] = field(default_factory=list)  # grid: tokens_per_param
    explicit: list[dict] = field(default_factory=list)  # grid: explicit, [{model, tokens | budget}]
    init_paths: dict[str, dict[str, str]] = field(default_factory=dict)  # arm -> model -> checkpoint
    arm_data: dict[str, Path] = field(default_factory=dict)  # arm -> its own data folder (else `data`)
    family: dict[str, str] = field(default_factory=dict)  # arm -> model family of its shapes (and text LM)
    arm_models: dict[str, list[str]] = field(default_factory=dict)  # arm -> the models it runs (else all)
    arm_tokenizer: dict[str, str] = field(default_factory=dict)  # arm -> its tokenizer when planning without data
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    tuning: Tuning = field(default_factory=Tuning)
    seed: int = 0
    replicates: dict[str, int] = field(default_factory=dict)  # model -> runs per grid point (else 1)
    streams: dict[str, dict[str, float]] = field(default_factory=dict)
    init: dict[str, str] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    text_pretrain: TextPretrain = field(default_factory=TextPretrain)
    eval: EvalConfig = field(default_factory=EvalConfig)
    constraints: Constraints = field(default_factory=Constraints)
    resources: dict[str, Resources] = field(default_factory=lambda: {"default": Resources()})

    def resources_for(self, model: str) -> Resources:
        """The model's job resources: its own entry, else ``default``."""
        return self.resources.get(model, self.resources["default"])

    def data_of(self, arm: str) -> Path | None:
        return self.arm_data.get(arm, self.data)

    def tokenizer_of(self, arm: str | None) -> str:
        return self.arm_tokenizer.get(arm, self.tokenizer) if arm else self.tokenizer

    def models_of(self, arm: str) -> list[str]:
        return self.arm_models.get(arm, self.models)

    def seeds_of(self, model: str) -> list[int]:
        """The seeds of ``model``'s runs: ``seed``, ``seed + 1``, ... one per replicate."""
        return [self.seed + r for r in range(self.replicates.get(model, 1))]

    @property
    def runs_dir(self) -> Path:
        return self.output / "runs"

    @property
    def results_csv(self) -> Path:
        return self.output / "results.csv"


TOP_KEYS = {"name", "data", "output", "models", "budgets", "arms", "grid", "seed", "replicates", "streams", "init", "train",
            "text_pretrain", "eval", "constraints", "tokenizer", "vocab", "units", "tokens_per_param", "runs",
            "hyperparameters", "tuning", "resources"}
GRIDS = ("isoflop", "tokens_per_param", "explicit")
SHAPE_KEYS = {"name", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size",
              "tie_embeddings", "qkv_bias", "family", "head_dim"}


_YAML_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
_SCALARS = {"int": int, "float": float, "bool": bool, "str": str}


def _typed(value, hint: str, src: str, where: str):
    """``value`` checked against a dataclass field's annotation (int, float, bool, str, list[...],
    dict[...], optionally ``| None``); ints are accepted for floats. Never a traceback later."""
    options = [h.strip() for h in hint.split("|")]
    if value is None:
        if "None" in options:
            return None
        raise ConfigError("must be given (it may not be empty)", source=src, field=where, value=value)
    bases = [h for h in options if h != "None"]
    if len(bases) > 1:  # a union such as float | str: the first type the value is
        if isinstance(value, str) and "str" in bases and not _YAML_FLOAT.match(value.strip()):
            return _typed(value, "str", src, where)  # its own error (a control character) if it fails
        for b in bases:
            try:
                return _typed(value, b, src, where)
            except ConfigError:
                continue
        raise ConfigError(f"must be {' or '.join(bases)}, not a {type(value).__name__}", source=src, field=where,
                          value=value)
    base = bases[0]
    if base.startswith("list["):
        if not isinstance(value, list):
            raise ConfigError(f"must be a list ({base})", source=src, field=where, value=value)
        item = base[5:-1]
        return [_typed(v, item, src, f"{where}[{i}]") for i, v in enumerate(value)]
    if base.startswith("dict["):
        if not isinstance(value, dict):
            raise ConfigError("must be a mapping", source=src, field=where, value=value)
        return value
    want = _SCALARS[base]
    if want is float and isinstance(value, str) and _YAML_FLOAT.match(value.strip()):
        value = float(value)  # a quoted exponent ("1e-3"); "1e400" becomes inf here and is refused below
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:  # an integer beyond any float (10**400)
            raise ConfigError("must be finite", source=src, field=where, value=shown(value)) from None
    if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
        raise ConfigError(f"must be {'a number' if want is float else 'an integer' if want is int else f'a {base}'},"
                          f" not a {type(value).__name__}", source=src, field=where, value=value)
    if want is float and not math.isfinite(value):
        raise ConfigError("must be finite", source=src, field=where, value=value)
    if want is str:
        check_text(value, source=src, field=where)  # printable, one line: it may reach a path or a script
    return value


def _sub(cls, raw, src: str, prefix: str):
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping", source=src, field=prefix, value=raw)
    hints = {f.name: f.type for f in fields(cls)}
    for k in raw:
        if k not in hints:
            raise ConfigError(f"unknown key; known: {sorted(hints)}", source=src, field=f"{prefix}.{k}")
    return cls(**{k: _typed(v, hints[k], src, f"{prefix}.{k}") for k, v in raw.items()})


def _number(v, src, fieldname) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ConfigError("must be a number", source=src, field=fieldname, value=v)
    try:
        x = float(v)
    except ValueError:
        raise ConfigError("must be a number", source=src, field=fieldname, value=v) from None
    except OverflowError:  # an integer beyond any float (10**400)
        x = math.inf
    if not math.isfinite(x):
        raise ConfigError("must be finite", source=src, field=fieldname, value=shown(v))
    return x


def _init_path(value, base: Path, src: str, field: str) -> str:
    """A checkpoint given in a sweep: a hub id stays a hub id; a local folder resolves against the sweep file."""
    from scaling.initref import InitRef

    text = check_text(value, source=src, field=field)
    if not Path(text).is_absolute() and (base / text).exists():
        return str(base / text)
    ref = InitRef.parse(text, source=src, field=field)
    if ref.kind == "local" and not Path(text).is_absolute():
        return str(base / text)
    return text


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise ConfigError("sweep file not found", source=src)
    raw = yamlio.load(path, what="sweep file")  # UTF-8, no duplicate keys, no alias bomb, errors with a line
    if not isinstance(raw, dict):
        raise ConfigError("a sweep file must be a mapping", source=src)
    for k in raw:
        if k not in TOP_KEYS:
            raise ConfigError(f"unknown key; known: {sorted(TOP_KEYS)}", source=src, field=str(k))
    # the name goes into job names, study names and run records: a plain name, never a list or a path
    if "name" in raw:
        name = check_name(raw["name"], source=src, field="name")
    else:
        name = check_name(path.stem, source=src, field="name (the sweep file's name without .yaml, as no 'name' is given)")
    for k in ("models", "arms"):
        if k not in raw:
            raise ConfigError("is required", source=src, field=k)
    grid = raw.get("grid", "isoflop")
    if grid not in GRIDS:
        raise ConfigError(f"unknown grid kind; supported: {', '.join(GRIDS)}", source=src, field="grid", value=grid)

    names, shapes = _models(raw["models"], src)

    budgets: list[float] = []
    if grid == "isoflop" or raw.get("budgets") is not None:
        if raw.get("budgets") is None:
            raise ConfigError("is required for an isoflop grid", source=src, field="budgets")
        budgets = _budgets(raw["budgets"], src)
    tpp: list[float] = []
    if grid == "tokens_per_param":
        tpp = _increasing(raw.get("tokens_per_param"), src, "tokens_per_param")
    elif "tokens_per_param" in raw:
        raise ConfigError("only applies to grid: tokens_per_param", source=src, field="tokens_per_param")
    explicit: list[dict] = []
    if grid == "explicit":
        explicit = _explicit(raw.get("runs"), names, src)
    elif "runs" in raw:
        raise ConfigError("only applies to grid: explicit", source=src, field="runs")

    tokenizer = _tokenizer(raw, src)
    units = check_n_units(raw["units"], source=src, field="units") if raw.get("units") is not None else N_UNITS
    arms, streams, init, init_paths, arm_data, family, arm_models, arm_tok = _arms(raw, names, path.parent, src)
    for a in arms:
        if arm_tok.get(a, tokenizer) == "units" and (init[a] != "random" or set(streams[a]) - {"speech"}):
            raise ConfigError("tokenizer 'units' has no text vocabulary: only speech-only, randomly initialised "
                              "arms can use it", source=src, field="arms", value=a)

    train = _sub(TrainConfig, raw.get("train"), src, "train")
    train.validate(src)
    tp = _sub(TextPretrain, raw.get("text_pretrain"), src, "text_pretrain")
    if any(v == "text_lm" for v in init.values()) and (not isinstance(tp.tokens, int) or tp.tokens < train.tokens_per_step):
        raise ConfigError(f"must be an integer of at least one step ({train.tokens_per_step} tokens)",
                          source=src, field="text_pretrain.tokens", value=tp.tokens)
    check_int(tp.tokens, source=src, field="text_pretrain.tokens", high=MAX_TOKENS)
    for k in ("lr", "min_lr"):
        if getattr(tp, k) is not None:
            check_real(getattr(tp, k), source=src, field=f"text_pretrain.{k}", low=0, high=MAX_LR)
    ev = _eval(raw.get("eval"), src)
    cons = _sub(Constraints, raw.get("constraints"), src, "constraints")
    for k in ("min_tokens_per_param", "max_tokens_per_param", "max_params"):
        v = getattr(cons, k)
        if v is not None and _number(v, src, f"constraints.{k}") <= 0:
            raise ConfigError("must be positive", source=src, field=f"constraints.{k}", value=v)
        if v is not None:
            setattr(cons, k, float(v))
    if not isinstance(cons.min_steps, int) or cons.min_steps < 1:
        raise ConfigError("must be a positive integer", source=src, field="constraints.min_steps", value=cons.min_steps)
    hp = _hyperparameters(raw.get("hyperparameters"), names, path.parent, src)
    tuning = _sub(Tuning, raw.get("tuning"), src, "tuning")
    if raw.get("tuning") is not None:
        _check_tuning(tuning, train, src, arms)
    seed = check_int(raw.get("seed", 0), source=src, field="seed", low=0, high=MAX_SEED)
    replicates = _replicates(raw.get("replicates"), names, seed, src)

    base = path.parent
    data = None
    if raw.get("data") is not None:
        data = _data_dir(raw["data"], base, src, "data")
        if tokenizer != "data" or raw.get("units") is not None:
            raise ConfigError("the vocabulary of a sweep with data is the prepared tokenizer's; 'tokenizer'/'vocab'/'units' "
                              "are for planning without data", source=src,
                              field="units" if tokenizer == "data" else "tokenizer" if raw.get("tokenizer") is not None else "vocab")
    # An arm that plans with data needs a prepared folder (its own or the sweep's); one that plans with a
    # named tokenizer may name a data folder that is not prepared yet (`scaling run` will need it).
    for a in arms:
        tok = arm_tok.get(a, tokenizer)
        if a in arm_data and tok == "data" and not (arm_data[a] / MANIFEST).is_file():
            raise ConfigError(f"no prepared data at {arm_data[a]} (run `scaling data synth --out {arm_data[a]}`)",
                              source=src, field=f"arms.{a}.data", value=str(arm_data[a]))
        if tok == "data" and a not in arm_data and data is None:
            raise ConfigError("is required unless the vocabulary is given by 'tokenizer' (qwen2.5, llama-3.2, units) "
                              "or 'vocab', or every arm has its own data folder", source=src, field="data")
    output = check_text(raw.get("output", "."), source=src, field="output")
    sweep = Sweep(
        path=path, name=name, data=data, output=(base / output).resolve(),
        models=names, budgets=budgets, arms=list(arms), grid=grid, seed=seed, replicates=replicates, streams=streams, init=init,
        train=train, text_pretrain=tp, eval=ev, constraints=cons, shapes=shapes, tokenizer=tokenizer, units=units,
        tokens_per_param=tpp, explicit=explicit, init_paths=init_paths, hyperparameters=hp, tuning=tuning, arm_data=arm_data, family=family, arm_models=arm_models, arm_tokenizer=arm_tok,
    )
    sweep.resources = _resources(raw.get("resources"), names, src)
    check_benchmark_files(sweep)
    return sweep


#: Bounds of a job's integer resources: far beyond any cluster's node, yet a typo (an extra 0s) is caught
#: here and not as an sbatch error or a job that never schedules. time_min: SLURM's longest finite limit
#: is a year (525,600 minutes).
RESOURCE_INTS = (("nodes", 1, 100_000), ("gpus_per_node", 0, 1_024), ("cpus_per_task", 0, 100_000),
                 ("time_min", 1, 525_600))
MAX_MEM_GB = 1_000_000  # a petabyte per node


#: The most replicates of one grid point a sweep may ask for (each is a whole run)
MAX_REPLICATES = 100


def _replicates(raw, names: list[str], seed: int, src) -> dict[str, int]:
    """``replicates``: a count for every model, or ``{default: k, <model>: k, ...}``; model -> count (> 1 only)."""
    if raw is None:
        return {}
    if isinstance(raw, bool) or not isinstance(raw, (int, dict)):
        raise ConfigError("must be a whole number of runs per grid point, or a mapping of model names (and "
                          "'default') to one", source=src, field="replicates", value=raw)
    table = {"default": raw} if isinstance(raw, int) else dict(raw)
    unknown = [k for k in table if k != "default" and k not in names]
    if unknown:
        raise ConfigError(f"names no model of the sweep (models: {', '.join(names)})", source=src,
                          field=f"replicates.{unknown[0]}", value=unknown[0])
    out = {}
    for k, v in table.items():
        where = "replicates" if isinstance(raw, int) else f"replicates.{k}"
        check_int(v, source=src, field=where, low=1, high=MAX_REPLICATES)
    for m in names:
        k = int(table.get(m, table.get("default", 1)))
        if k > 1:
            out[m] = k
    if out and seed + max(out.values()) - 1 > MAX_SEED:
        raise ConfigError(f"seed + replicates - 1 must be at most {MAX_SEED}", source=src, field="replicates",
                          value=max(out.values()))
    return out


def _resources(raw, names, src) -> dict[str, Resources]:
    """``resources: {default: {...}, <model>: {...}}``; a model's entry overrides the default's keys."""
    if raw is None:
        return {"default": Resources()}
    if not isinstance(raw, dict):
        raise ConfigError("must map 'default' or model names to job resources", source=src, field="resources", value=raw)
    for k in raw:
        if k != "default" and k not in names:
            raise ConfigError("names a model that is not in 'models' (or use 'default')", source=src, field=f"resources.{k}")
    default = raw.get("default") or {}
    out = {}
    for k in ["default", *[m for m in raw if m != "default"]]:
        body = raw.get(k) or {}
        if not isinstance(body, dict):
            raise ConfigError("must be a mapping", source=src, field=f"resources.{k}", value=body)
        merged = {**default, **body} if k != "default" else dict(default)
        r = _sub(Resources, merged, src, f"resources.{k}")  # strings: printable, one line (check_text)
        for f, low, high in RESOURCE_INTS:
            if getattr(r, f) is not None:
                check_int(getattr(r, f), source=src, field=f"resources.{k}.{f}", low=low, high=high)
        if r.mem_gb is not None:
            check_real(r.mem_gb, source=src, field=f"resources.{k}.mem_gb", low=0, low_open=False, high=MAX_MEM_GB)
        out[k] = r
    return out


def _eval(raw, src) -> EvalConfig:
    if isinstance(raw, dict) and "benchmarks" in raw:  # a string or unknown name is refused before anything trains
        check_benchmarks(raw["benchmarks"], source=src, field="eval.benchmarks")
        for b in raw["benchmarks"]:
            if BENCHMARKS[b].kind != "pairs":  # runs evaluate pair benchmarks while they train
                raise ConfigError(f"'{b}' is a {BENCHMARKS[b].kind} metric: runs evaluate pair benchmarks while they "
                                  f"train ({list(PAIR_BENCHMARKS)}); score it afterwards with `scaling eval`",
                                  source=src, field="eval.benchmarks", value=b)
    ev = _sub(EvalConfig, raw, src, "eval")
    if ev.max_items is not None:
        check_int(ev.max_items, source=src, field="eval.max_items")
    return ev


def check_benchmark_files(sweep: "Sweep") -> None:
    """Every pairwise benchmark of the sweep has its pair file in every data folder an arm reads."""
    for arm in sweep.arms:
        data = sweep.data_of(arm)
        if data is None or sweep.tokenizer_of(arm) != "data":  # planned without data: checked when it runs
            continue
        for b in sweep.eval.benchmarks:
            if BENCHMARKS[b].kind == "pairs" and not (data / BENCHMARKS[b].file).is_file():
                raise ConfigError(f"the data folder {data} has no {BENCHMARKS[b].file} for arm '{arm}'",
                                  source=str(sweep.path), field="eval.benchmarks", value=b)


def _arms(raw, names: list[str], base: Path, src):
    """Named arms: a list of names (``interleaved`` and ``textless`` have defaults) or a mapping
    name -> {init, streams, data, family, models, tokenizer}; the older top-level ``streams:``/``init:``
    tables (arm -> value) still apply on top. Returns per-arm tables
    (names, streams, init, init_paths, data, family, models, tokenizer)."""
    arms = raw["arms"]
    if isinstance(arms, list):
        if not arms:
            raise ConfigError("must be a non-empty list or mapping of arms", source=src, field="arms", value=arms)
        for i, a in enumerate(arms):
            if not isinstance(a, str):
                raise ConfigError("must be an arm name", source=src, field=f"arms[{i}]", value=a)
        if len(set(arms)) != len(arms):
            raise ConfigError("lists an arm twice", source=src, field="arms", value=arms)
        table = {a: None for a in arms}
    elif isinstance(arms, dict) and arms:
        table = arms
    else:
        raise ConfigError("must be a non-empty list or mapping of arms", source=src, field="arms", value=arms)
    streams, init, init_paths, data, family, models, toks = {}, {}, {}, {}, {}, {}, {}
    for a, body in table.items():
        where = f"arms.{a}" if isinstance(arms, dict) else f"arms[{list(table).index(a)}]"
        check_name(a, source=src, field=where)
        if a == TEXT_ARM:
            raise ConfigError(f"'{TEXT_ARM}' is reserved for the text-LM pre-training runs", source=src, field=where, value=a)
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise ConfigError(f"must be a mapping with keys {', '.join(ARM_KEYS)}", source=src, field=where, value=body)
        for k in body:
            if k not in ARM_KEYS:
                raise ConfigError(f"unknown arm key; known: {', '.join(ARM_KEYS)}", source=src, field=f"{where}.{k}")
        if a not in PRESET_ARMS:
            for k in ("init", "streams"):
                if k not in body and a not in (raw.get(k) or {}):
                    raise ConfigError(f"is required for arm '{a}' (only {', '.join(PRESET_ARMS)} have defaults)",
                                      source=src, field=f"{where}.{k}")
        if body.get("models") is not None:
            ms = body["models"]
            if not isinstance(ms, list) or not ms or any(m not in names for m in ms):
                raise ConfigError(f"must be a non-empty list of the sweep's models ({', '.join(names)})", source=src,
                                  field=f"{where}.models", value=ms)
            models[a] = [m for m in names if m in ms]
        streams[a] = _streams(body["streams"], src, f"{where}.streams") if "streams" in body else dict(DEFAULT_STREAMS.get(a, {}))
        if body.get("init", DEFAULT_INIT.get(a)) is not None:  # else the top-level init table gives it
            init[a], paths = _init(body.get("init", DEFAULT_INIT.get(a)), models.get(a, names), base, src, f"{where}.init")
            if paths:
                init_paths[a] = paths
        if body.get("data") is not None:
            if not isinstance(body["data"], str) or not body["data"]:
                raise ConfigError("must be a folder path", source=src, field=f"{where}.data", value=body["data"])
            check_text(body["data"], source=src, field=f"{where}.data")
            data[a] = (base / body["data"]).resolve()  # prepared or not: load_sweep checks it against the tokenizer
        if body.get("tokenizer") is not None:
            toks[a] = _tokenizer({"tokenizer": body["tokenizer"]}, src, field=f"{where}.tokenizer")
        if body.get("family") is not None:
            if body["family"] not in FAMILIES:
                raise ConfigError(f"unknown model family; known: {', '.join(FAMILIES)}", source=src,
                                  field=f"{where}.family", value=body["family"])
            family[a] = body["family"]
    for k in ("streams", "init"):
        extra = raw.get(k)
        if extra is not None and not isinstance(extra, dict):
            raise ConfigError("must map arm names to values", source=src, field=k, value=extra)
    for a, mix in (raw.get("streams") or {}).items():
        if a not in table:
            raise ConfigError("names an arm that is not in 'arms'", source=src, field=f"streams.{a}")
        streams[a] = _streams(mix, src, f"streams.{a}")
    for a, v in (raw.get("init") or {}).items():
        if a not in table:
            raise ConfigError("names an arm that is not in 'arms'", source=src, field=f"init.{a}")
        init[a], paths = _init(v, models.get(a, names), base, src, f"init.{a}")
        init_paths.pop(a, None)
        if paths:
            init_paths[a] = paths
    return list(table), streams, init, init_paths, data, family, models, toks


def _streams(mix, src, where) -> dict[str, float]:
    if not isinstance(mix, dict) or not mix:
        raise ConfigError("must map stream names to shares", source=src, field=where, value=mix)
    for s_, w in mix.items():
        if s_ not in MIX_STREAMS:
            raise ConfigError(f"unknown stream; known: {', '.join(MIX_STREAMS)}", source=src, field=f"{where}.{s_}",
                              value=s_)
        if _number(w, src, f"{where}.{s_}") <= 0:
            raise ConfigError("share must be positive", source=src, field=f"{where}.{s_}", value=w)
    return {s_: float(w) for s_, w in mix.items()}


def _init(v, names, base: Path, src, where) -> tuple[str, dict[str, str]]:
    """'text_lm' (a text LM pre-trained per size in the sweep), 'random', or a mapping model -> checkpoint
    (a local Hugging Face folder or a hub id: a published text LM, e.g. a family's ladder)."""
    if isinstance(v, dict):
        for m in names:
            if m not in v:
                raise ConfigError(f"gives no checkpoint for model '{m}'", source=src, field=where)
        paths = {}
        for m, p in v.items():
            if m not in names:
                raise ConfigError("names a model that is not in 'models'", source=src, field=f"{where}.{m}")
            ref = InitRef.parse(p, source=src, field=f"{where}.{m}")
            if ref.kind not in ("local", "hub"):
                raise ConfigError("must be a local model folder or a hub id", source=src, field=f"{where}.{m}", value=p)
            paths[m] = _init_path(p, base, src, f"{where}.{m}")  # a local folder resolves against the sweep file
        return "checkpoint", paths
    if v not in ("text_lm", "random"):
        raise ConfigError("must be 'text_lm', 'random' or a mapping model -> checkpoint", source=src, field=where, value=v)
    return v, {}


def _data_dir(value, base: Path, src, where) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError("must be a folder path", source=src, field=where, value=value)
    check_text(value, source=src, field=where)
    data = (base / value).resolve()
    if not (data / MANIFEST).is_file():
        raise ConfigError(f"no prepared data at {data} (run `scaling data synth --out {data}`)", source=src,
                          field=where, value=value)
    return data


def _models(models, src) -> tuple[list[str], dict[str, ModelShape]]:
    """Names from scaling/shapes.py, or inline shapes {name, hidden_size, num_layers, ...}; fields left
    out follow the width/depth rule: 64-wide heads, no GQA, SwiGLU width 8/3 d rounded up to 64."""
    if not isinstance(models, list) or not models:
        raise ConfigError("must be a non-empty list of model names or shapes", source=src, field="models", value=models)
    names, shapes = [], {}
    for i, m in enumerate(models):
        where = f"models[{i}]"
        if isinstance(m, str):
            if m not in KNOWN:
                raise ConfigError(f"unknown model; known: {', '.join(KNOWN)} (or give a shape inline)", source=src,
                                  field=where, value=m)
            names.append(m)
            shapes[m] = KNOWN[m]
            continue
        if not isinstance(m, dict):
            raise ConfigError("must be a model name or a mapping", source=src, field=where, value=m)
        for k in m:
            if k not in SHAPE_KEYS:
                raise ConfigError(f"unknown shape key; known: {sorted(SHAPE_KEYS)}", source=src, field=f"{where}.{k}")
        for k in ("name", "hidden_size", "num_layers"):
            if k not in m:
                raise ConfigError("is required for an inline shape", source=src, field=f"{where}.{k}")
        name = check_name(m["name"], source=src, field=f"{where}.name")  # it becomes part of folder names
        if name in KNOWN:
            raise ConfigError("an inline shape may not reuse a known model's name", source=src, field=f"{where}.name",
                              value=name)
        d = m["hidden_size"]
        if not isinstance(d, int) or d <= 0:
            raise ConfigError("must be a positive integer", source=src, field=f"{where}.hidden_size", value=d)
        head_dim = m.get("head_dim", 64)
        heads = m.get("num_heads", max(1, d // head_dim))
        kw = dict(hidden_size=d, num_layers=m["num_layers"], num_heads=heads, num_kv_heads=m.get("num_kv_heads", heads),
                  intermediate_size=m.get("intermediate_size", -(-(8 * d // 3) // 64) * 64),
                  vocab_size=m.get("vocab_size", 1024), tie_embeddings=m.get("tie_embeddings", True),
                  qkv_bias=m.get("qkv_bias", True), family=m.get("family", "qwen2"))
        try:
            shapes[name] = ModelShape(**kw)
        except ConfigError as e:
            raise ConfigError(e.reason, source=src, field=f"{where}.{e.field}", value=e.value) from None
        names.append(name)
    if len(set(names)) != len(names):
        raise ConfigError("lists a model twice", source=src, field="models", value=names)
    return names, shapes


#: The most log-spaced budgets one {start, stop, num} may ask for (an isoFLOP grid has a handful).
MAX_GRID_POINTS = 1_000


def _budgets(b, src) -> list[float]:
    """A list of FLOP budgets, or {start, stop, num}: num log-spaced budgets from start to stop."""
    if isinstance(b, dict):
        for k in b:
            if k not in ("start", "stop", "num"):
                raise ConfigError("unknown key; known: start, stop, num", source=src, field=f"budgets.{k}")
        for k in ("start", "stop", "num"):
            if k not in b:
                raise ConfigError("is required for log-spaced budgets", source=src, field=f"budgets.{k}")
        lo, hi, num = _number(b["start"], src, "budgets.start"), _number(b["stop"], src, "budgets.stop"), b["num"]
        check_int(num, source=src, field="budgets.num", high=MAX_GRID_POINTS)
        if lo <= 0:
            raise ConfigError("budget must be positive", source=src, field="budgets.start", value=b["start"])
        if hi <= lo and num > 1:
            raise ConfigError("must be larger than budgets.start", source=src, field="budgets.stop", value=b["stop"])
        if num == 1:
            return [lo]
        r = (hi / lo) ** (1 / (num - 1))
        return [float(f"{lo * r ** i:.6g}") for i in range(num)]
    return _increasing(b, src, "budgets", what="FLOP budgets")


def _increasing(v, src, name, what="values") -> list[float]:
    if not isinstance(v, list) or not v:
        raise ConfigError(f"must be a non-empty list of {what}", source=src, field=name, value=v)
    out = []
    for i, b in enumerate(v):
        x = _number(b, src, f"{name}[{i}]")
        if x <= 0:
            raise ConfigError("must be positive", source=src, field=f"{name}[{i}]", value=b)
        out.append(x)
    if out != sorted(out) or len(set(out)) != len(out):
        raise ConfigError(f"{name} must be strictly increasing", source=src, field=name, value=v)
    return out


def _explicit(runs, names, src) -> list[dict]:
    if not isinstance(runs, list) or not runs:
        raise ConfigError("must be a non-empty list of {model, tokens} or {model, budget}", source=src, field="runs",
                          value=runs)
    out = []
    for i, r in enumerate(runs):
        where = f"runs[{i}]"
        if not isinstance(r, dict) or "model" not in r or (("tokens" in r) == ("budget" in r)):
            raise ConfigError("must be {model, tokens} or {model, budget}", source=src, field=where, value=r)
        for k in r:
            if k not in ("model", "tokens", "budget"):
                raise ConfigError("unknown key; known: model, tokens, budget", source=src, field=f"{where}.{k}")
        if r["model"] not in names:
            raise ConfigError("names a model that is not in 'models'", source=src, field=f"{where}.model", value=r["model"])
        k = "tokens" if "tokens" in r else "budget"
        x = _number(r[k], src, f"{where}.{k}")
        if x <= 0:
            raise ConfigError("must be positive", source=src, field=f"{where}.{k}", value=r[k])
        if k == "tokens" and x > MAX_TOKENS:
            raise ConfigError(f"is more than the {MAX_TOKENS:.0e} tokens a run may have (it would never finish)",
                              source=src, field=f"{where}.{k}", value=r[k])
        out.append({"model": r["model"], k: int(x) if k == "tokens" else x})
    return out


#: The largest text vocabulary a sweep may name (published tokenizers have up to ~256k entries).
MAX_VOCAB = 10_000_000


def _tokenizer(raw, src, field: str = "tokenizer") -> str:
    tok, vocab = raw.get("tokenizer"), raw.get("vocab")
    if tok is not None and vocab is not None:
        raise ConfigError("give either 'tokenizer' or 'vocab', not both", source=src, field="vocab")
    if vocab is not None:
        if not isinstance(vocab, int) or isinstance(vocab, bool) or not 0 < vocab <= MAX_VOCAB:
            raise ConfigError(f"must be the text tokenizer's size, a positive integer of at most {MAX_VOCAB:,}",
                              source=src, field="vocab", value=vocab)
        return f"vocab:{vocab}"
    if tok is None:
        return "data"
    if tok not in ("data", "units", *TOKENIZERS):
        raise ConfigError(f"unknown tokenizer; known: data, units, {', '.join(TOKENIZERS)}", source=src,
                          field=field, value=tok)
    return tok


def _hyperparameters(raw, names, base: Path, src) -> Hyperparameters:
    hp = _sub(Hyperparameters, raw, src, "hyperparameters")
    for key, kind in (("lr", float), ("batch_size", int)):
        table = getattr(hp, key)
        if not isinstance(table, dict):
            raise ConfigError("must map model names to values", source=src, field=f"hyperparameters.{key}", value=table)
        for m, v in table.items():
            if m not in names:
                raise ConfigError("names a model that is not in 'models'", source=src, field=f"hyperparameters.{key}.{m}")
            if kind is int and (not isinstance(v, int) or v <= 0) or kind is float and _number(v, src, f"hyperparameters.{key}.{m}") <= 0:
                raise ConfigError("must be positive", source=src, field=f"hyperparameters.{key}.{m}", value=v)
            if kind is int:
                check_int(v, source=src, field=f"hyperparameters.{key}.{m}", high=MAX_BATCH)
            else:
                check_real(_number(v, src, f"hyperparameters.{key}.{m}"), source=src, field=f"hyperparameters.{key}.{m}",
                           low=0, high=MAX_LR)
        setattr(hp, key, {m: kind(v) for m, v in table.items()})
    if hp.from_study is not None:
        hp.from_study = str((base / str(hp.from_study)).resolve())
    return hp


#: The most trials one study may ask for (each trial trains a run).
MAX_TRIALS = 100_000


def _check_tuning(t: Tuning, train: TrainConfig, src, arms) -> None:
    if t.arm not in arms:
        raise ConfigError(f"names an arm that is not in 'arms' ({', '.join(arms)})", source=src, field="tuning.arm",
                          value=t.arm)
    if not (isinstance(t.tokens, int) and t.tokens >= train.tokens_per_step):
        raise ConfigError(f"must be an integer of at least one step ({train.tokens_per_step} tokens)", source=src,
                          field="tuning.tokens", value=t.tokens)
    check_int(t.tokens, source=src, field="tuning.tokens", high=MAX_TOKENS)
    for k in ("lr_min", "lr_max"):
        check_real(getattr(t, k), source=src, field=f"tuning.{k}", low=0, high=MAX_LR)
    if not 0 < t.lr_min < t.lr_max:
        raise ConfigError("need 0 < lr_min < lr_max", source=src, field="tuning.lr_min", value=t.lr_min)
    check_int(t.trials, source=src, field="tuning.trials", high=MAX_TRIALS)
    if not isinstance(t.batch_sizes, list) or not all(isinstance(b, int) and 0 < b <= MAX_BATCH for b in t.batch_sizes):
        raise ConfigError(f"must be a list of positive integers (at most {MAX_BATCH:,})", source=src,
                          field="tuning.batch_sizes", value=t.batch_sizes)


# -- what each key means (docs/reference/sweep-keys.md is generated from this; tests/test_docs.py fails on a
# key without an entry). Dotted paths: ``arms.<arm>.init``, ``models[].hidden_size``, ``resources.<name>.nodes``.
#: Type and default of the keys that are not dataclass fields (the others take theirs from the dataclass).
KEY_FORMS = {
    "name": ("str", "the file name without .yaml"), "data": ("path", "none"), "output": ("path", "."),
    "models": ("list[str | shape]", "required"), "budgets": ("list[float] | {start, stop, num}", "required (isoflop)"),
    "arms": ("list[str] | {name: arm}", "required"), "grid": ("str", "isoflop"), "seed": ("int", "0"),
    "replicates": ("int | {default | model: int}", "1"),
    "streams": ("{arm: {stream: share}}", "none"), "init": ("{arm: init}", "none"), "train": ("mapping", "{}"),
    "text_pretrain": ("mapping", "{}"), "eval": ("mapping", "{}"), "constraints": ("mapping", "{}"),
    "tokenizer": ("str", "data"), "vocab": ("int", "none"), "units": ("int", "500"),
    "tokens_per_param": ("list[float]", "none"), "runs": ("list[{model, tokens | budget}]", "none"),
    "hyperparameters": ("mapping", "{}"), "tuning": ("mapping", "{}"), "resources": ("{default | model: mapping}", "{default: {}}"),
    "budgets.start": ("float", "required"), "budgets.stop": ("float", "required"), "budgets.num": ("int", "required"),
    "runs[].model": ("str", "required"), "runs[].tokens": ("int", "tokens or budget"),
    "runs[].budget": ("float", "tokens or budget"),
    "arms.<arm>.init": ("str | {model: checkpoint}", "interleaved: text_lm; textless: random"),
    "arms.<arm>.streams": ("{stream: share}", "interleaved: text/interleaved/speech 1:1:1; textless: speech"),
    "arms.<arm>.data": ("path", "the sweep's data"), "arms.<arm>.family": ("str", "qwen2"),
    "arms.<arm>.models": ("list[str]", "all models"), "arms.<arm>.tokenizer": ("str", "the sweep's tokenizer"),
    "models[].name": ("str", "required"), "models[].hidden_size": ("int", "required"),
    "models[].num_layers": ("int", "required"), "models[].num_heads": ("int", "hidden_size // head_dim"),
    "models[].num_kv_heads": ("int", "num_heads"), "models[].intermediate_size": ("int", "8/3 hidden, rounded up to 64"),
    "models[].vocab_size": ("int", "1024"), "models[].tie_embeddings": ("bool", "true"),
    "models[].qkv_bias": ("bool", "true"), "models[].family": ("str", "qwen2"), "models[].head_dim": ("int", "64"),
}
KEY_HELP = {
    "name": "the sweep's name: a plain name, used in job names, study names and run records",
    "data": "the prepared data folder (`scaling data synth` / `scaling data prepare`), relative to the sweep file; "
            "may be absent for planning when `tokenizer` or `vocab` gives the vocabulary",
    "output": "where `runs/` and `results.csv` are written, relative to the sweep file",
    "models": "model names from scaling/shapes.py (toy-*, micro-*, mini-*, qwen2.5-*, llama-3.2-*) or inline "
              "shapes (`models[].*`)",
    "budgets": "FLOP budgets C: a strictly increasing list, or `{start, stop, num}` log-spaced",
    "arms": "the arms compared: a list of names (`interleaved`, `textless` have presets) or a mapping of named arms "
            "(`arms.<arm>.*`); the results column `arm`",
    "grid": "`isoflop` (D = C / 6N per model and budget), `tokens_per_param` (D = k N) or `explicit` (`runs`)",
    "seed": "the seed of every run of the sweep (part of each run id); replicates take the next seeds",
    "replicates": "runs per grid point, each with its own seed (`seed`, `seed + 1`, ...; interleaved replicates "
                  "start from text LMs of their own seed): one count, or per model with `default` for the rest. "
                  "Under wsd every replicate is a whole run with its branches. Run-to-run scatter is shared by a "
                  "run's points, so a second seed of a size narrows the fit's intervals where more budgets cannot "
                  "(`scaling design` searches it)",
    "streams": "older form: arm -> {stream: share}, applied on top of `arms`",
    "init": "older form: arm -> init (`text_lm`, `random`, or model -> checkpoint), applied on top of `arms`",
    "train": "the run spec's training block (`train.*`)",
    "text_pretrain": "the text LMs pre-trained per size for `init: text_lm` arms (`text_pretrain.*`)",
    "eval": "what runs evaluate while they train (`eval.*`)",
    "constraints": "grid points outside these bounds are dropped (`constraints.*`); a sweep left empty is an error",
    "tokenizer": "the vocabulary when planning without data: `data` (the data folder's), `qwen2.5`, `llama-3.2` or "
                 "`units` (speech-only, random-init arms)",
    "vocab": "the text tokenizer's size when planning without data (instead of `tokenizer`)",
    "units": "the speech unit inventory when planning without data (a data folder records its own)",
    "tokens_per_param": "grid `tokens_per_param`: the increasing list of D/N ratios",
    "runs": "grid `explicit`: the list of runs, each `{model, tokens}` or `{model, budget}`",
    "hyperparameters": "per-size overrides of train.lr / train.batch_size (`hyperparameters.*`)",
    "tuning": "`scaling tune`: an optuna study per model size (`tuning.*`)",
    "resources": "cluster jobs (`--launcher slurm`): `default` and per-model entries (`resources.<name>.*`)",
    "budgets.start": "the smallest budget of a log-spaced list (FLOPs)",
    "budgets.stop": "the largest budget of a log-spaced list (FLOPs)",
    "budgets.num": "how many log-spaced budgets (at most 1,000)",
    "runs[].model": "one of the sweep's models",
    "runs[].tokens": "the run's training tokens (at most 1e14)",
    "runs[].budget": "the run's FLOP budget (D = C / 6N)",
    "arms.<arm>.init": "`text_lm` (a text LM pre-trained per size in the sweep), `random`, or a mapping model -> "
                       "checkpoint (a local Hugging Face folder or a hub id in the local cache)",
    "arms.<arm>.streams": "stream -> token share (streams `text`, `interleaved`, `speech`)",
    "arms.<arm>.data": "the arm's own data folder, relative to the sweep file",
    "arms.<arm>.family": "the model family of the arm's shapes and text LM: `qwen2` or `llama`",
    "arms.<arm>.models": "only these of the sweep's models",
    "arms.<arm>.tokenizer": "the arm's vocabulary when planning without data (as `tokenizer`)",
    "models[].name": "the inline shape's name (a plain name, not a known model's)",
    "models[].hidden_size": "model width",
    "models[].num_layers": "decoder blocks",
    "models[].num_heads": "attention heads",
    "models[].num_kv_heads": "key/value heads (grouped-query attention when fewer than num_heads)",
    "models[].intermediate_size": "SwiGLU width",
    "models[].vocab_size": "text vocabulary rows before the speech tokens are added",
    "models[].tie_embeddings": "the LM head shares the input embedding",
    "models[].qkv_bias": "biases on the q/k/v projections (Qwen2 has them, Llama not)",
    "models[].family": "`qwen2` or `llama`",
    "models[].head_dim": "width of one attention head (sets num_heads when that is not given)",
    "train.seq_len": "tokens per training sequence (packed windows cut from the streams)",
    "train.batch_size": "sequences per optimiser step (the global batch)",
    "train.micro_batch_size": "sequences per forward pass on each process; 0 = the process's whole share (no "
                              "accumulation); `auto` = the largest that `scaling memory` fits in memory_fraction",
    "train.lr": "peak learning rate (AdamW)",
    "train.min_lr": "the learning rate the schedule decays to (at most lr)",
    "train.warmup_frac": "linear warmup as a fraction of warmup_basis's steps",
    "train.warmup_basis": "`run` (the run's own steps) or `shortest` (its shortest budget, the first cooldown branch of "
                          "a wsd run, so every branch is a run of its own length)",
    "train.grad_clip": "gradient-norm clipping threshold",
    "train.weight_decay": "AdamW weight decay",
    "train.beta1": "AdamW beta1",
    "train.beta2": "AdamW beta2",
    "train.eval_every": "optimiser steps between validations; 0 = only at the end",
    "train.schedule": "`cosine` (to min_lr) or `wsd` (warmup-stable-decay with a cooldown branch at each smaller budget)",
    "train.cooldown_frac": "wsd: each cooldown branch decays over this fraction of its budget (1-sqrt shape)",
    "train.activation_checkpointing": "recompute in backward: false, true/`full`, `op` (selective), an integer k "
                                      "(every k-th block) or `auto`; operational (not in the run id)",
    "train.doc_mask": "attention never crosses document boundaries in packed sequences",
    "train.chunked_ce": "LM head + cross-entropy in token chunks, never the full logits; operational",
    "train.compile": "torch.compile each decoder block; operational",
    "train.checkpoint_every": "optimiser steps between resumable checkpoints; 0 = every 10% of the run",
    "train.keep_checkpoints": "keep checkpoints/ after the run is done (model/ always stays)",
    "train.embedding_init": "new embedding rows of a text-LM init: `mean` of the existing rows or `normal`",
    "train.init_std": "weight std of a random init: `hf` (0.02), `small_init` (sqrt(2 / (5 hidden))) or a number; "
                      "reaches the text LMs and random-init arms, never a pretrained init",
    "train.val_sequences": "validation sequences per stream",
    "train.precision": "`amp-bf16` (fp32 master weights, bf16 autocast on GPU) or `bf16` (bf16 weights and AdamW state)",
    "train.liger_ce": "Liger's fused linear cross-entropy for training (CUDA and the `gpu` extra); operational",
    "train.compiled_ce": "compiled chunked LM head + CE (8,192-row chunks, gradients in the forward); operational",
    "train.attention": "`auto`, `sdpa` (block-diagonal mask), `varlen`, `flash_attention_2` or `flex_attention`; "
                       "operational",
    "train.bf16_params": "bf16 compute copies of fp32 master weights (FSDP2 mixed precision): `auto` (several "
                         "processes), true, false; operational",
    "train.memory_fraction": "fraction of device memory that micro_batch_size / activation_checkpointing `auto` may plan for",
    "train.liger_kernels": "Liger-Kernel's fused RMSNorm, SwiGLU and RoPE (CUDA and the `gpu` extra); operational",
    "text_pretrain.tokens": "training tokens of each size's text LM",
    "text_pretrain.lr": "the text LMs' learning rate (default: train.lr)",
    "text_pretrain.min_lr": "the text LMs' final learning rate (default: train.min_lr)",
    "eval.benchmarks": "pair benchmarks evaluated at each run end and cooldown branch (registry: scaling/datadir.py)",
    "eval.max_items": "cap on items per benchmark (default: all)",
    "constraints.min_steps": "drop grid points with fewer optimiser steps",
    "constraints.min_tokens_per_param": "drop grid points below this D/N",
    "constraints.max_tokens_per_param": "drop grid points above this D/N",
    "constraints.max_params": "drop runs of larger models",
    "hyperparameters.lr": "model -> learning rate",
    "hyperparameters.batch_size": "model -> batch size",
    "hyperparameters.from_study": "a tuned.yaml written by `scaling tune` (relative to the sweep file)",
    "tuning.tokens": "training tokens of each trial",
    "tuning.arm": "the arm the trials train",
    "tuning.lr_min": "lower end of the learning-rate search (log scale)",
    "tuning.lr_max": "upper end of the learning-rate search",
    "tuning.batch_sizes": "batch sizes to try; empty: the batch size is not tuned",
    "tuning.trials": "trials per model size",
    "tuning.storage": "an optuna RDB URL (default: sqlite:///<sweep dir>/tuning.db)",
    "tuning.output": "the file the tuned values are written to, relative to the sweep file",
    "resources.<name>.nodes": "nodes per job (one task per node)",
    "resources.<name>.gpus_per_node": "GPUs per node (torchrun starts one process per GPU)",
    "resources.<name>.cpus_per_task": "CPUs per task",
    "resources.<name>.mem_gb": "memory per node, GB",
    "resources.<name>.time_min": "the job's time limit in minutes",
    "resources.<name>.partition": "SLURM partition",
    "resources.<name>.account": "SLURM account",
    "resources.<name>.qos": "SLURM quality of service",
    "resources.<name>.constraint": "SLURM node constraint",
}
