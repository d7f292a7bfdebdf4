"""Local launcher: worker loops that claim a sweep's runs through the registry and train them.

One worker runs in this process (``--workers 1``) or K worker processes share the sweep
(``--workers K``); any number of ``scaling run`` / ``scaling worker`` processes, on any
number of machines sharing the folder, may work on the same sweep at once. Finished runs are
skipped, a run waits until its initialisation run (the text LM) is done, a dead worker's run
is taken over once its lease goes stale, and a failed run is retried up to ``max_attempts``.
"""
from __future__ import annotations

import contextlib
import csv
import math
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from scaling import atomic
from scaling.errors import ConfigError, Stopped
from scaling.initref import InitRef
from scaling.points import ITEM_COUNT_COLUMNS, columns, point_rows
from scaling.rundir import RunDir
from scaling.spec import RunSpec
from sweeps.registry import Registry, worker_name
from sweeps.schema import Sweep


def _dep(spec: RunSpec) -> str | None:
    """The run this run starts from (its text LM), if any."""
    return InitRef.parse(spec.init).run_id


def is_done(run: RunDir) -> bool:
    return run.status == "done" and run.result() is not None


def resource_failed(run) -> bool:
    """Whether the run's own record says the machine stopped it (``resource_error: true``: a subprocess,
    accelerate or SLURM attempt reports it there); a record that cannot be read says nothing."""
    try:
        return bool(run.state().get("resource_error"))
    except (ConfigError, OSError):
        return False


def _finish_quietly(lease, outcome: str, error: str) -> None:
    """Record how an attempt ended, where the disk may be what stopped it (then the lease keeps its old body)."""
    try:
        lease.finish(outcome, error=error)
    except OSError:
        pass


def work(sweep: Sweep, specs: list[RunSpec], registry: Registry, *, echo=print, poll: float = 0.5,
         wandb: str | None = None, execute=None) -> dict:
    """Claim and train runs until every run is done or failed; returns this worker's counts
    {'trained', 'skipped', 'failed'} ('skipped' = done before this worker started).
    ``execute(run) -> record`` trains one run (default: trainer.execute.execute, in this process).
    ``wandb``: a mode; each claimed run gets its tracking.json, so it logs live from rank 0."""
    if execute is None:
        from trainer.execute import execute

    me = worker_name()
    n = len(specs)
    counts = {"trained": 0, "skipped": sum(registry.is_done(s.run_id) for s in specs), "failed": 0}
    order = {s.run_id: i for i, s in enumerate(specs, 1)}
    said: set[str] = set()  # the waiting notes already printed (one line per dead-looking lease)
    while True:
        claimed, waiting = False, False
        for spec in specs:
            st = registry.effective_state(spec)
            dep = _dep(spec)
            if st in ("done", "failed"):
                if st == "failed" and dep and registry.state(dep) == "failed":
                    _mark_blocked(registry, spec)
                continue
            if st == "running" or (dep and registry.state(dep) != "done"):
                waiting = True
                _say_why_waiting(registry, spec.run_id if st == "running" else dep, said, echo)
                continue
            lease = registry.claim(spec, me)
            if lease is None:
                waiting = True
                continue
            claimed = True
            if wandb:
                from sweeps.tracking import tracking_for

                tracking_for(sweep, spec, wandb).write(lease.run.path)
            tag = f"[{order[spec.run_id]}/{n}]"
            t0 = time.time()
            try:
                rec = execute(lease.run)
            except (Stopped, KeyboardInterrupt):  # asked to stop: not an attempt, and a rerun resumes at once
                lease.finish("released")
                echo(f"{tag} stopped {spec.run_id}: lease released; a rerun resumes it from its last checkpoint")
                raise
            except Exception as e:  # noqa: BLE001 - recorded in state.json and the lease; the sweep goes on
                if getattr(e, "resource_error", False) or resource_failed(lease.run):
                    # the machine, not the run (a full disk, no permission): not an attempt, and every other
                    # run would meet it too, so this worker stops with the file and the reason (exit 2)
                    _finish_quietly(lease, "resource", f"{type(e).__name__}: {e}")
                    echo(f"{tag} stopped {spec.run_id}: {e}")
                    raise
                try:
                    (lease.run.path / "error.log").write_text(traceback.format_exc(), encoding="utf-8")
                except OSError:  # the traceback is in state.json and the lease too
                    pass
                lease.finish("failed", error=f"{type(e).__name__}: {e}")
                counts["failed"] += 1
                echo(f"{tag} failed  {spec.run_id} (attempt {registry.attempts(spec.run_id)}/{registry.max_attempts}): "
                     f"{type(e).__name__}: {e}")
                break
            lease.finish("done")
            counts["trained"] += 1
            loss = rec.get("val_loss_speech") if rec["arm"] != "textlm" else rec.get("val_loss_text")
            extra = " ".join(f"{k}={rec[k]:.3f}" for k in spec.benchmarks[:3] if isinstance(rec.get(k), float))
            echo(f"{tag} done    {spec.run_id}  tokens={rec['tokens']:,}  loss={loss:.3f} {extra} ({time.time() - t0:.1f} s)")
            break  # rescan from the top: dependencies first
        if not claimed:
            if not waiting:
                return counts
            time.sleep(poll)


def _say_why_waiting(registry: Registry, run_id: str | None, said: set[str], echo) -> None:
    """Print, once per lease, that this worker waits for a lease whose holder looks dead (a rerun after a
    kill -9 waited out --lease-timeout without a word)."""
    if not run_id:
        return
    found = registry.waiting_note(run_id)
    if found is not None and str(found[0]) not in said:
        said.add(str(found[0]))
        echo(found[1])


def _mark_blocked(registry: Registry, spec: RunSpec) -> None:
    run = registry.run(spec.run_id)
    if run.status != "failed":
        run.create(spec)
        run.set_state("failed", error=f"initialisation run {_dep(spec)} failed")


def check_output(sweep: Sweep) -> None:
    """The output folder is writable (a clear error before any run starts, not a traceback later)."""
    probe = sweep.runs_dir / f".write-test-{os.getpid()}"
    try:
        sweep.runs_dir.mkdir(parents=True, exist_ok=True)
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write there ({e.strerror})", source=str(sweep.path), field="output",
                          value=str(sweep.output)) from None


def outcome(sweep: Sweep, specs: list[RunSpec], registry: Registry, before: int, *, echo=print) -> dict:
    """The sweep's counts as the registry sees them after the launcher returned (whoever trained or
    failed a run), results.csv written, and one line per failed run saying why."""
    states = {s.run_id: registry.effective_state(s) for s in specs}
    write_results(sweep, specs, registry)
    failed = [s for s in specs if states[s.run_id] == "failed"]
    for s in failed:
        dep = _dep(s)
        why = f"initialisation run {dep} failed" if dep and registry.state(dep) == "failed" else registry.failure(s.run_id)
        echo(f"FAILED {s.run_id}: {why} (see {registry.run(s.run_id).path})")
    done = list(states.values()).count("done")
    return {"trained": done - before, "skipped": before, "failed": len(failed),
            "unfinished": len(specs) - done - len(failed), "failed_runs": [s.run_id for s in failed]}


def run_sweep(sweep: Sweep, specs: list[RunSpec], *, echo=print, registry: Registry | None = None,
              wandb: str | None = None, execute=None) -> dict:
    """Train every pending run in this process; returns counts {'trained', 'skipped', 'failed', 'unfinished'}."""
    registry = registry or Registry(sweep.runs_dir)
    before = sum(registry.is_done(s.run_id) for s in specs)
    try:
        with stop_on_signals():
            work(sweep, specs, registry, echo=echo, wandb=wandb, execute=execute)
    except Stopped as stop:
        counts = outcome(sweep, specs, registry, before, echo=echo)
        counts["stopped_by"] = stop.name
        echo(f"stopped by {stop.name}; `scaling run` again resumes")
        return counts
    if before == len(specs):
        echo(f"all {len(specs)} runs of sweep '{sweep.name}' are already done; nothing to train")
    return outcome(sweep, specs, registry, before, echo=echo)


STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


@contextlib.contextmanager
def stop_on_signals():
    """Turn SIGTERM and SIGHUP into :class:`Stopped` inside the block (main thread only)."""
    def stop(signum, _frame):
        raise Stopped(signum)

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else the machine's)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def auto_workers(cores: int | None = None) -> int:
    """``--workers auto`` on a CPU host: one single-threaded worker per usable core (toy and micro models are
    too small for intra-op threads to pay, and 2-thread processes sharing loaded cores ran 5-10x slower),
    at most 8 (a demo has about a dozen runs per arm; more would only idle)."""
    return max(1, min(cores or usable_cores(), 8))


def gpu_count() -> int:
    """GPUs this process may use (CUDA_VISIBLE_DEVICES when set, else what torch sees)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    import torch

    return torch.cuda.device_count()


def worker_envs(workers: int, *, cores: int | None = None, gpus: int | None = None, gpus_per_run: int = 1) -> list[dict]:
    """Environment overrides of each of ``workers`` processes sharing this machine: on a GPU host,
    ``gpus_per_run`` devices each (disjoint, so no run sees a device another worker holds); on a
    CPU host, cores // workers threads each for torch and BLAS (K workers x all cores would
    oversubscribe the CPU)."""
    cores = cores or usable_cores()
    gpus = gpu_count() if gpus is None else gpus
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()] or \
        [str(i) for i in range(gpus)]
    if gpus:
        if workers * gpus_per_run > gpus:
            raise ConfigError(f"{workers} workers x {gpus_per_run} GPUs per run need {workers * gpus_per_run} GPUs; "
                              f"this machine has {gpus}", field="--workers", value=workers)
        per = [visible[i * gpus_per_run:(i + 1) * gpus_per_run] for i in range(workers)]
        threads = max(1, cores // workers)
        return [{"CUDA_VISIBLE_DEVICES": ",".join(p), **{v: str(threads) for v in THREAD_VARS}} for p in per]
    threads = max(1, cores // workers)
    return [{"CUDA_VISIBLE_DEVICES": "", **{v: str(threads) for v in THREAD_VARS}} for _ in range(workers)]


def run_workers(sweep: Sweep, specs: list[RunSpec], workers: int, registry: Registry, *, echo=print,
                wandb: str | None = None, gpus_per_run: int = 1) -> dict:
    """Start ``workers`` worker processes on the sweep (each with its share of the machine), wait
    for them, write results.csv."""
    before = sum(registry.is_done(s.run_id) for s in specs)
    cmd = [sys.executable, "-m", "scaling.cli", "worker", str(sweep.path),
           "--lease-timeout", str(registry.lease_timeout), "--heartbeat", str(registry.heartbeat),
           "--max-attempts", str(registry.max_attempts), "--gpus-per-run", str(gpus_per_run)] + \
        (["--wandb", wandb] if wandb else [])
    envs = worker_envs(workers, gpus_per_run=gpus_per_run)
    procs = [subprocess.Popen(cmd, env={**os.environ, **env}) for env in envs]
    with _workers_stop_with_this_process(procs) as stopped:
        codes = [p.wait() for p in procs]
    counts = outcome(sweep, specs, registry, before, echo=echo)
    counts["worker_exit_codes"] = codes
    if stopped:
        counts["stopped_by"] = stopped[0]
        echo(f"stopped by {stopped[0]}: the workers were stopped with it; `scaling run` again resumes their runs")
    return counts


@contextlib.contextmanager
def _workers_stop_with_this_process(procs):
    """Forward SIGTERM and SIGHUP (a scheduler's time limit, `kill`, a closed terminal) to the workers,
    and stop any worker still running when the wait ends by an exception (Ctrl-C): before, killing
    `scaling run` left its workers training on as orphans. Yields the names of the signals received."""
    stopped: list[str] = []

    def forward(signum, _frame):
        stopped.append(signal.Signals(signum).name)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        yield stopped
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)
        alive = [p for p in procs if p.poll() is None]
        for p in alive:
            p.terminate()
        for p in alive:
            p.wait()


def collect_results(sweep: Sweep, specs: list[RunSpec], registry: Registry | None = None) -> list[dict]:
    """One row per point (scaling.points.point_rows): a finished run's cooldown branches, then its
    final state; one row for a run not done, whose status is the registry's (state.json may still
    say 'running' after its worker was killed)."""
    registry = registry or Registry(sweep.runs_dir)
    rows = []
    for spec in specs:
        run = registry.run(spec.run_id)
        rec = run.result() if is_done(run) else None
        if rec is None:
            rec = {"run_id": spec.run_id, "arm": spec.arm, "model": spec.model, "budget": spec.budget,
                   "tokens": spec.tokens, "status": registry.effective_state(spec)}
        rows.extend(point_rows(rec))
    return rows


def write_results(sweep: Sweep, specs: list[RunSpec], registry: Registry | None = None) -> None:
    rows = collect_results(sweep, specs, registry)
    # the item counts any point recorded, in the registry's order, after the fixed columns
    fields = columns([c for c in ITEM_COUNT_COLUMNS if any(c in r for r in rows)])

    def fmt(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return repr(v) if isinstance(v, float) else v

    def writer(p: Path):
        with open(p, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            for r in rows:
                w.writerow({k: fmt(r.get(k)) for k in fields})

    atomic.write_with(sweep.results_csv, writer)
