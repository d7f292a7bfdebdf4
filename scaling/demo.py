"""`scaling demo`: the whole study on the built-in synthetic corpus, by chaining the
subcommands a user would run one by one:

    scaling data synth --out DIR/data [--quick]
    scaling plan DIR/sweep.yaml
    scaling run DIR/sweep.yaml
    scaling report DIR --out DIR      (fits.json with bootstrap intervals, figures/, coefficient tables, report.md)
"""
from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

import yaml

from scaling import atomic


def demo_sweep_text(quick: bool, seed: int) -> str:
    name = "demo_quick.yaml" if quick else "demo.yaml"
    text = resources.files("sweeps").joinpath("configs", name).read_text(encoding="utf-8")
    cfg = yaml.safe_load(text)
    if cfg.get("seed") != seed:  # keep the shipped file's comments when the seed is the default
        text = text.replace(f"seed: {cfg.get('seed')}\n", f"seed: {seed}\n", 1)
    return text


def _data_is_current(data: Path, quick: bool, seed: int) -> bool:
    manifest, corpus = data / "data.json", data / "corpus" / "manifest.json"
    if not (manifest.is_file() and corpus.is_file()):
        return False
    want = _synth_config(quick, seed)
    return json.loads(corpus.read_text()).get("config") == want and json.loads(manifest.read_text()).get("seed") == seed


def _synth_config(quick: bool, seed: int) -> dict:
    from dataclasses import asdict

    from trainer.data.synthetic import SynthConfig

    return asdict(SynthConfig.quick(seed=seed) if quick else SynthConfig(seed=seed))


def run_demo(out: Path, *, quick: bool, seed: int) -> int:
    from scaling.cli import main

    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    step = 0

    def stage(title: str) -> None:
        nonlocal step
        step += 1
        print(f"\n== {step}. {title}  (t = {time.time() - t0:.0f} s)", flush=True)

    stage("synthetic speech-text corpus, tokenizer, packed shards")
    if _data_is_current(data, quick, seed):
        print(f"reusing the prepared data in {data}")
    else:
        rc = main(["data", "synth", "--out", str(data), "--seed", str(seed)] + (["--quick"] if quick else []))
        if rc:
            return rc
    sweep = out / "sweep.yaml"
    atomic.write_text(sweep, demo_sweep_text(quick, seed))

    stage(f"plan ({sweep})")
    rc = main(["plan", str(sweep), "--json", str(out / "plan.json")])
    if rc:
        return rc
    stage("train and evaluate every run (finished runs are skipped)")
    rc_run = main(["run", str(sweep)])
    stage("fit scaling laws, draw the figures, write the report")
    rc = main(["report", str(out), "--out", str(out)])
    if rc:
        return rc
    print(f"\ndemo finished in {time.time() - t0:.0f} s: {out}/results.csv, fits.json, figures/, report.md")
    return rc_run
