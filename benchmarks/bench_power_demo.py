"""Does the power simulator predict what the demo really measures? Simulated against measured interval widths.

Usage: python benchmarks/bench_power_demo.py PILOT_DIR MEASURED_DIR [MEASURED_DIR ...]
           [--replicates 20] [--resamples 200] [--iid]

PILOT_DIR is a finished demo (its plan.json and fits.json: each arm's law and noise model, as
``scaling power`` reads them); each MEASURED_DIR a finished demo of the same grid at another seed (its
fits.json). For every arm the script simulates studies of the plan's points under the pilot's law with
the pilot's noise model (a per-run offset and slope shared by a run's end and its cooldown branches,
plus per-point noise), fitted and bootstrapped as ``scaling report`` does, and prints the median
simulated 95% bootstrap width of alpha, beta and a beside the measured widths (each seed's and their
mean) and the ratio simulated / measured mean. ``--iid`` simulates the old model instead (the same total
scatter as the rms of the pilot's log residuals, independent points), for comparison. A record goes to benchmarks/results/.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.noise import NoiseModel  # noqa: E402
from analysis.power import EXPONENTS, laws_from_fits, load_plan_points, simulate  # noqa: E402


def measured_widths(folder: Path) -> dict[str, dict[str, float]]:
    fits = json.loads((folder / "fits.json").read_text(encoding="utf-8"))
    out = {}
    for arm, e in fits["arms"].items():
        ci = (e.get("parametric") or {}).get("ci") or {}
        out[arm] = {k: ci[k][1] - ci[k][0] for k in EXPONENTS if k in ci}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pilot", help="finished demo folder: plan.json and fits.json")
    ap.add_argument("measured", nargs="+", help="finished demo folders of the same grid (their fits.json)")
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--iid", action="store_true", help="simulate independent points with the same total scatter")
    args = ap.parse_args(argv)
    pilot = Path(args.pilot)
    laws = laws_from_fits(pilot / "fits.json")
    pilot_fits = json.loads((pilot / "fits.json").read_text(encoding="utf-8"))
    points = load_plan_points(pilot / "plan.json")
    measured = [measured_widths(Path(d)) for d in args.measured]
    figures = {}
    for arm, (law, noise) in laws.items():
        if arm not in points or noise is None:
            continue
        if args.iid:  # the pilot's own scatter about its law (rms of the log residuals), points independent
            rms = pilot_fits["arms"][arm]["parametric"]["extra"]["log_residual_rms"]
            noise = NoiseModel(point_sd=float(rms))
        N, D, C, R = points[arm]
        t0 = time.time()
        res = simulate(N, D, law, noise=noise, runs=R, replicates=args.replicates, resamples=args.resamples, budgets=C)
        secs = time.time() - t0
        print(f"{arm}: noise run {noise.run_sd:.4f}, slope {noise.slope_sd:.4f}, point {noise.point_sd:.4f}; "
              f"{args.replicates} studies x {args.resamples} resamples in {secs:.0f} s; flagged {100 * res['flagged']:.0f}%")
        row = {}
        for k in EXPONENTS:
            seen = [m[arm][k] for m in measured if arm in m and k in m[arm]]
            mean = sum(seen) / len(seen) if seen else math.nan
            ratio = res["width"][k] / mean if seen else math.nan
            row[k] = {"simulated": res["width"][k], "measured": seen, "measured_mean": mean, "ratio": ratio,
                      "spread": res.get("spread", {}).get(k)}
            print(f"  {k:<6} simulated median width {res['width'][k]:.3f}   measured "
                  + ", ".join(f"{w:.3f}" for w in seen) + f" (mean {mean:.3f})   simulated / measured {ratio:.2f}")
        figures[arm] = {"widths": row, "flagged": res["flagged"], "noise": noise.to_dict(), "seconds": secs}
    from benchmarks.record import write_record

    summary = "; ".join(f"{arm}: simulated/measured width " + ", ".join(f"{k} {v['ratio']:.2f}" for k, v in f["widths"].items())
                        for arm, f in figures.items())
    write_record("power_demo" + ("_iid" if args.iid else ""), figures, title="power simulator against the demo's "
                 "measured interval widths" + (" (iid noise)" if args.iid else " (run-level noise)"), summary=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
