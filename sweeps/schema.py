"""Sweep files: a YAML description of a compute-budget grid, validated before anything runs."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from scaling.errors import ConfigError
from scaling.shapes import KNOWN
from scaling.spec import STREAMS, TrainConfig

SPEECH_ARMS = ("interleaved", "textless")
DEFAULT_STREAMS = {"interleaved": {"text": 1.0, "interleaved": 1.0, "speech": 1.0}, "textless": {"speech": 1.0}}
DEFAULT_INIT = {"interleaved": "text_lm", "textless": "random"}


@dataclass
class TextPretrain:
    tokens: int = 300_000
    lr: float | None = None  # default: the sweep's train.lr
    min_lr: float | None = None


@dataclass
class EvalConfig:
    benchmarks: list[str] = field(default_factory=lambda: ["swuggy", "sblimp", "ssc", "tsc", "ssc_s2t", "ssc_t2s", "ssc_t2t"])
    max_items: int | None = None


@dataclass
class Constraints:
    min_steps: int = 1
    min_tokens_per_param: float | None = None
    max_tokens_per_param: float | None = None


@dataclass
class Sweep:
    path: Path
    name: str
    data: Path
    output: Path
    models: list[str]
    budgets: list[float]
    arms: list[str]
    grid: str = "isoflop"
    seed: int = 0
    streams: dict[str, dict[str, float]] = field(default_factory=dict)
    init: dict[str, str] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    text_pretrain: TextPretrain = field(default_factory=TextPretrain)
    eval: EvalConfig = field(default_factory=EvalConfig)
    constraints: Constraints = field(default_factory=Constraints)

    @property
    def runs_dir(self) -> Path:
        return self.output / "runs"

    @property
    def results_csv(self) -> Path:
        return self.output / "results.csv"


TOP_KEYS = {"name", "data", "output", "models", "budgets", "arms", "grid", "seed", "streams", "init", "train",
            "text_pretrain", "eval", "constraints"}


def _sub(cls, raw, src: str, prefix: str):
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping", source=src, field=prefix, value=raw)
    known = {f.name for f in fields(cls)}
    for k in raw:
        if k not in known:
            raise ConfigError(f"unknown key; known: {sorted(known)}", source=src, field=f"{prefix}.{k}")
    return cls(**raw)


def _number(v, src, fieldname) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ConfigError("must be a number", source=src, field=fieldname, value=v)
    try:
        x = float(v)
    except ValueError:
        raise ConfigError("must be a number", source=src, field=fieldname, value=v) from None
    if not math.isfinite(x):
        raise ConfigError("must be finite", source=src, field=fieldname, value=v)
    return x


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise ConfigError("sweep file not found", source=src)
    with open(path, encoding="utf-8") as fh:
        try:
            raw = yaml.safe_load(fh)
        except yaml.YAMLError as e:
            raise ConfigError(f"not valid YAML: {e}", source=src) from None
    if not isinstance(raw, dict):
        raise ConfigError("a sweep file must be a mapping", source=src)
    for k in raw:
        if k not in TOP_KEYS:
            raise ConfigError(f"unknown key; known: {sorted(TOP_KEYS)}", source=src, field=k)
    for k in ("data", "models", "budgets", "arms"):
        if k not in raw:
            raise ConfigError("is required", source=src, field=k)

    models = raw["models"]
    if not isinstance(models, list) or not models:
        raise ConfigError("must be a non-empty list of model names", source=src, field="models", value=models)
    for i, m in enumerate(models):
        if m not in KNOWN:
            raise ConfigError(f"unknown model; known: {', '.join(KNOWN)}", source=src, field=f"models[{i}]", value=m)
    if len(set(models)) != len(models):
        raise ConfigError("lists a model twice", source=src, field="models", value=models)

    budgets_raw = raw["budgets"]
    if not isinstance(budgets_raw, list) or not budgets_raw:
        raise ConfigError("must be a non-empty list of FLOP budgets", source=src, field="budgets", value=budgets_raw)
    budgets = []
    for i, b in enumerate(budgets_raw):
        x = _number(b, src, f"budgets[{i}]")
        if x <= 0:
            raise ConfigError("budget must be positive", source=src, field=f"budgets[{i}]", value=b)
        budgets.append(x)
    if budgets != sorted(budgets) or len(set(budgets)) != len(budgets):
        raise ConfigError("budgets must be strictly increasing", source=src, field="budgets", value=budgets_raw)

    arms = raw["arms"]
    if not isinstance(arms, list) or not arms:
        raise ConfigError("must be a non-empty list", source=src, field="arms", value=arms)
    for i, a in enumerate(arms):
        if a not in SPEECH_ARMS:
            raise ConfigError(f"unknown arm; known: {SPEECH_ARMS}", source=src, field=f"arms[{i}]", value=a)

    grid = raw.get("grid", "isoflop")
    if grid != "isoflop":
        raise ConfigError("unknown grid kind; supported: isoflop", source=src, field="grid", value=grid)

    streams = {a: dict(DEFAULT_STREAMS[a]) for a in arms}
    for a, mix in (raw.get("streams") or {}).items():
        if a not in arms:
            raise ConfigError("names an arm that is not in 'arms'", source=src, field=f"streams.{a}")
        if not isinstance(mix, dict) or not mix:
            raise ConfigError("must map stream names to shares", source=src, field=f"streams.{a}", value=mix)
        for s, w in mix.items():
            if s not in STREAMS:
                raise ConfigError(f"unknown stream; known: {STREAMS}", source=src, field=f"streams.{a}.{s}")
            if _number(w, src, f"streams.{a}.{s}") <= 0:
                raise ConfigError("share must be positive", source=src, field=f"streams.{a}.{s}", value=w)
        streams[a] = {s: float(w) for s, w in mix.items()}

    init = {a: DEFAULT_INIT[a] for a in arms}
    for a, v in (raw.get("init") or {}).items():
        if a not in arms:
            raise ConfigError("names an arm that is not in 'arms'", source=src, field=f"init.{a}")
        if v not in ("text_lm", "random"):
            raise ConfigError("must be 'text_lm' or 'random'", source=src, field=f"init.{a}", value=v)
        init[a] = v

    train = _sub(TrainConfig, raw.get("train"), src, "train")
    train.validate(src)
    tp = _sub(TextPretrain, raw.get("text_pretrain"), src, "text_pretrain")
    if not isinstance(tp.tokens, int) or tp.tokens < train.tokens_per_step:
        raise ConfigError(f"must be an integer of at least one step ({train.tokens_per_step} tokens)",
                          source=src, field="text_pretrain.tokens", value=tp.tokens)
    ev = _sub(EvalConfig, raw.get("eval"), src, "eval")
    cons = _sub(Constraints, raw.get("constraints"), src, "constraints")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError("must be an integer", source=src, field="seed", value=seed)

    base = path.parent
    data = (base / str(raw["data"])).resolve()
    if not (data / "data.json").is_file():
        raise ConfigError(f"no prepared data at {data} (run `scaling data synth --out {data}`)", source=src, field="data", value=raw["data"])
    return Sweep(
        path=path, name=str(raw.get("name", path.stem)), data=data, output=(base / str(raw.get("output", "."))).resolve(),
        models=list(models), budgets=budgets, arms=list(arms), grid=grid, seed=seed, streams=streams, init=init,
        train=train, text_pretrain=tp, eval=ev, constraints=cons,
    )
