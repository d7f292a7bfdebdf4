"""SLURM launcher: one submitit job per run, with that run's resources from the plan.

A job asks for ``resources`` of its model (sweep file: nodes, GPUs per node, CPUs, memory, time,
partition, account, qos, constraint) and runs one task per node. Every task starts ``torchrun``
(``python -m torch.distributed.run``) with one process per GPU: on one node ``--standalone``,
on several the c10d rendezvous at the job's first host (from ``SLURM_JOB_NODELIST``, through
submitit's job environment) with the job id as rendezvous id, so the nodes find each other with
nothing else shared. Each process runs ``scaling train runs/<id>``; the trainer shards with FSDP2
and rank 0 records.

The registry stays the source of attempts: node 0 claims the run's lease before torchrun and
finishes it with the outcome. A run that starts from a text LM of the sweep is submitted with
``--dependency=afterok:<its job>`` and also waits for it in the job (the local executor has no
dependencies). On preemption or timeout submitit calls ``checkpoint()``: the lease is marked
``preempted`` (not an attempt, claimable at once) and the job requeued; training resumes from the
run's last checkpoint. ``--dry-run`` prints each job's sbatch script (as submitit would write
it) and its torchrun command instead of submitting.

Nothing a sweep file gives reaches the script unquoted: the sweep's name and its model and arm names are
plain names (scaling.spec.check_name), every other string (partition, account, qos, constraint, the
output folder) is printable text on one line (scaling.spec.check_text, at plan time and again here), and
submitit writes each ``#SBATCH`` value and the command's paths through ``shlex.quote``. A newline is the
one thing quoting cannot make safe in a ``#SBATCH`` line (the rest of a comment line is never run, but the
next line is), which is why it is refused.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from scaling.errors import ConfigError
from scaling.initref import InitRef
from scaling.spec import check_text
from sweeps.registry import Registry, worker_name
from sweeps.schema import Resources, Sweep

RDZV_PORT_BASE = 29500


def rdzv_port(job_id: str) -> int:
    """A port per job, so two jobs sharing a node do not collide."""
    digits = "".join(c for c in str(job_id) if c.isdigit())
    return RDZV_PORT_BASE + (int(digits) % 20000 if digits else 0)


def torchrun_command(run_path: str | Path, res: Resources, *, master: str, job_id: str) -> list[str]:
    """The command each node's task runs (an argument list, never a shell string)."""
    nproc = max(1, res.gpus_per_node)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(res.nodes), "--nproc-per-node", str(nproc)]
    if res.nodes == 1:
        cmd += ["--standalone"]
    else:
        cmd += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"{master}:{rdzv_port(job_id)}", "--rdzv-id", str(job_id)]
    return cmd + ["-m", "scaling.cli", "train", str(run_path)]


SBATCH_TEXT = ("partition", "account", "qos", "constraint")


def sbatch_parameters(sweep: Sweep, spec, res: Resources, *, dependency: str | None = None) -> dict:
    """The job's sbatch parameters, in submitit's SlurmExecutor names (which quotes each value). Every text
    value is checked once more here: Resources may be built in code, not only by load_sweep."""
    src = str(sweep.path)
    p = {"job_name": check_text(f"{sweep.name}-{spec.run_id}"[:120], source=src, field="name"), "nodes": int(res.nodes),
         "ntasks_per_node": 1, "time": int(res.time_min), "stderr_to_stdout": True}
    if res.gpus_per_node:
        p["gpus_per_node"] = int(res.gpus_per_node)
    if res.cpus_per_task is not None:
        p["cpus_per_task"] = int(res.cpus_per_task)
    for k in SBATCH_TEXT:
        if getattr(res, k) is not None:
            p[k] = check_text(getattr(res, k), source=src, field=f"resources.{spec.model}.{k}")
    if res.mem_gb is not None:
        p["mem"] = f"{int(res.mem_gb)}GB"
    if dependency:
        p["dependency"] = check_text(dependency, source=src, field="dependency")
    return p


#: The placeholders of a dry run's torchrun line, left for the job's shell to expand.
PLACEHOLDERS = ("$MASTER_ADDR", "$SLURM_JOB_ID")


def shell_line(cmd: list[str]) -> str:
    """An argument list as one shell line: every argument quoted (shlex.quote), except a dry run's own
    placeholders ($MASTER_ADDR, $SLURM_JOB_ID, $MASTER_ADDR:<port>), which the job's shell expands."""
    def keep(a: str) -> bool:
        return a in PLACEHOLDERS or (a.startswith("$MASTER_ADDR:") and a.split(":", 1)[1].isdigit())

    return " ".join(a if keep(a) else shlex.quote(a) for a in cmd)


def _thread_env(res: Resources) -> dict:
    if not res.cpus_per_task:
        return {}
    n = str(max(1, res.cpus_per_task // max(1, res.gpus_per_node)))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}


class RunJob:
    """One run as a submitit job (picklable): node 0 claims the lease, every node runs torchrun."""

    def __init__(self, sweep_path: str, run_id: str, res: dict, lease_timeout: float, heartbeat: float,
                 max_attempts: int, wandb: str | None = None, poll: float = 5.0):
        self.sweep_path, self.run_id, self.res = sweep_path, run_id, res
        self.lease_timeout, self.heartbeat, self.max_attempts = lease_timeout, heartbeat, max_attempts
        self.wandb, self.poll = wandb, poll

    def _args(self):
        return (self.sweep_path, self.run_id, self.res, self.lease_timeout, self.heartbeat, self.max_attempts,
                self.wandb, self.poll)

    def _load(self):
        from sweeps.grid import resolve
        from sweeps.schema import load_sweep

        sweep = load_sweep(self.sweep_path)
        spec = next(s for s in resolve(sweep) if s.run_id == self.run_id)
        reg = Registry(sweep.runs_dir, lease_timeout=self.lease_timeout, heartbeat=self.heartbeat,
                       max_attempts=self.max_attempts)
        return sweep, spec, reg

    def __call__(self) -> str:
        import submitit

        env = submitit.JobEnvironment()
        res = Resources(**self.res)
        sweep, spec, reg = self._load()
        cmd = torchrun_command(reg.run(spec.run_id).path, res, master=env.hostnames[0], job_id=env.job_id)
        proc_env = {**os.environ, **_thread_env(res)}
        if env.node != 0:  # the other nodes only join the rendezvous
            rc = subprocess.call(cmd, env=proc_env)
            return "done" if rc == 0 else f"exit {rc}"
        dep = InitRef.parse(spec.init).run_id
        while dep and reg.state(dep) not in ("done", "failed"):
            time.sleep(self.poll)
        if dep and reg.state(dep) == "failed":
            from sweeps.local import _mark_blocked

            _mark_blocked(reg, spec)
            return "blocked"
        lease = reg.claim(spec, worker_name())
        if lease is None:
            return reg.state(spec.run_id)  # done already, or another job holds it
        if self.wandb:
            from sweeps.tracking import tracking_for

            tracking_for(sweep, spec, self.wandb).write(lease.run.path)
        rc = subprocess.call(cmd, env=proc_env)
        if rc == 0 and reg.is_done(spec.run_id):
            lease.finish("done")
            return "done"
        from sweeps.local import resource_failed

        if resource_failed(lease.run):  # a full disk or no permission: not an attempt of the run
            lease.finish("resource", error=lease.run.state().get("error"))
            return "resource error"
        try:
            error = lease.run.state().get("error")
        except ConfigError as e:  # a damaged state.json: say so in the lease
            error = str(e)
        lease.finish("failed", error=error or f"torchrun exited with status {rc}")
        return "failed"

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on preemption or timeout: this job's lease becomes 'preempted' (not an
        attempt; the run is claimable at once), then the same job is requeued."""
        import submitit

        from scaling import atomic
        from sweeps.registry import _read_lease

        _, spec, reg = self._load()
        for _, path in reg.leases(spec.run_id)[-1:]:
            body = _read_lease(path) or {}
            if body.get("pid") == os.getpid() and body.get("outcome") != "done":
                atomic.write_json(path, {**body, "outcome": "preempted", "finished_at": time.time()})
        return submitit.helpers.DelayedSubmission(RunJob(*self._args()))


def pending_jobs(sweep: Sweep, specs, registry: Registry) -> list[tuple]:
    """(spec, resources) of every run still to train, dependencies first."""
    return [(s, sweep.resources_for(s.model)) for s in specs if registry.effective_state(s) == "pending"]


def dry_run(sweep: Sweep, specs, registry: Registry, *, echo=print) -> int:
    """Print, per pending run, the sbatch script submitit would submit and the torchrun command of
    its tasks; submit nothing. Returns the number of jobs."""
    from submitit.slurm.slurm import _make_sbatch_string

    jobs = pending_jobs(sweep, specs, registry)
    folder = sweep.output / "slurm" / "%j"
    check_text(str(folder), source=str(sweep.path), field="output")
    # as submitit's SlurmExecutor writes it (its python, then the folder through shlex.quote)
    submit = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    for spec, res in jobs:
        dep = InitRef.parse(spec.init).run_id
        params = sbatch_parameters(sweep, spec, res, dependency="afterok:<job of run %s>" % dep if dep and
                                   any(s.run_id == dep for s, _ in jobs) else None)
        echo(f"# run {spec.run_id}: {res.nodes} node(s) x {res.gpus_per_node} GPU(s)")
        echo(_make_sbatch_string(command=submit, folder=folder, **params).rstrip())
        cmd = torchrun_command(registry.run(spec.run_id).path, res, master="$MASTER_ADDR", job_id="$SLURM_JOB_ID")
        echo(f"# each of the {res.nodes} task(s) runs, with MASTER_ADDR = first host of $SLURM_JOB_NODELIST:")
        echo("torchrun: " + shell_line(cmd))
        echo("")
    echo(f"dry run: {len(jobs)} job(s) would be submitted (nothing was)")
    return len(jobs)


def make_executor(sweep: Sweep, kind: str):
    import submitit

    folder = sweep.output / "slurm" / "%j"
    return submitit.LocalExecutor(folder=folder) if kind == "local" else submitit.SlurmExecutor(folder=folder)


def run_slurm(sweep: Sweep, specs, registry: Registry, *, executor: str = "slurm", wait: bool = True,
              wandb: str | None = None, echo=print) -> dict:
    """Submit one job per pending run; with ``wait``, block until they end and write results.csv."""
    from sweeps.local import outcome

    before = sum(registry.is_done(s.run_id) for s in specs)
    ex = make_executor(sweep, executor)
    jobs, job_of = [], {}
    for spec, res in pending_jobs(sweep, specs, registry):
        dep = InitRef.parse(spec.init).run_id
        if executor == "local":
            if res.nodes > 1:
                raise ConfigError("the local executor runs one node; use --executor slurm", source=str(sweep.path),
                                  field=f"resources.{spec.model}.nodes", value=res.nodes)
            ex.update_parameters(timeout_min=res.time_min, gpus_per_node=res.gpus_per_node, tasks_per_node=1, nodes=1)
        else:
            ex.update_parameters(**sbatch_parameters(
                sweep, spec, res, dependency=f"afterok:{job_of[dep]}" if dep in job_of else None))
        job = ex.submit(RunJob(str(sweep.path), spec.run_id, asdict(res), registry.lease_timeout, registry.heartbeat,
                               registry.max_attempts, wandb, poll=0.5 if executor == "local" else 5.0))
        job_of[spec.run_id] = job.job_id
        jobs.append(job)
    echo(f"submitted {len(jobs)} jobs: {', '.join(str(j.job_id) for j in jobs)} (logs in {sweep.output / 'slurm'})")
    if not wait:
        return {"trained": 0, "skipped": before, "failed": 0, "unfinished": 0, "jobs": [j.job_id for j in jobs]}
    for j in jobs:
        try:
            j.result()
        except Exception as e:  # noqa: BLE001 - the registry says what became of the run
            echo(f"job {j.job_id} ended with an error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    counts = outcome(sweep, specs, registry, before, echo=echo)
    counts["jobs"] = [j.job_id for j in jobs]
    return counts
