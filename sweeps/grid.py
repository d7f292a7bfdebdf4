"""Resolving a sweep into run specs.

isoFLOP grid: every (arm, model, budget C) gets D = C / (6 N) tokens, rounded to whole
training sequences; N counts all parameters including the embedding rows of the speech
vocabulary. Interleaved runs start from a text LM of the same shape, pre-trained once per
size (its compute is not counted in C, as in SIMS).
"""
from __future__ import annotations

import json
from dataclasses import replace

from scaling.errors import ConfigError
from scaling.flops import count_params
from scaling.shapes import get_shape
from scaling.spec import RunSpec
from sweeps.schema import Sweep


def _manifest(sweep: Sweep) -> dict:
    return json.loads((sweep.data / "data.json").read_text(encoding="utf-8"))


def text_lm_spec(sweep: Sweep, model: str, manifest: dict) -> RunSpec:
    tp = sweep.text_pretrain
    train = replace(sweep.train, lr=tp.lr or sweep.train.lr, min_lr=tp.min_lr or sweep.train.min_lr, eval_every=0)
    shape = get_shape(model).with_vocab(manifest["text_model_vocab"])
    return RunSpec(arm="textlm", model=model, shape=shape, tokens=tp.tokens, streams={"textlm": 1.0}, init="random",
                   data_fingerprint=manifest["fingerprint"], train=train, seed=sweep.seed, data_dir=str(sweep.data),
                   sweep=sweep.name)


def resolve(sweep: Sweep) -> list[RunSpec]:
    """All runs of the sweep, dependencies (text LMs) first. Raises ConfigError on an infeasible grid."""
    manifest = _manifest(sweep)
    src = str(sweep.path)
    T = sweep.train.seq_len
    specs: list[RunSpec] = []
    text_lms: dict[str, RunSpec] = {}
    if any(sweep.init[a] == "text_lm" for a in sweep.arms):
        for m in sweep.models:
            text_lms[m] = text_lm_spec(sweep, m, manifest)
            specs.append(text_lms[m])
    for arm in sweep.arms:
        for mi, model in enumerate(sweep.models):
            shape = get_shape(model).with_vocab(manifest["speech_model_vocab"])
            n = count_params(shape).total
            for bi, C in enumerate(sweep.budgets):
                tokens = int(round(C / (6 * n) / T)) * T
                where = f"budgets[{bi}]"
                if tokens < sweep.train.tokens_per_step:
                    raise ConfigError(
                        f"budget {C:.3g} gives {model} ({n:,} params) only {C / (6 * n):,.0f} tokens, less than one "
                        f"optimiser step of {sweep.train.tokens_per_step} tokens", source=src, field=where, value=C)
                spec = RunSpec(
                    arm=arm, model=model, shape=shape, tokens=tokens, streams=dict(sweep.streams[arm]),
                    init=f"run:{text_lms[model].run_id}" if sweep.init[arm] == "text_lm" else "random",
                    data_fingerprint=manifest["fingerprint"], train=replace(sweep.train), seed=sweep.seed, budget=C,
                    benchmarks=list(sweep.eval.benchmarks), bench_items=sweep.eval.max_items, data_dir=str(sweep.data),
                    sweep=sweep.name)
                _check_constraints(sweep, spec, n, where)
                specs.append(spec)
    ids = [s.run_id for s in specs]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ConfigError(f"two grid points resolve to the same run id {sorted(dup)}", source=src, field="models/budgets")
    return specs


def _check_constraints(sweep: Sweep, spec: RunSpec, n: int, where: str) -> None:
    c, src = sweep.constraints, str(sweep.path)
    if spec.steps < c.min_steps:
        raise ConfigError(f"{spec.model} at this budget trains {spec.steps} steps, fewer than constraints.min_steps={c.min_steps}",
                          source=src, field=where, value=spec.budget)
    ratio = spec.tokens / n
    if c.min_tokens_per_param is not None and ratio < c.min_tokens_per_param:
        raise ConfigError(f"{spec.model} gets {ratio:.2f} tokens/param, below constraints.min_tokens_per_param",
                          source=src, field=where, value=spec.budget)
    if c.max_tokens_per_param is not None and ratio > c.max_tokens_per_param:
        raise ConfigError(f"{spec.model} gets {ratio:.2f} tokens/param, above constraints.max_tokens_per_param",
                          source=src, field=where, value=spec.budget)
