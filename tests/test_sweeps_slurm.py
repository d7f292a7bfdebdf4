"""The submitit launcher, with submitit's local executor: a two-task array that finishes a sweep,
taking over a run whose worker was interrupted, and the requeue hook for preemption."""
import json
import os
import time

import submitit

from conftest import write_sweep
from scaling.cli import main
from sweeps.grid import resolve
from sweeps.registry import Registry
from sweeps.schema import load_sweep
from sweeps.slurm import SweepWorker


def _tiny(prepared, tmp_path):
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared, models=["toy-xs"], arms=["textless"])
    sw = load_sweep(sweep)
    return sweep, sw, resolve(sw)


def test_local_executor_array_resumes_interrupted_run(prepared, tmp_path, capsys):
    sweep, sw, specs = _tiny(prepared, tmp_path)
    assert len(specs) == 2
    reg = Registry(sw.runs_dir, lease_timeout=3, heartbeat=0.5)
    # a worker that died mid-run: its lease stopped beating, state.json still says running
    dead = reg.claim(specs[0], "dead-worker")
    dead._stop.set()
    dead._thread.join()
    dead.run.set_state("running", pid=1)
    old = time.time() - 60
    os.utime(dead.path, (old, old))
    assert main(["run", str(sweep), "--launcher", "slurm", "--executor", "local", "--workers", "2",
                 "--lease-timeout", "3", "--heartbeat", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "submitted 2 array tasks" in out and "trained 2" in out
    for s in specs:
        assert reg.is_done(s.run_id)
        outcomes = [json.loads(p.read_text()).get("outcome") for _, p in reg.leases(s.run_id)]
        assert outcomes.count("done") == 1
    assert reg.attempts(specs[0].run_id) == 2  # the interrupted attempt, then the resumed one
    assert (tmp_path / "results.csv").read_text().count(",done") == 2
    assert list((tmp_path / "slurm").iterdir())  # submitit's job folders


def test_checkpoint_releases_lease_and_requeues(prepared, tmp_path):
    sweep, sw, specs = _tiny(prepared, tmp_path)
    reg = Registry(sw.runs_dir, lease_timeout=60, heartbeat=5)
    lease = reg.claim(specs[1], "me")
    assert reg.state(specs[1].run_id) == "running"
    again = SweepWorker(str(sweep), 60, 5, 2).checkpoint()
    lease._stop.set()
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert json.loads(lease.path.read_text())["outcome"] == "preempted"
    assert reg.state(specs[1].run_id) == "pending"  # claimable at once, not after the lease timeout
    assert reg.claim(specs[1], "next").number == 2
