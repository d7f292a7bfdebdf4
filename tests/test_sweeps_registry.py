"""The run registry: exclusive claims, heartbeats, stale-lease takeover, retries, and several
`scaling run --workers 2` processes (one killed with SIGKILL) sharing one sweep."""
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, write_sweep
from scaling.cli import main
from sweeps.grid import resolve
from sweeps.registry import Registry
from sweeps.schema import load_sweep


@pytest.fixture
def tiny(prepared, tmp_path):
    sw = load_sweep(write_sweep(tmp_path / "sweep.yaml", prepared, models=["toy-xs"]))
    return sw, resolve(sw)


def test_claim_is_exclusive_and_counts_attempts(tiny):
    sw, specs = tiny
    reg = Registry(sw.runs_dir, lease_timeout=30, heartbeat=1, max_attempts=2)
    spec = specs[0]
    a = reg.claim(spec, "a")
    assert a is not None and a.number == 1
    assert reg.claim(spec, "b") is None  # live lease
    assert reg.state(spec.run_id) == "running"
    a.finish("failed", error="boom")
    assert reg.state(spec.run_id) == "pending"  # one attempt left
    b = reg.claim(spec, "b")
    assert b is not None and b.number == 2 and reg.attempts(spec.run_id) == 2
    b.finish("failed")
    assert reg.state(spec.run_id) == "failed" and reg.claim(spec, "c") is None
    # a run initialised from a failed run is failed too
    dependent = next(s for s in specs if s.init == f"run:{spec.run_id}")
    assert reg.effective_state(dependent) == "failed"


def test_heartbeat_keeps_lease_alive_and_stale_lease_is_taken_over(tiny):
    sw, specs = tiny
    reg = Registry(sw.runs_dir, lease_timeout=1.0, heartbeat=0.2, max_attempts=3)
    spec = specs[0]
    lease = reg.claim(spec, "a")
    time.sleep(1.6)  # longer than the timeout: only the heartbeat keeps it alive
    assert reg.state(spec.run_id) == "running" and reg.claim(spec, "b") is None
    lease._stop.set()  # the worker dies: heartbeats stop, the lease is never finished
    lease._thread.join()
    old = time.time() - 5
    os.utime(lease.path, (old, old))
    assert reg.state(spec.run_id) == "pending"
    taken = reg.claim(spec, "b")
    assert taken is not None and taken.number == 2
    assert json.loads(lease.path.read_text())["worker"] == "a"  # history kept
    taken.finish("done")


def _race(runs_dir, spec_path, q):
    from scaling.spec import RunSpec

    spec = RunSpec.load(spec_path)
    lease = Registry(runs_dir, lease_timeout=60, heartbeat=5).claim(spec, f"w{os.getpid()}")
    q.put(lease is not None)


def test_many_processes_racing_for_one_run_one_wins(tiny, tmp_path):
    sw, specs = tiny
    spec_path = tmp_path / "one.yaml"
    import yaml

    spec_path.write_text(yaml.safe_dump(specs[1].dump(), sort_keys=False))
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(sw.runs_dir, spec_path, q)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    wins = [q.get(timeout=5) for _ in procs]
    assert sum(wins) == 1
    assert Registry(sw.runs_dir).attempts(specs[1].run_id) == 1


def _launch(sweep: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "scaling.cli", "run", str(sweep), "--workers", "2",
           "--lease-timeout", "4", "--heartbeat", "0.5"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _check_each_run_done_once(sw, specs):
    reg = Registry(sw.runs_dir)
    for s in specs:
        d = sw.runs_dir / s.run_id
        assert reg.is_done(s.run_id), s.run_id
        outcomes = [json.loads(p.read_text()).get("outcome") for _, p in reg.leases(s.run_id)]
        assert outcomes.count("done") == 1, (s.run_id, outcomes)
        assert len(list(d.glob("result.json*"))) == 1


@pytest.mark.slow
def test_two_launchers_one_killed_sweep_completes_once(prepared, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared, models=["toy-xs"])
    sw = load_sweep(sweep)
    specs = resolve(sw)
    a = _launch(sweep, tmp_path / "a.log")
    b = _launch(sweep, tmp_path / "b.log")
    # kill launcher A and its workers while one of its workers holds a live lease
    reg = Registry(sw.runs_dir, lease_timeout=4, heartbeat=0.5)
    victim = None
    deadline = time.time() + 90
    while victim is None and time.time() < deadline:
        for s in specs:
            ls = reg.leases(s.run_id)
            if ls and reg.state(s.run_id) == "running":
                body = json.loads(ls[-1][1].read_text() or "{}")
                try:
                    if os.getpgid(body["pid"]) == a.pid:
                        victim = s.run_id
                except (ProcessLookupError, KeyError):
                    pass
        time.sleep(0.05)
    assert victim is not None, "launcher A never claimed a run"
    os.killpg(a.pid, signal.SIGKILL)
    a.wait()
    assert b.wait(timeout=240) == 0, (tmp_path / "b.log").read_text()
    _check_each_run_done_once(sw, specs)
    assert reg.attempts(victim) == 2  # the killed attempt, then the takeover
    # a rerun trains nothing and changes no result
    mtimes = {p: p.stat().st_mtime_ns for p in sw.runs_dir.glob("*/result.json")}
    assert main(["run", str(sweep)]) == 0
    assert "trained 0" in capsys.readouterr().out
    assert mtimes == {p: p.stat().st_mtime_ns for p in sw.runs_dir.glob("*/result.json")}
    assert main(["status", str(sweep)]) == 0
    assert f"done: {len(specs)}" in capsys.readouterr().out


def test_a_full_disk_stops_the_worker_and_is_not_an_attempt(tiny):
    """A run stopped by the machine (scaling.rundir.ResourceError: a full disk) ends its lease as 'resource',
    which does not use up an attempt, and the worker stops with the error (every other run would meet it)
    instead of claiming run after run onto the same full disk."""
    import errno

    from scaling.rundir import ResourceError
    from sweeps.local import work

    sw, specs = tiny
    reg = Registry(sw.runs_dir, lease_timeout=30, heartbeat=1, max_attempts=1)
    calls = []

    def full_disk(run):
        calls.append(run.path.name)
        raise ResourceError(errno.ENOSPC, run.path / "checkpoints")

    with pytest.raises(ResourceError, match="No space left"):
        work(sw, specs, reg, echo=lambda line: None, poll=0.01, execute=full_disk)
    assert len(calls) == 1  # stopped at the first run, not retried or moved on
    (_, lease), = reg.leases(calls[0])
    assert json.loads(lease.read_text())["outcome"] == "resource"
    assert reg.attempts(calls[0]) == 0 and reg.state(calls[0]) == "pending"  # with max_attempts=1, still claimable
