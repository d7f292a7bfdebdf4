"""How much does a point's loss move with the seed, per weight-init setting? (issue 18: the default
demo's scatter about its law was mostly seed noise.)

    python benchmarks/bench_seed_noise.py [--seeds 4] [--init-std hf small_init] [--workers 2] [--keep DIR]
                                          [--models micro-15k micro-23k micro-46k] [--budget 7.11e10]

Builds the default demo's data folder once (`scaling data synth` with the demo's flags), then trains the
textless arm (random init) of the demo's sweep at one budget, for each ``--init-std`` setting and each seed
in 0..S-1, as plain runs (no cooldown branches), without benchmarks. Prints, per setting and size, the
mean validation speech loss and the standard deviation of its log over the seeds (in %: the relative
seed noise of one point), then the pooled seed noise per setting. Each (setting, seed) is one
`scaling run` into its own folder, ``--workers`` of them at a time with one thread each.

Measured 2026-12-01 (2 cores, 4 seeds, 3 sizes at 7.11e10, about 30 s per (setting, seed) on one core):
at transformers' fixed std 0.02 (`hf`) 1.33% pooled (2.1% for micro-46k), at `small_init`
(sqrt(2 / (5 hidden))) 0.30%, with losses 1-9% lower. Changing only the data order (same init, other
order) left 1.56%; cooling down to lr 1e-5 instead of 1e-3 left 1.34%: the noise was the init.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from analysis.load import load_table  # noqa: E402
from scaling.datadir import MANIFEST  # noqa: E402
from scaling.demo import PRESETS  # noqa: E402


def _scaling(*args: str, log: Path | None = None) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(log or os.devnull, "w") as fh:
        return subprocess.call([sys.executable, "-m", "scaling.cli", *args], env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)


def _std_arg(v: str):
    try:
        return float(v)
    except ValueError:
        return v


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--init-std", nargs="+", default=["hf", "small_init"], type=_std_arg,
                    help="train.init_std settings to compare (hf, small_init or a number)")
    ap.add_argument("--models", nargs="+", default=["micro-15k", "micro-23k", "micro-46k"])
    ap.add_argument("--budget", type=float, default=7.11e10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", help="keep the data and the runs here")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_seed_noise_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        data = root / "data"
        if not (data / MANIFEST).is_file():
            t0 = time.time()
            if _scaling("data", "synth", "--out", str(data), *PRESETS["cpu"][1]):
                print("data preparation failed")
                return 1
            print(f"data: {time.time() - t0:.0f} s")
        base = yaml.safe_load((REPO / "sweeps" / "configs" / PRESETS["cpu"][0]).read_text(encoding="utf-8"))
        base.update(data=str(data), models=args.models, budgets=[args.budget], arms=["textless"],
                    eval={"benchmarks": []})
        base.pop("text_pretrain", None)
        jobs = []
        for std in args.init_std:
            for seed in range(args.seeds):
                out = root / f"{std}_s{seed}"
                out.mkdir(exist_ok=True)
                cfg = dict(base, seed=seed, train=dict(base["train"], init_std=std))
                (out / "sweep.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
                jobs.append((std, seed, out))
        print(f"{len(jobs)} sweeps of {len(args.models)} runs; load average before: {os.getloadavg()[0]:.2f}", flush=True)
        t0 = time.time()
        with ThreadPoolExecutor(args.workers) as pool:
            rcs = list(pool.map(lambda j: _scaling("run", str(j[2] / "sweep.yaml"), "--workers", "1", log=j[2] / "run.log"), jobs))
        print(f"trained in {time.time() - t0:.0f} s; load average after: {os.getloadavg()[0]:.2f}")
        if any(rcs):
            print("failed:", [str(j[2]) for j, rc in zip(jobs, rcs) if rc])
            return 1
        losses = {}  # (init_std, model) -> the seeds' losses, each results.csv read once
        for std, _, out in jobs:
            t = load_table(out / "results.csv")
            for m, v in zip(t["model"], t["val_loss_speech"]):
                losses.setdefault((std, m), []).append(float(v))
        print(f"\n{'init_std':>11} {'model':>10} {'mean loss':>10} {'seed sd %':>10}")
        sds = {}
        for std in args.init_std:
            pooled = []
            for model in args.models:
                logs = [math.log(v) for v in losses[std, model]]
                sd = statistics.stdev(logs)
                pooled.append(sd ** 2)
                print(f"{std!s:>11} {model:>10} {statistics.fmean(losses[std, model]):10.4f} {100 * sd:10.2f}")
            print(f"{std!s:>11} {'pooled':>10} {'':>10} {100 * math.sqrt(statistics.fmean(pooled)):10.2f}")
            sds[str(std)] = round(math.sqrt(statistics.fmean(pooled)), 5)
        from record import write_record  # benchmarks/record.py: a dated record under benchmarks/results/
        print("record:", write_record(
            "seed_noise", {"sd_log_loss": sds, "seeds": args.seeds, "models": args.models, "budget": args.budget},
            title=f"seed noise of one point ({', '.join(args.models)}, {args.seeds} seeds)",
            summary="pooled sd of log loss: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in sds.items())))
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
