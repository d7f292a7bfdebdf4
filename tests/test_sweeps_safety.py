"""Safe operation: a failed run makes `scaling run` and `scaling status` exit non-zero and say why;
preemptions are not attempts; `scaling train` holds a lease (a second process is refused), does not
retrain a finished run without --force, and refuses a spec edited after planning."""
import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO, write_sweep
from scaling.cli import main
from scaling.rundir import RunDir
from sweeps.grid import resolve
from sweeps.registry import Registry
from sweeps.schema import load_sweep


def _one_run(prepared, tmp_path, **kw):
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared, models=["toy-xs"], arms=["textless"], budgets=[2e9], **kw)
    sw = load_sweep(sweep)
    (spec,) = resolve(sw)
    return sweep, sw, spec


def _dead_lease(reg, spec, outcome=None):
    """A claimed attempt whose worker died (heartbeat stopped long ago), or ended with ``outcome``."""
    lease = reg.claim(spec, "gone")
    lease._stop.set()
    lease._thread.join()
    if outcome:
        body = json.loads(lease.path.read_text())
        lease.path.write_text(json.dumps({**body, "outcome": outcome}))
    old = time.time() - 3600
    os.utime(lease.path, (old, old))
    return lease


def test_run_that_used_its_attempts_fails_the_command(prepared, tmp_path, capsys):
    sweep, sw, spec = _one_run(prepared, tmp_path)
    reg = Registry(sw.runs_dir, max_attempts=2)
    for _ in range(2):  # two workers died on it (killed, node lost)
        _dead_lease(reg, spec)
    RunDir(sw.runs_dir / spec.run_id).set_state("running")  # what a killed worker leaves behind
    assert main(["run", str(sweep)]) == 1
    out = capsys.readouterr().out
    assert "failed 1" in out and f"FAILED {spec.run_id}" in out and "2 attempts" in out
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[1].endswith(",failed"), rows  # not 'running'
    assert main(["status", str(sweep)]) == 1
    out = capsys.readouterr().out
    assert "failed: 1" in out and f"FAILED {spec.run_id}" in out


def test_failed_run_reports_its_error(prepared, tmp_path, capsys):
    sweep, sw, spec = _one_run(prepared, tmp_path)
    from sweeps.local import run_sweep

    def boom(run):
        run.set_state("running")
        run.set_state("failed", error="RuntimeError: out of memory")
        raise RuntimeError("out of memory")

    counts = run_sweep(sw, [spec], registry=Registry(sw.runs_dir, max_attempts=1), execute=boom, echo=print)
    assert counts["failed"] == 1 and counts["failed_runs"] == [spec.run_id]
    out = capsys.readouterr().out
    assert f"FAILED {spec.run_id}: RuntimeError: out of memory" in out
    assert main(["status", str(sweep), "--max-attempts", "1"]) == 1


def test_preemption_is_not_an_attempt(prepared, tmp_path):
    _, sw, spec = _one_run(prepared, tmp_path)
    reg = Registry(sw.runs_dir, max_attempts=2)
    for _ in range(3):  # preempted three times, more than max_attempts
        _dead_lease(reg, spec, outcome="preempted")
    assert reg.attempts(spec.run_id) == 0 and reg.state(spec.run_id) == "pending"
    lease = reg.claim(spec, "next")
    assert lease is not None and lease.number == 4
    lease.finish("failed", error="x")
    assert reg.attempts(spec.run_id) == 1 and reg.state(spec.run_id) == "pending"
    _dead_lease(reg, spec)  # a real (died) attempt: the second
    assert reg.attempts(spec.run_id) == 2 and reg.state(spec.run_id) == "failed"
    assert reg.claim(spec, "again") is None


def _planned(prepared, tmp_path):
    _, sw, spec = _one_run(prepared, tmp_path)
    return RunDir(sw.runs_dir / spec.run_id).create(spec), spec


def test_second_train_process_is_refused(prepared, tmp_path, capsys):
    run, spec = _planned(prepared, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom scaling.rundir import RunDir\nfrom trainer.execute import run_lock\n"
         f"with run_lock(RunDir({str(run.path)!r})):\n    print('locked', flush=True)\n    time.sleep(60)\n"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", str(run.path)]) == 2
        err = capsys.readouterr().err
        assert "train.lock" in err and f"pid {holder.pid}" in err
        assert not run.metrics_path.exists() and run.status == "pending"  # nothing trained, nothing marked
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its process: now it trains
    assert main(["train", str(run.path), "--quiet"]) == 0
    assert run.status == "done"


def test_done_run_is_not_retrained_unless_forced(prepared, tmp_path, capsys):
    run, spec = _planned(prepared, tmp_path)
    assert main(["train", str(run.path), "--quiet"]) == 0
    before = {p: p.stat().st_mtime_ns for p in (run.result_path, run.metrics_path, run.state_path)}
    lines = run.metrics_path.read_text()
    assert main(["train", str(run.path), "--quiet"]) == 0
    assert "already done" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in before} == before and run.metrics_path.read_text() == lines
    assert main(["train", str(run.path), "--quiet", "--force"]) == 0
    assert run.result_path.stat().st_mtime_ns != before[run.result_path]
    steps = [r["step"] for r in run.metrics() if "loss" in r]
    assert steps == sorted(set(steps))  # trained once from scratch, not appended to the old log


def test_edited_spec_is_refused(prepared, tmp_path, capsys):
    run, spec = _planned(prepared, tmp_path)
    d = yaml.safe_load(run.spec_path.read_text())
    d["train"]["lr"] = d["train"]["lr"] * 10  # edited after planning; run_id line left as it was
    run.spec_path.write_text(yaml.safe_dump(d))
    assert main(["train", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert str(run.spec_path) in err and "'run_id'" in err and "edited" in err
    assert not run.metrics_path.exists() and run.status == "pending"
    # with the run_id line edited too, the folder name still gives it away
    d["run_id"] = RunDir(run.path).spec().run_id
    run.spec_path.write_text(yaml.safe_dump(d))
    assert main(["train", str(run.path)]) == 2
    assert "folder's name" in capsys.readouterr().err


def test_run_dir_holding_another_run_is_refused(prepared, tmp_path, capsys):
    run, spec = _planned(prepared, tmp_path)
    other = tmp_path / "other.yaml"
    d = spec.to_dict()
    d["seed"] = 1
    other.write_text(yaml.safe_dump(d))
    assert main(["train", str(other), "--run-dir", str(run.path)]) == 2
    assert "'--run-dir'" in capsys.readouterr().err
    assert RunDir(run.path).spec().seed == spec.seed  # its spec.yaml was not overwritten


def test_workers_share_the_machine():
    from scaling.errors import ConfigError
    from sweeps.local import THREAD_VARS, worker_envs

    cpu = worker_envs(2, cores=2, gpus=0)
    assert all(e[v] == "1" for e in cpu for v in THREAD_VARS)  # cores/K threads each, not 2 x all cores
    assert all(e["CUDA_VISIBLE_DEVICES"] == "" for e in cpu)
    assert [e["OMP_NUM_THREADS"] for e in worker_envs(3, cores=16, gpus=0)] == ["5"] * 3
    gpu = worker_envs(4, cores=32, gpus=8, gpus_per_run=2)
    devices = [e["CUDA_VISIBLE_DEVICES"].split(",") for e in gpu]
    assert devices == [["0", "1"], ["2", "3"], ["4", "5"], ["6", "7"]]  # disjoint: no run sees another's device
    with pytest.raises(ConfigError, match="need 6 GPUs"):
        worker_envs(3, cores=32, gpus=4, gpus_per_run=2)


def test_worker_threads_come_from_the_cores_this_process_may_use(monkeypatch):
    """A process pinned to 2 of 16 cores (a container, taskset) gets 2 `auto` workers of 1 thread each,
    not 2 workers of 8 threads oversubscribing its 2 cores."""
    from sweeps import local

    monkeypatch.setattr(local.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(local.os, "cpu_count", lambda: 16)
    assert local.usable_cores() == 2 and local.auto_workers() == 2
    assert [e["OMP_NUM_THREADS"] for e in local.worker_envs(local.auto_workers(), gpus=0)] == ["1", "1"]


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_run_refuses_a_bad_worker_count(prepared, tmp_path, capsys, bad):
    sweep = write_sweep(tmp_path / "s.yaml", prepared)
    assert main(["run", str(sweep), "--workers", bad]) == 2
    err = capsys.readouterr().err
    assert "--workers" in err and bad in err and "auto" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results.csv").exists()


def test_run_workers_starts_each_worker_with_its_share(prepared, tmp_path, monkeypatch):
    from sweeps import local

    started = []

    class FakeProc:
        def __init__(self, cmd, env):
            started.append((cmd, env))

        def wait(self):
            return 0

        def poll(self):
            return 0

    monkeypatch.setattr(local.subprocess, "Popen", FakeProc)
    monkeypatch.setattr(local, "usable_cores", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    _, sw, spec = _one_run(prepared, tmp_path)
    local.run_workers(sw, [spec], 2, Registry(sw.runs_dir), echo=lambda *_: None)
    assert len(started) == 2
    for cmd, env in started:
        assert cmd[2:4] == ["scaling.cli", "worker"] and env["OMP_NUM_THREADS"] == "1" and env["MKL_NUM_THREADS"] == "1"


def _workers_of(sweep) -> list[int]:
    """PIDs of live `scaling.cli worker` processes on ``sweep``."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
                state = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if b"worker" in cmd and str(sweep).encode() in cmd and state != "Z":
                out.append(int(d))
    return out


def test_terminating_scaling_run_stops_its_workers(prepared, tmp_path):
    """`kill <scaling run>` (a scheduler's time limit) stops the workers with it, writes results.csv and
    exits 143; a second `scaling run` resumes. Before, the workers trained on as orphans."""
    sweep = write_sweep(tmp_path / "s.yaml", prepared, models=["toy-xs", "toy-s"], arms=["textless"],
                        budgets=[2e10], eval={"benchmarks": ["swuggy"], "max_items": 8})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "scaling.cli", "run", str(sweep), "--workers", "2"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "runs").glob("*/metrics.jsonl")):
        time.sleep(0.05)
    assert _workers_of(sweep), "the workers did not start training"
    proc.terminate()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert "stopped by SIGTERM" in out and "lease released" in out
    time.sleep(0.5)
    assert _workers_of(sweep) == []
    assert (tmp_path / "results.csv").is_file()
    # the interrupted runs gave their leases back: no attempt used, nothing to wait for
    sw = load_sweep(sweep)
    reg = Registry(sw.runs_dir)
    stopped = [s for s in resolve(sw) if not reg.is_done(s.run_id)]
    assert stopped and all(reg.attempts(s.run_id) == 0 and reg.effective_state(s) == "pending" for s in stopped)
    t0 = time.time()
    assert main(["run", str(sweep), "--workers", "1"]) == 0
    assert time.time() - t0 < 100  # resumed at once, not after the 120 s lease timeout


def test_terminating_an_in_process_sweep_releases_its_run(prepared, tmp_path, monkeypatch, capsys):
    """`scaling run --workers 1` trains in its own process: SIGTERM there too gives the lease back,
    writes results.csv and exits 143."""
    import signal as sig

    from trainer import loop

    sweep = write_sweep(tmp_path / "s.yaml", prepared, models=["toy-xs"], arms=["textless"], budgets=[2e9],
                        eval={"benchmarks": ["swuggy"], "max_items": 8})
    real = loop.Trainer.step

    def step(self, p, *a, **kw):
        if p.step == 3:
            os.kill(os.getpid(), sig.SIGTERM)
        return real(self, p, *a, **kw)

    monkeypatch.setattr(loop.Trainer, "step", step)
    assert main(["run", str(sweep)]) == 143
    out = capsys.readouterr().out
    assert "stopped by SIGTERM" in out and "lease released" in out
    sw = load_sweep(sweep)
    (spec,) = resolve(sw)
    reg = Registry(sw.runs_dir)
    assert reg.attempts(spec.run_id) == 0 and reg.effective_state(spec) == "pending"
    run = reg.run(spec.run_id)  # the run folder says so too: stopped, not failed
    assert run.status == "pending" and run.state()["interrupted"] == "Stopped: SIGTERM"
    assert (tmp_path / "results.csv").is_file()
    assert sig.getsignal(sig.SIGTERM) is sig.SIG_DFL  # the handler is put back
    monkeypatch.setattr(loop.Trainer, "step", real)
    assert main(["run", str(sweep)]) == 0 and reg.is_done(spec.run_id)
