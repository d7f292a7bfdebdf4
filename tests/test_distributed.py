"""FSDP2 on CPU: two sharded processes (gloo) reproduce the single-process run."""
import dataclasses
import os
import subprocess
import sys

import pytest

from scaling.rundir import RunDir
from helpers import toy_spec as _spec, train_spec as _train


@pytest.mark.slow
def test_two_process_fsdp_matches_single_process(prepared, tmp_path):
    spec = _spec(prepared, arm="interleaved", tokens=320 * 4 + 64)  # last step: one row, rank 1 idles
    spec = dataclasses.replace(spec, init="random", train=dataclasses.replace(spec.train, batch_size=5, checkpoint_every=2,
                                                                             keep_checkpoints=True))
    single_run, single = _train(tmp_path / "single", spec)

    run = RunDir(tmp_path / "fsdp" / "runs" / spec.run_id).create(spec)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                           "-m", "scaling.cli", "train", str(run.path)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rec = run.result()
    assert rec["tokens"] == single["tokens"]
    losses = lambda r: [x["loss"] for x in r.metrics() if "loss" in x and "branch" not in x]
    assert losses(run) == pytest.approx(losses(single_run), rel=1e-4)
    assert rec["val_loss_speech"] == pytest.approx(single["val_loss_speech"], rel=1e-4)
    # the export is a plain HF folder, and the sharded checkpoints hold full state dicts
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run.model_path)
    assert sum(p.numel() for p in model.parameters()) == rec["params"]
    assert (run.path / "checkpoints").is_dir()


@pytest.mark.slow
def test_sharded_checkpoint_resumes_in_one_process(prepared, tmp_path):
    """A two-process run's sharded (DCP) checkpoint resumes single-process and lands on the same losses."""
    import shutil

    spec = _spec(prepared, tokens=256 * 8)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, checkpoint_every=3, keep_checkpoints=True))
    single_run, single = _train(tmp_path / "single", spec)
    run = RunDir(tmp_path / "fsdp" / "runs" / spec.run_id).create(spec)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29534",
                           "-m", "scaling", "train", str(run.path)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ckpts = sorted((run.path / "checkpoints").glob("step_*"))
    assert [c.name for c in ckpts] == ["step_00000003", "step_00000006"]
    assert (ckpts[-1] / ".metadata").is_file() and not (ckpts[-1] / "model.pt").exists()  # sharded, not gathered
    shutil.rmtree(run.model_path)
    run.result_path.unlink()  # as if killed after its last checkpoint: a finished run is not retrained
    from trainer.execute import execute

    rec = execute(run)  # this process: resumes from step 6 of the sharded checkpoint
    assert any(r.get("event") == "resumed" and r["at"] == 6 for r in run.metrics())
    assert rec["val_loss_speech"] == pytest.approx(single["val_loss_speech"], rel=1e-4)
