"""Time the batched 4,500-start parametric fit against one scipy L-BFGS-B call per start.

Usage: PYTHONPATH=. python benchmarks/bench_parametric.py [--csv PATH] [--reduce sum|mean] [--loop-starts K]
                                                         [--screen K] [--repeat R] [--full]
Both run in this process on the same 240 Epoch points (the 5 highest-loss points dropped).
--loop-starts K runs the loop on every (4500 // K)-th start only and scales the time up (a quick estimate).
The batched fit evaluates all 4,500 starts and optimises the ``--screen`` best (default: the
library default, 256); it is timed ``--repeat`` times (median reported, used for the speed-up).
``--full`` also times the batched fit without screening (every start optimised).

BLAS threads: scipy's L-BFGS-B (scipy >= 1.15) calls BLAS on 5-vectors every iteration; with a
multi-threaded OpenBLAS on a loaded machine each call can cost ~1 ms of thread hand-off, which
inflates the loop ~10x. Unless OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS are already
set, this script pins them to 1 before numpy is imported, for both methods, so that the baseline
is the fast one. Set them yourself (e.g. OPENBLAS_NUM_THREADS=2) to measure otherwise.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402,F401
import pandas as pd  # noqa: E402

from analysis.fits.parametric import DEFAULT_SCREEN, default_grid, fit_parametric  # noqa: E402

DEFAULT_CSV = Path(__file__).resolve().parents[1] / "tests" / "data" / "chinchilla_epoch.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--reduce", choices=("sum", "mean"), default="sum")
    ap.add_argument("--loop-starts", type=int, default=None, help="subsample the loop to about this many starts")
    ap.add_argument("--screen", type=int, default=DEFAULT_SCREEN, help="starts optimised by the batched fit")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of the batched fit (median reported)")
    ap.add_argument("--full", action="store_true", help="also time the batched fit with screen=None")
    args = ap.parse_args()
    df = pd.read_csv(args.csv).sort_values("loss").iloc[:-5]
    grid = default_grid()
    times = []
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        fb = fit_parametric(df.params, df.tokens, df.loss, reduce=args.reduce, grid=grid, screen=args.screen)
        times.append(time.perf_counter() - t0)
    tb = statistics.median(times)
    rows = [(f"batched, screened to {fb.extra['n_refined']}", tb, fb)]
    if args.full:
        t0 = time.perf_counter()
        ff = fit_parametric(df.params, df.tokens, df.loss, reduce=args.reduce, grid=grid, screen=None)
        rows.append(("batched, all starts", time.perf_counter() - t0, ff))
    lgrid, factor = grid, 1.0
    if args.loop_starts:
        step = max(1, len(grid) // args.loop_starts)
        lgrid, factor = grid[::step], len(grid) / len(grid[::step])
    t0 = time.perf_counter()
    fl = fit_parametric(df.params, df.tokens, df.loss, reduce=args.reduce, grid=lgrid, method="loop")
    tl = (time.perf_counter() - t0) * factor
    rows.append((f"scipy loop ({len(lgrid)} starts{', scaled' if factor > 1 else ''})", tl, fl))
    threads = os.environ.get("OPENBLAS_NUM_THREADS")
    print(f"points: {len(df)}   starts: {len(grid)}   reduce: {args.reduce}   OPENBLAS_NUM_THREADS={threads}")
    print(f"batched runs (s): {', '.join(f'{t:.3f}' for t in times)}")
    print(f"{'method':<30} {'time (s)':>9} {'objective':>20} {'E':>7} {'A':>8} {'B':>8} {'alpha':>7} {'beta':>7}")
    for name, t, f in rows:
        print(f"{name:<30} {t:>9.3f} {f.objective:>20.15g} {f.E:>7.4f} {f.A:>8.2f} {f.B:>8.1f} {f.alpha:>7.4f} {f.beta:>7.4f}")
    print(f"speed-up (loop / batched median): {tl / tb:.1f}x   "
          f"objective difference (batched - loop): {fb.objective - fl.objective:.3g}")


if __name__ == "__main__":
    main()
