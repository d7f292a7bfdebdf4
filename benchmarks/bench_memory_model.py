"""`scaling memory`'s estimate against the peaks measured on one H200 (tests/data/gpu_h200).

    PYTHONPATH=$PWD python benchmarks/bench_memory_model.py [FOLDER]

One line per bench record: measured peak (torch.cuda.max_memory_allocated), the estimate for that
configuration with the current code, the error, the moment of the step the estimate peaks at, the
estimate the record was written with, and why a row is not modelled. Reads JSON only (no GPU, no torch).
"""
from __future__ import annotations

import sys
from pathlib import Path

from trainer.memory_records import UNMODELLED, compare


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "tests" / "data" / "gpu_h200"
    rows = compare(folder)
    print(f"{'file':<20} {'variant':<18} {'model':<27} {'mb':>2} {'prec':<8} {'fsdp':<5} {'measured':>8} "
          f"{'estimate':>8} {'error':>7}  {'peak at':<16} {'recorded':>8}  not modelled")
    for r in rows:
        print(f"{r['file']:<20} {r['variant']:<18} {r['model']:<27} {r['micro_batch']:>2} {r['precision']:<8} "
              f"{r['fsdp']!s:<5} {r['measured_gib']:8.2f} {r['estimated_gib']:8.2f} {100 * r['error']:+6.1f}%  "
              f"{r['peak_at']:<16} {r['recorded_estimate_gib']:8.2f}  {r['unmodelled'] or ''}")
    modelled = [abs(r["error"]) for r in rows if not r["unmodelled"]]
    if modelled:
        print(f"modelled rows: {len(modelled)}, largest |error| {100 * max(modelled):.1f}%, "
              f"mean |error| {100 * sum(modelled) / len(modelled):.1f}% (GiB; the estimate without allocator overhead)")
    for key in sorted({k for r in rows if r["unmodelled"] for k in r["unmodelled"].split("+")}):
        print(f"not modelled, {key}: {UNMODELLED[key]}")
    if modelled:
        from record import write_record  # benchmarks/record.py: a dated record under benchmarks/results/
        print("record:", write_record(
            "memory_model", {"rows": len(modelled), "max_abs_error": round(max(modelled), 4),
                             "mean_abs_error": round(sum(modelled) / len(modelled), 4), "folder": folder.name},
            title=f"`scaling memory` against {len(modelled)} measured GPU peaks",
            summary=f"within {100 * max(modelled):.1f}% (mean {100 * sum(modelled) / len(modelled):.1f}%)"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
