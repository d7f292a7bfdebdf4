"""Coverage of the parametric fit's intervals (bootstrap and Laplace) on grids drawn from known laws.

Usage: PYTHONPATH=. python benchmarks/bench_coverage.py [--grids 54] [--resamples 1000] [--method pairs]
                                                       [--huber-delta 1e-3] [--check 20] [--quick]
                                                       [--no-bootstrap]

Each grid: a random realistic law (:func:`analysis.fits.synthetic.random_law`), a 5 x 5 isoFLOP
grid (5 budgets two decades apart, 5 sizes over a factor 10), centred on the true N_opt or off-centre
by 3x either way, log-normal noise of 0.5%, 1% or 2% (the 9 combinations in turn). The fit and the
bootstrap run at the library defaults (``fit_parametric``; ``bootstrap_parametric`` with
``--resamples``, 95% percentile intervals), and so do the Laplace intervals
(:func:`analysis.fits.laplace.laplace_intervals`: the sandwich covariance at the optimum, no
refits). The script prints, per parameter (E, A, B, alpha, beta, a) and per method, the fraction
of grids whose interval holds the true value (nominally 95%), the median width of the interval of
a, and the time per fit of each method (the bootstrap's and the Laplace intervals' own time, the
4,500-start fit itself apart). ``--no-bootstrap`` measures the Laplace intervals alone (a few
hundred grids in a minute).

``--check K`` also refits K resamples per grid from the full 4,500-start search (the resampled
points as a new data set) and counts the resamples whose bootstrap optimum lies above that refit's
by more than 1e-6 relative: the bootstrap must reach each resample's own optimum.
``--quick``: 9 grids, 200 resamples, check 3.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from analysis.fits.bootstrap import METHODS, bootstrap_parametric  # noqa: E402
from analysis.fits.laplace import laplace_intervals  # noqa: E402
from analysis.fits.parametric import _Objective, fit_parametric  # noqa: E402
from analysis.fits.synthetic import isoflop_grid, random_law  # noqa: E402

NOISES = (0.005, 0.01, 0.02)
SHIFTS = (1.0, 3.0, 1 / 3)
PARAMS = ("E", "A", "B", "alpha", "beta", "a")


def grid_case(i: int, seed0: int = 1000):
    rng = np.random.default_rng(seed0 + i)
    law = random_law(rng)
    noise, shift = NOISES[i % 3], SHIFTS[(i // 3) % 3]
    _, N, D, L = isoflop_grid(law, rng, noise=noise, shift=shift)
    return law, N, D, L, noise, shift


def resample_gaps(fit, N, D, L, xb, seed: int, method: str, k: int, n_resamples: int) -> list[float]:
    """Relative gap (bootstrap optimum - full refit) / full refit for the first ``k`` resamples."""
    if method != "pairs":  # the resampled data are not reconstructed for the residual schemes here
        return []
    rng = np.random.default_rng(seed)
    n = N.size
    W = rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples)  # the same draws as the bootstrap
    gaps = []
    for r in range(min(k, n_resamples)):
        idx = np.repeat(np.arange(n), W[r])
        ref = fit_parametric(N[idx], D[idx], L[idx], huber_delta=fit.huber_delta)
        obj = _Objective(np.log(N), np.log(D), np.log(L), fit.huber_delta, fit.reduce, weights=W[r:r + 1].astype(float))
        mine = float(obj(xb[r:r + 1], np.array([0]))[0][0])
        gaps.append((mine - ref.objective) / ref.objective)
    return gaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grids", type=int, default=54, help="synthetic grids (default 54: 6 of each noise x centring)")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per grid (default 1000, as scaling report)")
    ap.add_argument("--method", choices=METHODS, default="pairs")
    ap.add_argument("--huber-delta", type=float, default=1e-3)
    ap.add_argument("--check", type=int, default=0, help="refit this many resamples per grid from the full start grid")
    ap.add_argument("--quick", action="store_true", help="9 grids, 200 resamples, check 3")
    ap.add_argument("--no-bootstrap", action="store_true", help="Laplace intervals only (no resampling: fast)")
    args = ap.parse_args()
    if args.quick:
        args.grids, args.resamples, args.check = 9, 200, args.check or 3
    kinds = ("Laplace",) if args.no_bootstrap else ("bootstrap", "Laplace")
    covered = {k: {p: 0 for p in PARAMS} for k in kinds}
    by_noise = {k: {nz: {p: [0, 0] for p in PARAMS} for nz in NOISES} for k in kinds}
    widths = {k: [] for k in kinds}
    seconds = {k: 0.0 for k in ("fit",) + kinds}
    gaps, unconverged = [], 0
    t0 = time.perf_counter()
    for i in range(args.grids):
        law, N, D, L, noise, shift = grid_case(i)
        t = time.perf_counter()
        fit = fit_parametric(N, D, L, huber_delta=args.huber_delta)
        seconds["fit"] += time.perf_counter() - t
        t = time.perf_counter()
        laplace_intervals(fit, N, D, L)
        seconds["Laplace"] += time.perf_counter() - t
        if not args.no_bootstrap:
            t = time.perf_counter()
            _, _, xb = bootstrap_parametric(fit, N, D, L, n_resamples=args.resamples, seed=i, method=args.method,
                                            return_samples=True)
            seconds["bootstrap"] += time.perf_counter() - t
            unconverged += fit.bootstrap["n_unconverged"]
        truth = law.truth()
        miss = {k: [] for k in kinds}
        for k in kinds:
            ci = fit.ci if k == "bootstrap" else fit.ci_laplace
            for p in PARAMS:
                lo, hi = ci[p]
                ok = lo <= truth[p] <= hi
                covered[k][p] += ok
                by_noise[k][noise][p][0] += ok
                by_noise[k][noise][p][1] += 1
                if not ok:
                    miss[k].append(p)
            widths[k].append(ci["a"][1] - ci["a"][0])
        if args.check and not args.no_bootstrap:
            gaps += resample_gaps(fit, N, D, L, xb, i, args.method, args.check, args.resamples)
        ivs = "  ".join(f"{k} [{(fit.ci if k == 'bootstrap' else fit.ci_laplace)['a'][0]:.3f}, "
                        f"{(fit.ci if k == 'bootstrap' else fit.ci_laplace)['a'][1]:.3f}] missed {','.join(miss[k]) or '-'}"
                        for k in kinds)
        print(f"grid {i:>3}  noise {noise:.3f}  shift {shift:.2g}  a {law.a:.3f}: {ivs}  ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    n = args.grids
    print(f"\ngrids: {n} (5 x 5 isoFLOP, noise {', '.join(map(str, NOISES))}, centred and off-centre 3x)   "
          + ("" if args.no_bootstrap else f"resamples: {args.resamples} ({args.method})   ")
          + f"huber delta: {args.huber_delta}   wall: {time.perf_counter() - t0:.0f} s")
    print(f"coverage of the 95% intervals ({n} grids):")
    print(f"  {'':<10} " + " ".join(f"{p:>6}" for p in PARAMS) + f" {'width a':>8} {'time per fit':>14}")
    for k in kinds:
        per = seconds[k] / n
        tm = f"{per:.2f} s" if per >= 0.1 else f"{1e3 * per:.2f} ms"
        print(f"  {k:<10} " + " ".join(f"{covered[k][p] / n:>6.0%}" for p in PARAMS)
              + f" {np.median(widths[k]):>8.3f} {tm:>14}")
    for k in kinds:
        for nz in NOISES:
            c = by_noise[k][nz]
            if c["a"][1]:
                print(f"  {k:<10} noise {nz:.3f} ({c['a'][1]} grids): "
                      + "   ".join(f"{p} {c[p][0] / c[p][1]:.0%}" for p in PARAMS))
    print(f"the 4,500-start fit itself: {seconds['fit'] / n:.2f} s per grid"
          + ("" if args.no_bootstrap else f"   bootstrap resamples stopped before convergence: {unconverged}"))
    if gaps:
        g = np.asarray(gaps)
        print(f"resamples refitted from all 4,500 starts: {g.size}; bootstrap optimum above the refit by > 1e-6 "
              f"relative: {int((g > 1e-6).sum())} (worst {g.max():.2e}); below it by > 1e-6: {int((g < -1e-6).sum())}")
    from record import write_record  # benchmarks/record.py: a dated record under benchmarks/results/

    cov = {k: {p: round(covered[k][p] / n, 3) for p in PARAMS} for k in kinds}
    per_fit = {k: seconds[k] / n for k in kinds}
    figures = {"grids": n, "coverage": cov, "seconds_per_fit": {k: round(v, 5) for k, v in per_fit.items()},
               "median_width_a": {k: round(float(np.median(widths[k])), 4) for k in kinds},
               "fit_seconds_per_grid": round(seconds["fit"] / n, 3)}
    if not args.no_bootstrap:
        figures.update(resamples=args.resamples, method=args.method, unconverged=unconverged)
    print("record:", write_record(
        "coverage", figures, units={"seconds_per_fit": "s"},
        title=f"interval coverage, {n} grids from known laws: " + " vs ".join(
            ("bootstrap" + ("" if args.no_bootstrap else f" ({args.resamples:,} {args.method} resamples)")) if k == "bootstrap"
            else "Laplace (sandwich)" for k in kinds),
        summary="; ".join(f"{k} {min(cov[k].values()):.0%}-{max(cov[k].values()):.0%} in "
                          + (f"{per_fit[k]:.2f} s" if per_fit[k] >= 0.1 else f"{1e3 * per_fit[k]:.1f} ms") + " per fit"
                          for k in kinds)))


if __name__ == "__main__":
    main()
