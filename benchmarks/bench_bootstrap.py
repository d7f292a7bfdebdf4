"""Time 4,000 bootstrap refits of the parametric law on the 240 Epoch points.

Usage: PYTHONPATH=. python benchmarks/bench_bootstrap.py [--csv PATH] [--resamples 4000] [--method pairs]
Prints the full-data fit time, the bootstrap time and the intervals next to Epoch's published
bootstrap standard errors (A 125, B 1290, E 0.03, alpha 0.02, beta 0.02; 95% interval ~ 4 SE wide).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from analysis.fits.bootstrap import bootstrap_parametric
from analysis.fits.parametric import fit_parametric

DEFAULT_CSV = Path(__file__).resolve().parents[1] / "tests" / "data" / "chinchilla_epoch.csv"
EPOCH_SE = {"A": 125.0, "B": 1290.0, "E": 0.03, "alpha": 0.02, "beta": 0.02}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--resamples", type=int, default=4000)
    ap.add_argument("--method", choices=("pairs", "residual", "parametric"), default="pairs")
    args = ap.parse_args()
    df = pd.read_csv(args.csv).sort_values("loss").iloc[:-5]
    t0 = time.perf_counter()
    fit = fit_parametric(df.params, df.tokens, df.loss)
    tf = time.perf_counter() - t0
    t0 = time.perf_counter()
    bootstrap_parametric(fit, df.params, df.tokens, df.loss, n_resamples=args.resamples, method=args.method)
    tb = time.perf_counter() - t0
    print(f"points: {len(df)}   full 4,500-start fit: {tf:.2f} s   bootstrap ({args.resamples} {args.method} resamples, "
          f"{fit.bootstrap['starts_per_resample']} starts each, each to its own optimum): {tb:.2f} s   "
          f"failed: {fit.bootstrap['n_failed']}   stopped before convergence: {fit.bootstrap['n_unconverged']}")
    print(f"{'name':<10} {'estimate':>11} {'95% low':>11} {'95% high':>11} {'~SE (width/3.92)':>17} {'Epoch SE':>9}")
    for k, (lo, hi) in fit.ci.items():
        v = fit.to_dict().get(k)
        est = f"{v:>11.4g}" if isinstance(v, float) else f"{'(at C*)':>11}"
        se = EPOCH_SE.get(k)
        print(f"{k:<10} {est} {lo:>11.4g} {hi:>11.4g} {(hi - lo) / 3.92:>17.4g} {se if se else '':>9}")
    from record import write_record  # benchmarks/record.py: a dated record under benchmarks/results/
    se = {k: round((hi - lo) / 3.92, 6) for k, (lo, hi) in fit.ci.items()}
    print("record:", write_record(
        "bootstrap_epoch", {"points": len(df), "fit_s": round(tf, 3), "bootstrap_s": round(tb, 2),
                            "resamples": args.resamples, "method": args.method, "n_failed": fit.bootstrap["n_failed"],
                            "n_unconverged": fit.bootstrap["n_unconverged"], "se": se},
        title=f"bootstrap on Epoch's {len(df)} points, {args.resamples:,} resamples",
        summary=f"{tb:.0f} s; SE " + ", ".join(f"{k} {se[k]:.3g}" for k in ("A", "B", "E", "alpha", "beta") if k in se)))


if __name__ == "__main__":
    main()
