"""Resolving a sweep into run specs.

Grid kinds, per (arm, model):
- ``isoflop``: every budget C gets D = C / (6 N) tokens, rounded to whole training sequences;
- ``tokens_per_param``: every ratio r gets D = r N tokens (C = 6 N D);
- ``explicit``: the listed (model, tokens) or (model, budget) points.
N counts all parameters, including the embedding rows of the speech vocabulary (the text
tokenizer + n_units + 2 speech tokens, padded to a multiple of 64, never fewer than a published
checkpoint's rows; n_units is the data folder's, or the sweep's ``units`` (default 500) when
planning without data). Interleaved runs start from a text LM of the same shape, pre-trained once
per size (its compute is not counted in C, as in SIMS), or from a given checkpoint.

Constraints drop grid points (max_params, min/max tokens per parameter, min_steps); a sweep
left with no run is an error. With ``train.schedule: wsd`` the points of one (arm, model) become
one run to the largest token count with a cooldown branch at each smaller one. ``replicates``
repeats a model's runs under the seeds after ``seed`` (interleaved ones from text LMs of their seed).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path


from scaling.datadir import N_UNITS, DataDir
from scaling import yamlio
from scaling.errors import ConfigError
from scaling.flops import count_params, flops_6nd
from scaling.initref import InitRef
from scaling.shapes import PUBLISHED, ModelShape, padded_vocab
from scaling.spec import TEXT_ARM, RunSpec
from sweeps.schema import FAMILY_SHAPE, TOKENIZERS, Sweep


def _manifest(sweep: Sweep, arm: str | None = None) -> dict:
    """The checked data.json of ``arm``'s data folder (the sweep's when None); {} when planning without data."""
    data = sweep.data if arm is None else sweep.data_of(arm)
    if data is None or sweep.tokenizer_of(arm) != "data":
        return {}
    return DataDir.open(data).manifest


def vocab_sizes(sweep: Sweep, model: str, manifest: dict, arm: str | None = None) -> tuple[int | None, int]:
    """(text LM rows, speech LM rows) of ``model`` under ``arm``'s tokenizer."""
    tok = sweep.tokenizer_of(arm)
    if tok == "data":
        return manifest["text_model_vocab"], manifest["speech_model_vocab"]
    speech_tokens = sweep.units + 2  # <Un0>..<Un{units-1}>, <speech>, <text>
    if tok == "units":
        return None, padded_vocab(speech_tokens)
    n = TOKENIZERS[tok] if tok in TOKENIZERS else int(tok.split(":", 1)[1])
    rows = PUBLISHED[model].vocab_size if model in PUBLISHED else padded_vocab(n)
    return max(rows, padded_vocab(n)), max(rows, padded_vocab(n + speech_tokens))


def shape_of(sweep: Sweep, model: str, manifest: dict, *, text: bool = False, arm: str | None = None) -> ModelShape:
    """The model's shape with the vocabulary rows of the (text or speech) tokenizer, in ``arm``'s family."""
    tv, sv = vocab_sizes(sweep, model, manifest, arm)
    shape = sweep.shapes[model].with_vocab(tv if text else sv)
    fam = sweep.family.get(arm) if arm else None
    return replace(shape, **FAMILY_SHAPE[fam]) if fam and fam != shape.family else shape


def _fingerprint(sweep: Sweep, manifest: dict, arm: str | None = None) -> str:
    if manifest:
        return manifest["fingerprint"]
    units = "" if sweep.units == N_UNITS else f"+units:{sweep.units}"  # the default keeps earlier run ids
    return f"tokenizer:{sweep.tokenizer_of(arm)}{units}"


def tuned_values(sweep: Sweep) -> dict[str, dict]:
    """Per-size values: the sweep's inline table over a tuning study's tuned.yaml."""
    hp = sweep.hyperparameters
    out: dict[str, dict] = {}
    if hp.from_study:
        p = Path(hp.from_study)
        if not p.is_file():
            raise ConfigError(f"no tuned values at {p} (run `scaling tune {sweep.path}` first)", source=str(sweep.path),
                              field="hyperparameters.from_study", value=str(p))
        table = yamlio.load(p) or {}
        if not isinstance(table, dict):
            raise ConfigError("must map model names to their tuned values", source=str(p), value=type(table).__name__)
        for m in sweep.models:
            if m in table and not isinstance(table[m], dict):
                raise ConfigError("must map lr / batch_size to values", source=str(p), field=m, value=table[m])
            if m not in table:
                raise ConfigError(f"{p} has no tuned values for model '{m}'", source=str(sweep.path),
                                  field="hyperparameters.from_study")
            out[m] = {k: table[m][k] for k in ("lr", "batch_size") if k in table[m]}
    for m, v in hp.lr.items():
        out.setdefault(m, {})["lr"] = v
    for m, v in hp.batch_size.items():
        out.setdefault(m, {})["batch_size"] = v
    return out


def train_for(sweep: Sweep, model: str, tuned: dict[str, dict]):
    """The sweep's train config with this size's tuned lr (min_lr scaled alike) and batch size."""
    t = sweep.train
    v = tuned.get(model, {})
    lr = float(v.get("lr", t.lr))
    return replace(t, lr=lr, min_lr=t.min_lr * lr / t.lr, batch_size=int(v.get("batch_size", t.batch_size)))


def text_lm_spec(sweep: Sweep, model: str, manifest: dict, arm: str | None = None, seed: int | None = None) -> RunSpec:
    """The text LM that ``arm``'s runs of ``model`` (of ``seed``, default the sweep's) start from (its family,
    its data folder's text stream)."""
    tp = sweep.text_pretrain
    train = replace(sweep.train, lr=tp.lr or sweep.train.lr, min_lr=tp.min_lr or sweep.train.min_lr, eval_every=0,
                    schedule="cosine")
    data = sweep.data_of(arm) if arm else sweep.data
    return RunSpec(arm=TEXT_ARM, model=model, shape=shape_of(sweep, model, manifest, text=True, arm=arm), tokens=tp.tokens,
                   streams={TEXT_ARM: 1.0}, init="random", data_fingerprint=_fingerprint(sweep, manifest, arm),
                   train=train, seed=sweep.seed if seed is None else seed, data_dir=str(data or ""), sweep=sweep.name)


def _points(sweep: Sweep, model: str, n: int, T: int) -> list[tuple[int, float, str]]:
    """(tokens, budget, where) of one model's grid points."""
    if sweep.grid == "isoflop":
        return [(int(round(C / flops_6nd(n, 1) / T)) * T, C, f"budgets[{i}]") for i, C in enumerate(sweep.budgets)]
    if sweep.grid == "tokens_per_param":
        pts = []
        for i, r in enumerate(sweep.tokens_per_param):
            d = int(round(r * n / T)) * T
            pts.append((d, flops_6nd(n, d), f"tokens_per_param[{i}]"))
        return pts
    pts = []
    for i, r in enumerate(sweep.explicit):
        if r["model"] != model:
            continue
        if "tokens" in r:
            d = int(round(r["tokens"] / T)) * T
            pts.append((d, flops_6nd(n, d), f"runs[{i}]"))
        else:
            pts.append((int(round(r["budget"] / flops_6nd(n, 1) / T)) * T, r["budget"], f"runs[{i}]"))
    return pts


def _dropped_by(sweep: Sweep, n: int, tokens: int, steps: int) -> str | None:
    c = sweep.constraints
    if c.max_params is not None and n > c.max_params:
        return f"{n:,} params > constraints.max_params"
    if steps < c.min_steps:
        return f"{steps} steps < constraints.min_steps={c.min_steps}"
    if c.min_tokens_per_param is not None and tokens / n < c.min_tokens_per_param:
        return f"{tokens / n:.2f} tokens/param < constraints.min_tokens_per_param"
    if c.max_tokens_per_param is not None and tokens / n > c.max_tokens_per_param:
        return f"{tokens / n:.2f} tokens/param > constraints.max_tokens_per_param"
    return None


def resolve(sweep: Sweep, *, dropped: list | None = None) -> list[RunSpec]:
    """All runs of the sweep, dependencies (text LMs) first. Raises ConfigError on an infeasible grid.
    Points removed by the constraints are appended to ``dropped`` as (arm, model, tokens, reason)."""
    src = str(sweep.path)
    tuned = tuned_values(sweep)
    dropped = [] if dropped is None else dropped
    speech: list[RunSpec] = []
    manifests = {arm: _manifest(sweep, arm) for arm in sweep.arms}
    for arm in sweep.arms:
        manifest = manifests[arm]
        for model in sweep.models_of(arm):
            shape = shape_of(sweep, model, manifest, arm=arm)
            n = count_params(shape).total
            train = train_for(sweep, model, tuned)
            T = train.seq_len
            kept = []
            for tokens, C, where in _points(sweep, model, n, T):
                if tokens < train.tokens_per_step:
                    raise ConfigError(
                        f"budget {C:.3g} gives {model} ({n:,} params) only {C / flops_6nd(n, 1):,.0f} tokens, less than one "
                        f"optimiser step of {train.tokens_per_step} tokens", source=src, field=where, value=C)
                why = _dropped_by(sweep, n, tokens, -(-tokens // train.tokens_per_step))
                if why:
                    dropped.append((arm, model, tokens, why))
                    continue
                same = next((w for t, _, w in kept if t == tokens), None)
                if same is not None:  # two grid points, one run: refuse rather than train it twice under two ids
                    raise ConfigError(f"gives {model} the same {tokens:,} tokens as {same} (token counts are whole "
                                      f"sequences of {T}); drop one of the two points", source=src, field=where, value=C)
                kept.append((tokens, C, where))
            if not kept:
                continue
            kept.sort()
            common = dict(arm=arm, model=model, shape=shape, init=sweep.init[arm],
                          data_fingerprint=_fingerprint(sweep, manifest, arm), bench_items=sweep.eval.max_items,
                          data_dir=str(sweep.data_of(arm) or ""), sweep=sweep.name)
            for seed in sweep.seeds_of(model):  # replicates: the same grid points again, each under its own seed
                base = dict(common, seed=seed, streams=dict(sweep.streams[arm]), benchmarks=list(sweep.eval.benchmarks))
                if train.schedule == "wsd":
                    tokens, C, _ = kept[-1]
                    cds = [(t, c) for t, c, _ in kept if t < tokens]  # token counts are distinct (checked above)
                    speech.append(RunSpec(tokens=tokens, budget=C, train=replace(train), cooldowns=[t for t, _ in cds],
                                          cooldown_budgets=[float(c) for _, c in cds], **base))
                else:
                    speech.extend(RunSpec(tokens=t, budget=C, train=replace(train), **base) for t, C, _ in kept)
    if not speech:
        reasons = sorted({d[3].split(" ", 1)[1] if " " in d[3] else d[3] for d in dropped})
        raise ConfigError(f"the constraints leave no runs ({len(dropped)} grid points dropped: {'; '.join(reasons)})",
                          source=src, field="constraints")
    # One text LM per (model, family, data folder, seed): arms that share those share their text LM.
    specs: list[RunSpec] = []
    text_lms: dict[str, RunSpec] = {}
    for s in speech:
        if s.init == "text_lm":
            lm = text_lm_spec(sweep, s.model, manifests[s.arm], s.arm, seed=s.seed)
            if lm.run_id not in text_lms:
                lm.validate(src)
                text_lms[lm.run_id] = lm
                specs.append(lm)
            s.init = str(InitRef("run", lm.run_id))
        elif s.init == "checkpoint":
            s.init = sweep.init_paths[s.arm][s.model]
        s.validate(src)
    specs.sort(key=lambda lm: sweep.models.index(lm.model))  # text LMs by size, as before
    specs.extend(speech)
    ids = [s.run_id for s in specs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"two grid points resolve to the same run id {dup} (repeated points, or budgets that round "
                          f"to the same token count)", source=src, field=sweep.grid if sweep.grid != "isoflop" else "budgets")
    return specs
