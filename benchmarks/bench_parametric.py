"""Time the batched 4,500-start parametric fit against one scipy L-BFGS-B call per start.

Usage: PYTHONPATH=. python benchmarks/bench_parametric.py [--csv PATH] [--reduce sum|mean] [--loop-starts K]
Both run in this process on the same 240 Epoch points (the 5 highest-loss points dropped).
--loop-starts K runs the loop on every (4500 // K)-th start only and scales the time up (a quick estimate).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.fits.parametric import default_grid, fit_parametric

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared/data/chinchilla_epoch.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--reduce", choices=("sum", "mean"), default="sum")
    ap.add_argument("--loop-starts", type=int, default=None, help="subsample the loop to about this many starts")
    args = ap.parse_args()
    df = pd.read_csv(args.csv).sort_values("loss").iloc[:-5]
    grid = default_grid()
    t0 = time.perf_counter()
    fb = fit_parametric(df.params, df.tokens, df.loss, reduce=args.reduce, grid=grid)
    tb = time.perf_counter() - t0
    lgrid, factor = grid, 1.0
    if args.loop_starts:
        step = max(1, len(grid) // args.loop_starts)
        lgrid, factor = grid[::step], len(grid) / len(grid[::step])
    t0 = time.perf_counter()
    fl = fit_parametric(df.params, df.tokens, df.loss, reduce=args.reduce, grid=lgrid, method="loop")
    tl = (time.perf_counter() - t0) * factor
    print(f"points: {len(df)}   starts: {len(grid)}   reduce: {args.reduce}")
    print(f"{'method':<28} {'time (s)':>9} {'objective':>14} {'E':>7} {'A':>8} {'B':>8} {'alpha':>7} {'beta':>7}")
    for name, t, f in ((f"batched L-BFGS + polish", tb, fb),
                       (f"scipy loop ({len(lgrid)} starts{', scaled' if factor > 1 else ''})", tl, fl)):
        print(f"{name:<28} {t:>9.2f} {f.objective:>14.10g} {f.E:>7.4f} {f.A:>8.2f} {f.B:>8.1f} {f.alpha:>7.4f} {f.beta:>7.4f}")
    print(f"speed-up: {tl / tb:.1f}x   objective difference (batched - loop): {fb.objective - fl.objective:.3g}")


if __name__ == "__main__":
    main()
