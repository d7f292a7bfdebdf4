"""Local launcher: runs a sweep's pending runs in this process, in dependency order.

Finished runs (state ``done`` with a result record) are skipped, so rerunning a sweep only
trains what is missing. A failed run is recorded as failed and the sweep goes on.
"""
from __future__ import annotations

import csv
import math
import time

from scaling import atomic
from scaling.rundir import RESULT_COLUMNS, RunDir
from scaling.spec import RunSpec
from sweeps.schema import Sweep


def is_done(run: RunDir) -> bool:
    return run.status == "done" and run.result() is not None


def run_sweep(sweep: Sweep, specs: list[RunSpec], *, echo=print) -> dict:
    """Train every pending run; returns counts {'trained', 'skipped', 'failed'}."""
    import traceback

    from trainer.execute import execute

    counts = {"trained": 0, "skipped": 0, "failed": 0}
    failed_ids: set[str] = set()
    n = len(specs)
    for i, spec in enumerate(specs, 1):
        run = RunDir(sweep.runs_dir / spec.run_id)
        tag = f"[{i}/{n}]"
        if is_done(run):
            counts["skipped"] += 1
            continue
        if spec.init.startswith("run:") and spec.init[4:] in failed_ids:
            run.create(spec)
            run.set_state("failed", error=f"initialisation run {spec.init[4:]} failed")
            counts["failed"] += 1
            failed_ids.add(spec.run_id)
            echo(f"{tag} failed  {spec.run_id}: its initialisation run failed")
            continue
        run.create(spec)
        t0 = time.time()
        try:
            rec = execute(run)
        except Exception as e:  # noqa: BLE001 - recorded in state.json, the sweep goes on
            counts["failed"] += 1
            failed_ids.add(spec.run_id)
            echo(f"{tag} failed  {spec.run_id}: {type(e).__name__}: {e}")
            (run.path / "error.log").write_text(traceback.format_exc(), encoding="utf-8")
            continue
        counts["trained"] += 1
        loss = rec.get("val_loss_speech") if rec["arm"] != "textlm" else rec.get("val_loss_text")
        extra = " ".join(f"{k}={rec[k]:.3f}" for k in ("ssc", "tsc") if isinstance(rec.get(k), float))
        echo(f"{tag} done    {spec.run_id}  tokens={rec['tokens']:,}  loss={loss:.3f} {extra} ({time.time() - t0:.1f} s)")
    if counts["trained"] == 0 and counts["failed"] == 0:
        echo(f"all {n} runs of sweep '{sweep.name}' are already done; nothing to train")
    write_results(sweep, specs)
    return counts


def collect_results(sweep: Sweep, specs: list[RunSpec]) -> list[dict]:
    rows = []
    for spec in specs:
        run = RunDir(sweep.runs_dir / spec.run_id)
        rec = run.result() if is_done(run) else None
        if rec is None:
            rec = {"run_id": spec.run_id, "arm": spec.arm, "model": spec.model, "budget": spec.budget,
                   "tokens": spec.tokens, "status": run.status}
        rows.append({c: rec.get(c) for c in RESULT_COLUMNS})
    return rows


def write_results(sweep: Sweep, specs: list[RunSpec]) -> None:
    rows = collect_results(sweep, specs)

    def fmt(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return repr(v) if isinstance(v, float) else v

    def writer(p):
        with open(p, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({k: fmt(v) for k, v in r.items()})

    atomic.write_with(sweep.results_csv, writer)
