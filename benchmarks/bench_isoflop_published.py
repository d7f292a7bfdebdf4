"""Approach 2 estimators against a published isoFLOP study: Porian et al. 2024, "Resolving
Discrepancies in Compute-Optimal Scaling of Language Models" (github formll/resolving-scaling-law-
discrepancies). Their grids sample 5M-900M parameters at every budget, losses climbing to 6-10 on
the large side.

Data (kept outside this repository): the ``data/summary_df*.pickle.xz`` files of their repository
(pandas pickles: per setup, each budget's sizes and losses, ``data.orig_n`` / ``orig_loss``, the per-
size minimum over their runs, and their own fit with its bootstrap, ``fit_results``). Their estimate
of a is ``fit_results["bs_median_weighted"]["n_exponent"]`` and its 95% interval the 2.5/97.5%
percentiles of ``fit_results["bootstrap_weighted"]`` (their paper_tables.py).

    python benchmarks/bench_isoflop_published.py /work/ext_data/porian [--bootstrap 200]

prints one row per setup: the published a and interval, then each estimator's a and 95% interval
(``*``: a outside the published interval), and a summary per estimator: setups inside, mean |a -
published a|, median interval width / published width. Seed noise of the interp estimator: theirs
(0.002 RefinedWeb, 0.01 OpenWebText2, from their configs.py) and, in a second column, estimated from
the data (``noise`` None); ``auto`` is the default estimator (the parabola, or interp with the noise
estimated when the parabola's curvature check flags at least 2 budgets).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from analysis.fits.isoflop import fit_isoflop  # noqa: E402

#: Their seed noise (configs.py: RW_SEED_CONFIG / OWT2_SEED_CONFIG noise_low; the loss never reaches
#: their high-noise threshold), in loss units.
SEED_NOISE = {"rw": 0.002, "owt2": 0.01}
FILES = ("summary_df", "summary_df_owt2", "summary_df_att", "summary_df_kaplan_tuned_hparams")


def load(path: Path):
    """[(label, dataset, C, N, L, published a, [lo, hi])] from one pickle or a folder of them."""
    import pandas as pd

    files = [path] if path.is_file() else [path / f"{f}.pickle.xz" for f in FILES if (path / f"{f}.pickle.xz").exists()]
    if not files:
        raise SystemExit(f"no summary_df*.pickle.xz under {path}")
    out = []
    for f in files:
        for _, r in pd.read_pickle(f).iterrows():
            C, N, L = [], [], []
            for _, b in r["data"].iterrows():
                if not isinstance(b["orig_n"], (pd.Series, np.ndarray, list)):
                    continue
                n, loss = np.asarray(b["orig_n"], dtype=float), np.asarray(b["orig_loss"], dtype=float)
                C += [float(b["flops"])] * n.size
                N += n.tolist()
                L += loss.tolist()
            fr = r["fit_results"]
            boot = [d["n_exponent"] for d in fr["bootstrap_weighted"] if "n_exponent" in d]
            label = "/".join(str(r[k]) for k in ("dataset", "hparams", "warmup", "decay", "param_count", "val"))
            out.append((label, str(r["dataset"]), np.array(C), np.array(N), np.array(L),
                        float(fr["bs_median_weighted"]["n_exponent"]), [float(v) for v in np.quantile(boot, [.025, .975])]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="a summary_df*.pickle.xz of Porian et al. or the folder holding them")
    ap.add_argument("--bootstrap", type=int, default=200, help="resamples (noise draws for interp) per fit (default 200)")
    ap.add_argument("--window", type=float, default=2.0, help="window factor of the window estimator (default 2)")
    ap.add_argument("--min-sizes", type=int, default=3, help="fewest sizes in a window (default 3)")
    ap.add_argument("--no-powersum", action="store_true", help="skip the power-sum fits (the slowest)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    est = [("parabola", {}), ("window", {"window": args.window, "min_sizes": args.min_sizes}),
           ("interp", None), ("interp~", {"noise": None}), ("auto", {})] + ([] if args.no_powersum else [("powersum", {})])
    stats = {name: {"inside": 0, "err": [], "width": []} for name, _ in est}
    head = f"{'setup':<40} {'published':>21} " + " ".join(f"{n:>23}" for n, _ in est)
    print(head + "\n" + "-" * len(head))
    t0 = time.time()
    rows = load(args.data)
    for label, ds, C, N, L, a_pub, ci_pub in rows:
        cells = []
        for name, kw in est:
            if name == "interp":
                kw = {"noise": SEED_NOISE.get(ds, 0.002)}
            method = name.rstrip("~")
            try:
                fit = fit_isoflop(C, N, C / (6 * N), L, method=method, bootstrap=args.bootstrap, seed=0, **kw)
            except Exception as exc:  # noqa: BLE001 - a failed estimator is a cell, not the end of the table
                cells.append(f"{'failed: ' + str(exc)[:14]:>23}")
                continue
            lo, hi = fit.ci.get("a", [np.nan, np.nan])
            inside = ci_pub[0] <= fit.a <= ci_pub[1]
            st = stats[name]
            st["inside"] += inside
            st["err"].append(abs(fit.a - a_pub))
            st["width"].append((hi - lo) / (ci_pub[1] - ci_pub[0]))
            cells.append(f"{fit.a:>6.3f}{' ' if inside else '*'}[{lo:.3f},{hi:.3f}]{'w' if fit.warnings else ' '}")
        print(f"{label:<40} {a_pub:>6.3f} [{ci_pub[0]:.3f},{ci_pub[1]:.3f}] " + " ".join(cells))
    print(f"\n{len(rows)} setups; * = a outside the published 95% interval; w = curvature warning on some budget; "
          f"interp: their seed noise, interp~: noise estimated from the data; auto: the default "
          f"estimator; {time.time() - t0:.0f} s")
    print(f"{'estimator':<10} {'inside':>7} {'mean |a - published|':>21} {'median width / published':>25}")
    for name, st in stats.items():
        if st["err"]:
            print(f"{name:<10} {st['inside']:>3}/{len(st['err']):<3} {np.mean(st['err']):>21.4f} "
                  f"{np.nanmedian(st['width']):>25.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
