"""Does the default demo's law hold at every seed? The demo at several seeds, judged as the issue asks.

Usage: python benchmarks/bench_demo_seeds.py [--seeds 0 1 2] [--out DIR] [--workers N] [--scale cpu] [--replicates K]
       python benchmarks/bench_demo_seeds.py --judge DIR/seed_0 DIR/seed_1 ...   (judge finished demos only)

Each seed runs ``scaling demo --seed S --out DIR/seed_S`` (another synthetic corpus, other benchmarks,
other inits: the whole study again), timed. Then, per seed and arm, from its fits.json:
- the CAUTION verdict (``ParametricFit.diagnostics``, as report.md prints it) and its reasons;
- the held-out error (the law fitted without the largest budget, mean error on it) and the rollout
  error (fitted without the largest model size, error on its points) where fits.json has it;
- each exponent's bootstrap 95% interval against the report's "wide" limit (max(0.5 |estimate|, 0.1));
  a ratio above 1 is a CAUTION;
- whether every isoFLOP slice's parabola vertex lies inside its sampled sizes.
A seed passes when neither arm is flagged, the held-out error is within 3% and every vertex is
interior. The exit status is 1 when any seed fails; a record of the figures is written under
benchmarks/results/ when the record helper is present.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.fits.parametric import ParametricFit  # noqa: E402

HELD_OUT_LIMIT = 0.03


def judge(folder: Path) -> dict:
    """The verdicts of one finished demo (its fits.json)."""
    fits = json.loads((folder / "fits.json").read_text(encoding="utf-8"))
    out = {}
    for arm, entry in fits["arms"].items():
        par = entry.get("parametric") or {}
        row: dict = {}
        if "error" in par or not par:
            out[arm] = {"error": par.get("error", "no parametric fit"), "passed": False}
            continue
        fit = ParametricFit.from_dict(par)
        row["caution"] = fit.diagnostics()
        row["intervals"] = {}
        for k in ("alpha", "beta", "a"):
            lo, hi = fit.ci.get(k, (math.nan, math.nan))
            est = getattr(fit, k)
            row["intervals"][k] = {"estimate": est, "ci": [lo, hi],
                                   "ratio": (hi - lo) / max(0.5 * abs(est), 0.1)}
        ext = entry.get("extrapolation") or {}
        row["held_out_error"] = ext.get("mean_rel_error")
        roll = entry.get("rollout") or {}
        row["rollout_error"] = roll.get("mean_abs_rel_error")
        iso = entry.get("isoflop") or {}
        minima = iso.get("minima") or []
        row["vertices_inside"] = f"{sum(not m['extrapolated'] for m in minima)} of {len(minima)}"
        interior = bool(minima) and all(not m["extrapolated"] for m in minima)
        held = row["held_out_error"]
        row["passed"] = (not row["caution"] and interior and held is not None and held <= HELD_OUT_LIMIT)
        out[arm] = row
    return out


def format_seed(seed, verdicts: dict, seconds: float | None) -> list[str]:
    lines = [f"seed {seed}" + (f" ({seconds / 60:.1f} min)" if seconds else "")]
    for arm, v in verdicts.items():
        if "error" in v:
            lines.append(f"  {arm}: no parametric fit ({v['error']})")
            continue
        iv = "  ".join(f"{k} [{x['ci'][0]:.3f}, {x['ci'][1]:.3f}] {x['ratio']:.2f}x" for k, x in v["intervals"].items())
        held = v["held_out_error"]
        roll = v["rollout_error"]
        lines.append(f"  {arm:<12} {'PASS' if v['passed'] else 'FAIL'}  "
                     f"{'CAUTION' if v['caution'] else 'no caution'}  held-out "
                     f"{'-' if held is None else f'{100 * held:.2f}%'}  rollout "
                     f"{'-' if roll is None else f'{100 * roll:.2f}%'}  vertices inside {v['vertices_inside']}")
        lines.append(f"  {'':<12} {iv}")
        for c in v["caution"]:
            lines.append(f"  {'':<12} caution: {c}")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="demo_seeds", help="folder for the demos (seed_S each); default ./demo_seeds")
    ap.add_argument("--workers", type=int, default=None, help="scaling demo --workers (default: its own)")
    ap.add_argument("--scale", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--replicates", type=int, default=None, metavar="K",
                    help="scaling demo --replicates K: every grid point trained K times, each under its own seed")
    ap.add_argument("--judge", nargs="+", default=None, metavar="DEMO_DIR",
                    help="judge these finished demo folders instead of running anything")
    ap.add_argument("--seconds", type=float, nargs="+", default=None,
                    help="with --judge: each folder's measured demo time, for the record")
    ap.add_argument("--record", action="store_true", help="with --judge: write a record (always written otherwise)")
    ap.add_argument("--note", default=None, help="a note for the record (machine load, what changed)")
    args = ap.parse_args(argv)
    results = []
    if args.judge:
        secs = args.seconds or [None] * len(args.judge)
        if len(secs) != len(args.judge):
            ap.error("--seconds needs one time per --judge folder")
        runs = [(Path(d).name, Path(d), t) for d, t in zip(args.judge, secs)]
    else:
        runs = []
        for s in args.seeds:
            folder = Path(args.out) / f"seed_{s}"
            cmd = [sys.executable, "-m", "scaling", "demo", "--seed", str(s), "--out", str(folder), "--scale", args.scale]
            if args.workers:
                cmd += ["--workers", str(args.workers)]
            if args.replicates:
                cmd += ["--replicates", str(args.replicates)]
            t0 = time.time()
            rc = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode
            dt = time.time() - t0
            if rc:
                print(f"seed {s}: scaling demo exited {rc} after {dt:.0f} s", flush=True)
            runs.append((s, folder, dt))
    failed = False
    for seed, folder, dt in runs:
        try:
            verdicts = judge(folder)
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            print(f"seed {seed}: cannot judge {folder}: {exc}")
            failed = True
            continue
        failed |= not all(v.get("passed") for v in verdicts.values())
        print("\n".join(format_seed(seed, verdicts, dt)), flush=True)
        results.append({"seed": seed, "folder": str(folder), "seconds": dt, "arms": verdicts})
    print("all seeds pass" if not failed else "at least one seed fails")
    if args.record or not args.judge:
        from benchmarks.record import write_record

        verdicts = "; ".join(f"seed {r['seed']}: " + ", ".join(f"{a} {'pass' if v.get('passed') else 'FAIL'}"
                                                            for a, v in r["arms"].items()) for r in results)
        reps = f" with --replicates {args.replicates}" if args.replicates else ""
        write_record("demo_seeds" + (f"_replicates{args.replicates}" if args.replicates else ""),
                     {"seeds": results, "all_pass": not failed, "replicates": args.replicates or 1},
                     title=f"the default demo at several seeds{reps}",
                     summary=("all seeds pass" if not failed else "not every seed passes") + f" ({verdicts})",
                     units={"seconds": "s"}, note=args.note)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
