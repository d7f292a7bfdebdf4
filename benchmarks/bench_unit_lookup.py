"""Unit lookup by stem: index N files (default 40,000) and look every one up by its bare stem.
Prints the figures; target (issue 15): 40k files indexed and looked up in < 2 s.

    PYTHONPATH=$PWD python benchmarks/bench_unit_lookup.py [--files 40000]
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=40_000)
    args = ap.parse_args()
    from trainer.eval.formats import UnitIndex

    names = {f"data/speaker{i % 40}/chapter{i % 7}/utt{i:06d}.wav": [i % 500, (i + 1) % 500] for i in range(args.files)}
    t0 = time.perf_counter()
    index = UnitIndex(names)
    t1 = time.perf_counter()
    for i in range(args.files):
        index.get(f"utt{i:06d}", item=str(i))
    t2 = time.perf_counter()
    print(f"{args.files} files: index {t1 - t0:.3f} s, {args.files} lookups by stem {t2 - t1:.3f} s, "
          f"total {t2 - t0:.3f} s")
    from record import write_record  # benchmarks/record.py: a dated record under benchmarks/results/
    print("record:", write_record("unit_lookup", {"files": args.files, "index_s": round(t1 - t0, 3),
                                                  "lookups_s": round(t2 - t1, 3), "total_s": round(t2 - t0, 3)},
                                  title=f"unit lookup by stem, {args.files:,} files",
                                  summary=f"index {t1 - t0:.2f} s + lookups {t2 - t1:.2f} s = {t2 - t0:.2f} s"))


if __name__ == "__main__":
    main()
