"""SLURM launcher: a submitit job array of worker loops on the sweep's registry.

Every array task runs the same worker loop as `scaling worker`, so tasks never need to be told
which run is theirs: they claim runs through the lease files on the shared folder. On
preemption or timeout submitit calls ``checkpoint()``, which marks the task's current attempt as
preempted (the run becomes claimable at once instead of after the lease timeout) and requeues the
task; the requeued worker, or any other, picks the run up again.
"""
from __future__ import annotations

from pathlib import Path

from sweeps.registry import Registry
from sweeps.schema import Sweep


class SweepWorker:
    """A picklable worker loop (one array task)."""

    def __init__(self, sweep_path: str, lease_timeout: float, heartbeat: float, max_attempts: int):
        self.sweep_path, self.lease_timeout, self.heartbeat, self.max_attempts = (
            sweep_path, lease_timeout, heartbeat, max_attempts)

    def _registry(self, sweep: Sweep) -> Registry:
        return Registry(sweep.runs_dir, lease_timeout=self.lease_timeout, heartbeat=self.heartbeat,
                        max_attempts=self.max_attempts)

    def __call__(self) -> dict:
        from sweeps.grid import resolve
        from sweeps.local import work
        from sweeps.schema import load_sweep

        sweep = load_sweep(self.sweep_path)
        return work(sweep, resolve(sweep), self._registry(sweep))

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on preemption/timeout: release our live leases, then requeue."""
        import os

        import submitit

        from sweeps.grid import resolve
        from sweeps.schema import load_sweep

        sweep = load_sweep(self.sweep_path)
        reg = self._registry(sweep)
        for spec in resolve(sweep):
            for _, path in reg.leases(spec.run_id)[-1:]:
                body = _body(path)
                if body.get("pid") == os.getpid() and not body.get("outcome"):
                    from scaling import atomic

                    atomic.write_json(path, {**body, "outcome": "preempted"})
        return submitit.helpers.DelayedSubmission(SweepWorker(*self._args()))

    def _args(self):
        return self.sweep_path, self.lease_timeout, self.heartbeat, self.max_attempts


def _body(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def make_executor(sweep: Sweep, kind: str, workers: int, *, timeout_min: int = 24 * 60, **slurm):
    import submitit

    folder = sweep.output / "slurm" / "%j"
    if kind == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=timeout_min)
    else:
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        ex.update_parameters(timeout_min=timeout_min, slurm_array_parallelism=workers, **slurm)
    return ex


def run_slurm(sweep: Sweep, specs, registry: Registry, *, executor: str = "slurm", workers: int = 1,
              wait: bool = True, echo=print) -> dict:
    """Submit ``workers`` array tasks; with ``wait``, block until they end and write results.csv."""
    from sweeps.local import write_results

    before = sum(registry.is_done(s.run_id) for s in specs)
    ex = make_executor(sweep, executor, workers)
    w = SweepWorker(str(sweep.path), registry.lease_timeout, registry.heartbeat, registry.max_attempts)
    jobs = ex.submit_array([w] * workers) if hasattr(ex, "submit_array") else [ex.submit(w) for _ in range(workers)]
    echo(f"submitted {len(jobs)} array tasks: {', '.join(str(j.job_id) for j in jobs)} (logs in {sweep.output / 'slurm'})")
    if not wait:
        return {"trained": 0, "skipped": before, "failed": 0, "jobs": [j.job_id for j in jobs]}
    per_task = [j.result() for j in jobs]
    write_results(sweep, specs)
    states = [registry.effective_state(s) for s in specs]
    return {"trained": states.count("done") - before, "skipped": before, "failed": states.count("failed"),
            "unfinished": len(specs) - states.count("done") - states.count("failed"), "tasks": per_task}
