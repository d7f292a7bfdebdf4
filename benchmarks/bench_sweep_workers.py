"""Do K local workers on a CPU host finish a sweep no slower than one process? (issue 17: two
workers on 2 cores, the quick demo's grid.)

    python benchmarks/bench_sweep_workers.py [--full] [--workers 2] [--keep DIR]

Prepares the quick synthetic data folder once, then trains the same grid twice into two fresh
output folders: `scaling run SWEEP` (one process, torch on every core) and
`scaling run SWEEP --workers K` (K processes, cores/K threads each). Prints the wall time of
each and their ratio. Default: a short grid (2 sizes x 2 budgets x 2 arms + 2 text LMs = 10 runs);
`--full` runs the quick demo's grid (21 runs). The figure is only meaningful on a quiet machine:
the load average at the start and the end is printed beside it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scaling.datadir import MANIFEST  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _scaling(*args: str) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.time()
    rc = subprocess.call([sys.executable, "-m", "scaling.cli", *args], env=env, cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return rc, time.time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the quick demo's whole grid (21 runs)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", help="keep the data and both sweeps here")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_workers_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        data = root / "data"
        if not (data / MANIFEST).is_file():
            rc, s = _scaling("data", "synth", "--out", str(data), "--quick")
            if rc:
                print("data preparation failed")
                return rc
            print(f"data: {s:.0f} s")
        cfg = yaml.safe_load((REPO / "sweeps" / "configs" / "demo_quick.yaml").read_text(encoding="utf-8"))
        if not args.full:
            cfg.update(models=cfg["models"][:2], budgets=cfg["budgets"][:2])
        cfg["data"] = str(data)
        times = {}
        print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
        for label, extra in (("1 process", []), (f"{args.workers} workers", ["--workers", str(args.workers)])):
            out = root / label.replace(" ", "_")
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            sweep = out / "sweep.yaml"
            sweep.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
            rc, s = _scaling("run", str(sweep), *extra)
            runs = sum(1 for _ in (out / "runs").glob("*/result.json"))
            print(f"{label:>10}: {s:7.1f} s  ({runs} runs, exit {rc})", flush=True)
            times[label] = s
        one, many = times.values()
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print(f"{args.workers} workers / 1 process = {many / one:.2f} (<= 1.00: no slower)")
        from record import write_record  # benchmarks/record.py: a dated record under benchmarks/results/
        print("record:", write_record(
            "sweep_workers", {"one_process_s": round(one, 1), "workers_s": round(many, 1), "workers": args.workers,
                              "ratio": round(many / one, 3), "full": args.full},
            title=f"sweep workers sharing the machine ({'full' if args.full else 'short'} grid)",
            summary=f"one process {one:.1f} s, --workers {args.workers} {many:.1f} s (ratio {many / one:.2f})"))
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
