"""Local launcher: worker loops that claim a sweep's runs through the registry and train them.

One worker runs in this process (``--workers 1``) or K worker processes share the sweep
(``--workers K``); any number of ``scaling run`` / ``scaling worker`` processes, on any
number of machines sharing the folder, may work on the same sweep at once. Finished runs are
skipped, a run waits until its initialisation run (the text LM) is done, a dead worker's run
is taken over once its lease goes stale, and a failed run is retried up to ``max_attempts``.
"""
from __future__ import annotations

import csv
import math
import subprocess
import sys
import time
import traceback
from pathlib import Path

from scaling import atomic
from scaling.rundir import RESULT_COLUMNS, RunDir
from scaling.spec import RunSpec
from sweeps.registry import Registry, worker_name
from sweeps.schema import Sweep


def is_done(run: RunDir) -> bool:
    return run.status == "done" and run.result() is not None


def work(sweep: Sweep, specs: list[RunSpec], registry: Registry, *, echo=print, poll: float = 0.5,
         sink=None, execute=None) -> dict:
    """Claim and train runs until every run is done or failed; returns this worker's counts
    {'trained', 'skipped', 'failed'} ('skipped' = done before this worker started).
    ``execute(run) -> record`` trains one run (default: trainer.execute.execute, in this process)."""
    if execute is None:
        from trainer.execute import execute

    me = worker_name()
    n = len(specs)
    counts = {"trained": 0, "skipped": sum(registry.is_done(s.run_id) for s in specs), "failed": 0}
    order = {s.run_id: i for i, s in enumerate(specs, 1)}
    while True:
        claimed, waiting = False, False
        for spec in specs:
            st = registry.effective_state(spec)
            if st in ("done", "failed"):
                if st == "failed" and spec.init.startswith("run:") and registry.state(spec.init[4:]) == "failed":
                    _mark_blocked(registry, spec)
                continue
            dep = spec.init[4:] if spec.init.startswith("run:") else None
            if st == "running" or (dep and registry.state(dep) != "done"):
                waiting = True
                continue
            lease = registry.claim(spec, me)
            if lease is None:
                waiting = True
                continue
            claimed = True
            tag = f"[{order[spec.run_id]}/{n}]"
            t0 = time.time()
            try:
                rec = execute(lease.run)
            except Exception as e:  # noqa: BLE001 - recorded in state.json and the lease; the sweep goes on
                (lease.run.path / "error.log").write_text(traceback.format_exc(), encoding="utf-8")
                lease.finish("failed", error=f"{type(e).__name__}: {e}")
                counts["failed"] += 1
                echo(f"{tag} failed  {spec.run_id} (attempt {lease.number}/{registry.max_attempts}): {type(e).__name__}: {e}")
                break
            lease.finish("done")
            counts["trained"] += 1
            if sink is not None:
                sink.log_run(spec, rec, lease.run)
            loss = rec.get("val_loss_speech") if rec["arm"] != "textlm" else rec.get("val_loss_text")
            extra = " ".join(f"{k}={rec[k]:.3f}" for k in ("ssc", "tsc") if isinstance(rec.get(k), float))
            echo(f"{tag} done    {spec.run_id}  tokens={rec['tokens']:,}  loss={loss:.3f} {extra} ({time.time() - t0:.1f} s)")
            break  # rescan from the top: dependencies first
        if not claimed:
            if not waiting:
                return counts
            time.sleep(poll)


def _mark_blocked(registry: Registry, spec: RunSpec) -> None:
    run = registry.run(spec.run_id)
    if run.status != "failed":
        run.create(spec)
        run.set_state("failed", error=f"initialisation run {spec.init[4:]} failed")


def run_sweep(sweep: Sweep, specs: list[RunSpec], *, echo=print, registry: Registry | None = None, sink=None) -> dict:
    """Train every pending run in this process; returns counts {'trained', 'skipped', 'failed'}."""
    registry = registry or Registry(sweep.runs_dir)
    counts = work(sweep, specs, registry, echo=echo, sink=sink)
    if counts["trained"] == 0 and counts["failed"] == 0 and counts["skipped"] == len(specs):
        echo(f"all {len(specs)} runs of sweep '{sweep.name}' are already done; nothing to train")
    write_results(sweep, specs)
    return counts


def run_workers(sweep: Sweep, specs: list[RunSpec], workers: int, registry: Registry, *, echo=print,
                wandb: str | None = None) -> dict:
    """Start ``workers`` worker processes on the sweep, wait for them, write results.csv."""
    before = sum(registry.is_done(s.run_id) for s in specs)
    cmd = [sys.executable, "-m", "scaling.cli", "worker", str(sweep.path),
           "--lease-timeout", str(registry.lease_timeout), "--heartbeat", str(registry.heartbeat),
           "--max-attempts", str(registry.max_attempts)] + (["--wandb", wandb] if wandb else [])
    procs = [subprocess.Popen(cmd) for _ in range(workers)]
    codes = [p.wait() for p in procs]
    write_results(sweep, specs)
    states = [registry.effective_state(s) for s in specs]
    counts = {"trained": states.count("done") - before, "skipped": before, "failed": states.count("failed"),
              "unfinished": len(specs) - states.count("done") - states.count("failed"), "worker_exit_codes": codes}
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

    def writer(p: Path):
        with open(p, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({k: fmt(v) for k, v in r.items()})

    atomic.write_with(sweep.results_csv, writer)
