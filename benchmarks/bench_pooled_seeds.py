"""What would two seeds of every run buy the demo? Finished demos at different seeds, fitted in pairs.

Usage: python benchmarks/bench_pooled_seeds.py DEMO_DIR DEMO_DIR [DEMO_DIR ...] [--top-budget C] [--record]

Each pair of finished demos (``scaling demo --seed S --out DIR``; e.g. the folders of
``bench_demo_seeds.py``) is one study with two runs of every grid point: their results.csv rows (speech
arms) pooled, fitted as ``scaling report`` fits the demo (Huber delta ``scaling.demo.REPORT_HUBER_DELTA``,
400 pairs-bootstrap resamples) and judged as ``bench_demo_seeds.py`` judges a demo (CAUTION verdict,
held-out largest budget within 3%, interior isoFLOP minima). A pooled pair is a pessimistic stand-in for a
sweep with ``replicates: 2``: its two runs of a point also differ in their synthetic corpus (each demo seed
draws its own), where replicates share one. ``--top-budget`` keeps only the points at or below a budget (a
cheaper grid: with wsd, a branch is the run that budget would have trained). Each demo alone is judged too.
"""
from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_demo_seeds import judge  # noqa: E402
from scaling.demo import REPORT_HUBER_DELTA  # noqa: E402


def pooled(folders: list[Path], top: float | None, work: Path) -> dict:
    rows = []
    for f in folders:
        df = pd.read_csv(f / "results.csv")
        df = df[df["arm"] != "textlm"]
        if top is not None:
            df = df[df["budget"] <= top * (1 + 1e-6)]
        rows.append(df)
    work.mkdir(parents=True, exist_ok=True)
    pd.concat(rows).to_csv(work / "results.csv", index=False)
    subprocess.run([sys.executable, "-m", "scaling", "fit", str(work / "results.csv"), "--huber-delta",
                    str(REPORT_HUBER_DELTA), "--bootstrap", "400", "--json", str(work / "fits.json")],
                   check=True, stdout=subprocess.DEVNULL)
    return judge(work)


def line(name: str, verdicts: dict) -> str:
    parts = []
    for arm, v in verdicts.items():
        if "intervals" not in v:
            parts.append(f"{arm}: {v.get('error', 'no fit')}")
            continue
        iv = v["intervals"]
        parts.append(f"{arm} {'pass' if v['passed'] else 'FLAGGED'} (alpha/beta/a "
                     + "/".join(f"{iv[k]['ratio']:.2f}x" for k in ("alpha", "beta", "a"))
                     + f" the limit, held-out {100 * v['held_out_error']:.2f}%, vertices {v['vertices_inside']})")
    return f"{name}: " + "; ".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("demos", nargs="+", type=Path, help="finished demo folders (results.csv), one per seed")
    ap.add_argument("--top-budget", type=float, default=None, help="keep only points at or below this budget")
    ap.add_argument("--record", action="store_true", help="write a record under benchmarks/results/")
    args = ap.parse_args(argv)
    if len(args.demos) < 2:
        ap.error("needs at least two demo folders")
    results = []
    with tempfile.TemporaryDirectory(prefix="pooled-") as tmp:
        groups = [(d,) for d in args.demos] + list(itertools.combinations(args.demos, 2))
        for k, group in enumerate(groups):
            name = " + ".join(d.name for d in group)
            verdicts = pooled(list(group), args.top_budget, Path(tmp) / str(k))
            print(line(name, verdicts), flush=True)
            results.append({"demos": [str(d) for d in group], "arms": verdicts,
                            "passed": all(v.get("passed") for v in verdicts.values())})
    pairs = [r for r in results if len(r["demos"]) == 2]
    singles = [r for r in results if len(r["demos"]) == 1]
    summary = (f"{sum(r['passed'] for r in pairs)} of {len(pairs)} pooled pairs pass in both arms; "
               f"{sum(r['passed'] for r in singles)} of {len(singles)} single demos")
    print(summary)
    if args.record:
        from benchmarks.record import write_record

        write_record("pooled_seeds", {"top_budget": args.top_budget, "huber_delta": REPORT_HUBER_DELTA,
                                      "results": results}, title="the default demo with two seeds per run (pooled demos)",
                     summary=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
