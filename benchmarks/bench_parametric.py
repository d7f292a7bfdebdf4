"""The parametric fit against the published loop: speed on Epoch's points, and the optimum on random laws.

Usage:
  PYTHONPATH=. python benchmarks/bench_parametric.py [--csv PATH] [--reduce sum|mean] [--loop-starts K]
                                                    [--screen K] [--repeat R] [--full]
  PYTHONPATH=. python benchmarks/bench_parametric.py --laws 200 [--loop-every K] [--jobs J] [--quick] [--out CSV]

Speed (default): both methods run in this process on the same 240 Epoch points (the 5 highest-loss
points dropped). --loop-starts K runs the loop on every (4500 // K)-th start only and scales the time
up (a quick estimate). The batched fit is timed ``--repeat`` times (median reported, used for the
speed-up). ``--full`` also times the batched fit without screening (every start refined).

Optimum (``--laws N``): N random realistic laws (:mod:`analysis.fits.synthetic`), each sampled on a
20-point isoFLOP grid (4 budgets x 5 sizes, centred or off-centre by 3x, 0.3-2% noise). For each,
the library fit (``fit_parametric`` defaults) against the published procedure, one scipy
L-BFGS-B per start over the 4,500-start grid (``--loop-every K``: every K-th start only; 1, the
default, is the full loop). Prints the relative gap (fit - loop) / loop per law, how many laws have
the fit above the loop by more than 1e-6, and the three worst cases (their seeds are the
regression tests in tests/test_fits.py, with the loop's objective). ``--quick`` = 20 laws, every 15th
start. ``--out rows.csv`` appends each law's row as it is done and skips laws already there, so a
long run can be stopped, resumed or split (``--first-seed``) over processes; the 2026-11-30 full run
is benchmarks/results/parametric_optimum_200.csv.

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

import pandas as pd  # noqa: E402

from analysis.fits.parametric import DEFAULT_SCREEN, default_grid, fit_parametric  # noqa: E402
from analysis.fits.synthetic import optimum_case as law_case  # noqa: E402

DEFAULT_CSV = Path(__file__).resolve().parents[1] / "tests" / "data" / "chinchilla_epoch.csv"


def _one_law(job):
    seed, loop_every = job
    law, N, D, L = law_case(seed)
    t0 = time.perf_counter()
    fit = fit_parametric(N, D, L)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = fit_parametric(N, D, L, method="loop", grid=default_grid()[::loop_every])
    t_loop = time.perf_counter() - t0
    return {"seed": seed, "fit": fit.objective, "loop": loop.objective, "gap": (fit.objective - loop.objective) / loop.objective,
            "a_fit": fit.a, "a_loop": loop.a, "a_true": law.a, "t_fit": t_fit, "t_loop": t_loop,
            "n_refined": fit.extra["n_refined"], "n_at_best": fit.extra["n_at_best"], "widened": fit.extra["widened"]}


def _append(out: Path | None, row: dict) -> None:
    """One law's row appended to ``out`` as soon as it is done (a long run stopped half-way keeps them)."""
    if out is None:
        return
    new = not out.exists()
    with out.open("a") as f:
        if new:
            f.write(",".join(row) + "\n")
        f.write(",".join(str(v) for v in row.values()) + "\n")
        f.flush()


def optimum_benchmark(n_laws: int, loop_every: int, jobs: int, first_seed: int, out: Path | None = None) -> None:
    done = set(pd.read_csv(out).seed) if out is not None and out.exists() else set()
    jobs_list = [(first_seed + i, loop_every) for i in range(n_laws) if first_seed + i not in done]
    t0 = time.perf_counter()
    rows = []
    if jobs > 1:
        from multiprocessing import Pool

        with Pool(jobs) as pool:
            results = pool.imap_unordered(_one_law, jobs_list)
            for i, r in enumerate(results):
                rows.append(r)
                _append(out, r)
                if (i + 1) % 10 == 0:
                    print(f"  {i + 1}/{len(jobs_list)} laws, {time.perf_counter() - t0:.0f} s", flush=True)
    else:
        for i, job in enumerate(jobs_list):
            rows.append(_one_law(job))
            _append(out, rows[-1])
            if (i + 1) % 10 == 0:
                print(f"  {i + 1}/{len(jobs_list)} laws, {time.perf_counter() - t0:.0f} s", flush=True)
    df = pd.read_csv(out) if out is not None else pd.DataFrame(rows)
    df = df[(df.seed >= first_seed) & (df.seed < first_seed + n_laws)].sort_values("gap", ascending=False)
    starts = len(default_grid()[::loop_every])
    print(f"laws: {n_laws} (seeds {first_seed}..{first_seed + n_laws - 1})   loop: scipy L-BFGS-B over {starts} starts "
          f"(every {loop_every}th of 4,500)   wall: {time.perf_counter() - t0:.0f} s")
    above = int((df.gap > 1e-6).sum())
    print(f"fit above the loop by > 1e-6 relative: {above} of {n_laws}   "
          f"fit below the loop by > 1e-6: {int((df.gap < -1e-6).sum())}   median gap {df.gap.median():.2e}")
    print(f"fit time: median {df.t_fit.median():.3f} s, max {df.t_fit.max():.3f} s   loop time: median {df.t_loop.median():.2f} s   "
          f"widened: {int(df.widened.sum())}   polished candidates at the best: median {df.n_at_best.median():.0f}")
    print("worst three (largest fit - loop):")
    print(df.head(3).to_string(index=False, float_format=lambda v: f"{v:.6g}"))


def speed_benchmark(args) -> None:
    df = pd.read_csv(args.csv).sort_values("loss").iloc[:-5]
    grid = default_grid()
    times = []
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        fb = fit_parametric(df.params, df.tokens, df.loss, reduce=args.reduce, grid=grid, screen=args.screen)
        times.append(time.perf_counter() - t0)
    tb = statistics.median(times)
    rows = [(f"batched, {fb.extra['n_refined']} refined", tb, fb)]
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
    print(f"batched runs (s): {', '.join(f'{t:.3f}' for t in times)}   "
          f"refined {fb.extra['n_refined']}, polished {fb.extra['n_polished']}, at the best {fb.extra['n_at_best']}")
    print(f"{'method':<30} {'time (s)':>9} {'objective':>20} {'E':>7} {'A':>8} {'B':>8} {'alpha':>7} {'beta':>7}")
    for name, t, f in rows:
        print(f"{name:<30} {t:>9.3f} {f.objective:>20.15g} {f.E:>7.4f} {f.A:>8.2f} {f.B:>8.1f} {f.alpha:>7.4f} {f.beta:>7.4f}")
    print(f"speed-up (loop / batched median): {tl / tb:.1f}x   "
          f"objective difference (batched - loop): {fb.objective - fl.objective:.3g}")
    from record import write_record  # benchmarks/record.py: a dated record under benchmarks/results/
    print("record:", write_record(
        "parametric_speed", {"points": len(df), "fit_median_s": round(tb, 3), "loop_s": round(tl, 2),
                             "loop_scaled": factor > 1, "speedup": round(tl / tb, 1),
                             "objective_gap": fb.objective - fl.objective},
        title=f"parametric fit vs the published loop, {len(df)} Epoch points",
        summary=f"median {tb:.2f} s vs {tl:.1f} s{' (loop scaled)' if factor > 1 else ''} ({tl / tb:.0f}x); "
                f"objective difference {fb.objective - fl.objective:.2g}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--reduce", choices=("sum", "mean"), default="sum")
    ap.add_argument("--loop-starts", type=int, default=None, help="subsample the loop to about this many starts")
    ap.add_argument("--screen", type=int, default=DEFAULT_SCREEN, help="starts refined first by the batched fit")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of the batched fit (median reported)")
    ap.add_argument("--full", action="store_true", help="also time the batched fit with screen=None")
    ap.add_argument("--laws", type=int, default=0, help="run the optimum benchmark on this many random laws instead")
    ap.add_argument("--loop-every", type=int, default=1, help="optimum benchmark: loop over every K-th start (1: all)")
    ap.add_argument("--jobs", type=int, default=1, help="optimum benchmark: worker processes")
    ap.add_argument("--first-seed", type=int, default=0, help="optimum benchmark: seed of the first law")
    ap.add_argument("--quick", action="store_true", help="optimum benchmark: 20 laws, every 15th start")
    ap.add_argument("--out", help="optimum benchmark: CSV of the per-law rows, appended as each law is done; "
                    "laws already in it are not run again (resume)")
    args = ap.parse_args()
    if args.quick:
        args.laws, args.loop_every = args.laws or 20, 15
    if args.laws:
        optimum_benchmark(args.laws, args.loop_every, args.jobs, args.first_seed, Path(args.out) if args.out else None)
    else:
        speed_benchmark(args)


if __name__ == "__main__":
    main()
