"""The SLURM launcher: per-run resources in the sbatch script, torchrun with the SLURM rendezvous,
--dry-run (nothing submitted), submitit's local executor running a sweep end to end, and the
requeue hook for preemption."""
import json
import re

import submitit
import yaml

from conftest import write_sweep
from scaling.cli import main
from sweeps.grid import resolve
from sweeps.registry import Registry
from sweeps.schema import load_sweep
from sweeps.slurm import RunJob


def _sbatch(text: str) -> dict:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)$", text, flags=re.M))


def test_dry_run_7b_on_two_nodes(tmp_path, capsys):
    sweep = tmp_path / "sims.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "sims7b", "output": "out", "tokenizer": "qwen2.5", "grid": "explicit",
        "models": ["qwen2.5-1.5b", "qwen2.5-7b"],
        "runs": [{"model": "qwen2.5-1.5b", "budget": 2e20}, {"model": "qwen2.5-7b", "budget": 2e20}],
        "arms": {"interleaved": {"init": {"qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B", "qwen2.5-7b": "Qwen/Qwen2.5-7B"}}},
        "train": {"seq_len": 2048, "batch_size": 256, "lr": 5e-4, "min_lr": 5e-5},
        "resources": {"default": {"gpus_per_node": 1, "partition": "gpu", "account": "speech", "time_min": 600},
                      "qwen2.5-7b": {"nodes": 2, "gpus_per_node": 8, "cpus_per_task": 96, "mem_gb": 1500,
                                     "time_min": 4320, "qos": "high"}},
    }))
    assert main(["run", str(sweep), "--launcher", "slurm", "--dry-run"]) == 0
    out = capsys.readouterr().out
    jobs = out.split("# run ")[1:]
    assert len(jobs) == 2 and "2 job(s) would be submitted" in out
    small, big = sorted(jobs, key=lambda j: "qwen2.5-7b" in j.splitlines()[0])
    s = _sbatch(big)
    assert s["nodes"] == "2" and s["gpus-per-node"] == "8" and s["ntasks-per-node"] == "1"
    assert s["partition"] == "gpu" and s["account"] == "speech" and s["qos"] == "high"
    assert s["cpus-per-task"] == "96" and s["mem"] == "1500GB" and s["time"] == "4320"
    (torchrun,) = [ln for ln in big.splitlines() if ln.startswith("torchrun: ")]
    args = torchrun.split()[1:]
    assert args[1:3] == ["-m", "torch.distributed.run"]
    opt = dict(zip(args[3::2], args[4::2]))
    assert opt["--nnodes"] == "2" and opt["--nproc-per-node"] == "8" and opt["--rdzv-backend"] == "c10d"
    assert opt["--rdzv-endpoint"].startswith("$MASTER_ADDR:") and opt["--rdzv-id"] == "$SLURM_JOB_ID"
    run_id = big.split(":")[0].strip()
    assert args[-4:] == ["-m", "scaling.cli", "train", str(tmp_path / "out" / "runs" / run_id)]
    assert "srun" in big  # submitit's launch line: one task per node
    # the small model keeps the default: one node, one GPU, standalone torchrun
    s = _sbatch(small)
    assert s["nodes"] == "1" and s["gpus-per-node"] == "1" and s["partition"] == "gpu" and s["time"] == "600"
    assert "--standalone" in small and "--rdzv-backend" not in small
    assert not (tmp_path / "out").exists()  # nothing submitted, nothing written
    # the plan carries each run's resources
    assert main(["plan", str(sweep), "--json", str(tmp_path / "plan.json")]) == 0
    res = {r["model"]: r["resources"] for r in json.loads((tmp_path / "plan.json").read_text())}
    assert res["qwen2.5-7b"]["nodes"] == 2 and res["qwen2.5-7b"]["partition"] == "gpu"
    assert res["qwen2.5-1.5b"] == {**res["qwen2.5-7b"], "nodes": 1, "gpus_per_node": 1, "cpus_per_task": None,
                                   "mem_gb": None, "time_min": 600, "qos": None}


def test_torchrun_command_uses_the_job_rendezvous():
    from sweeps.schema import Resources
    from sweeps.slurm import rdzv_port, torchrun_command

    cmd = torchrun_command("/x/runs/r1", Resources(nodes=4, gpus_per_node=8), master="node017", job_id="123456")
    i = cmd.index("--rdzv-endpoint")
    assert cmd[i + 1] == f"node017:{rdzv_port('123456')}" and cmd[cmd.index("--rdzv-id") + 1] == "123456"
    assert cmd[cmd.index("--nnodes") + 1] == "4" and cmd[cmd.index("--nproc-per-node") + 1] == "8"
    assert cmd[-4:] == ["-m", "scaling.cli", "train", "/x/runs/r1"]
    assert rdzv_port("123456") != rdzv_port("123457")  # two jobs on one node do not share a port


def test_local_executor_runs_a_sweep_end_to_end(prepared, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared, models=["toy-xs"], arms=["interleaved"], budgets=[2e9])
    sw = load_sweep(sweep)
    specs = resolve(sw)
    assert [s.arm for s in specs] == ["textlm", "interleaved"]  # the second job waits for the first
    assert main(["run", str(sweep), "--launcher", "slurm", "--executor", "local"]) == 0
    out = capsys.readouterr().out
    assert "submitted 2 jobs" in out and "trained 2" in out and "failed 0" in out
    reg = Registry(sw.runs_dir)
    for s in specs:
        assert reg.is_done(s.run_id)
        outcomes = [json.loads(p.read_text()).get("outcome") for _, p in reg.leases(s.run_id)]
        assert outcomes == ["done"]
    assert (tmp_path / "results.csv").read_text().count(",done") == 2
    # each job ran `scaling train` under torchrun: its record is in the job's log
    logs = " ".join(p.read_text() for p in (tmp_path / "slurm").rglob("*_log.out"))
    assert all(f'"run_id": "{s.run_id}"' in logs for s in specs)
    # rerun: nothing pending, no job submitted
    assert main(["run", str(sweep), "--launcher", "slurm", "--executor", "local"]) == 0
    assert "submitted 0 jobs" in capsys.readouterr().out


def test_checkpoint_marks_preempted_and_requeues(prepared, tmp_path):
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared, models=["toy-xs"], arms=["textless"], budgets=[2e9])
    sw = load_sweep(sweep)
    (spec,) = resolve(sw)
    reg = Registry(sw.runs_dir, lease_timeout=60, heartbeat=5, max_attempts=1)
    lease = reg.claim(spec, "me")
    assert reg.state(spec.run_id) == "running"
    job = RunJob(str(sweep), spec.run_id, {"nodes": 1}, 60, 5, 1)
    again = job.checkpoint()
    lease._stop.set()
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert isinstance(again.function, RunJob) and again.function.run_id == spec.run_id
    assert json.loads(lease.path.read_text())["outcome"] == "preempted"
    # claimable at once, and with max_attempts=1 the preemption has not used the only attempt
    assert reg.state(spec.run_id) == "pending" and reg.attempts(spec.run_id) == 0
    assert reg.claim(spec, "requeued").number == 2
