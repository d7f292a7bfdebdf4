"""Checkpoint/resume, cooldown branches, document masking, accumulation, non-finite losses."""
import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from scaling.rundir import RunDir
from helpers.runs import crash_at_step, toy_spec as _spec, train_spec as _train


def _losses(run):
    return [(r["step"], r["loss"]) for r in run.metrics() if "loss" in r and "branch" not in r]


def _with(spec, **train):
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, **train))


def test_resume_after_crash_reproduces_losses(prepared, tmp_path, monkeypatch):
    from trainer import loop

    spec = _with(_spec(prepared, tokens=256 * 12), checkpoint_every=3, keep_checkpoints=True)
    ref_run, ref = _train(tmp_path / "ref", spec)

    real_step = crash_at_step(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "crash", spec)
    run = RunDir(tmp_path / "crash" / "runs" / spec.run_id)
    assert sorted(p.name for p in (run.path / "checkpoints").glob("step_*")) == ["step_00000003", "step_00000006"]
    monkeypatch.setattr(loop.Trainer, "step", real_step)
    from trainer.execute import execute

    rec = execute(run)
    assert _losses(run) == _losses(ref_run)
    for k in ("val_loss_speech", "val_loss_text", "val_loss_interleaved", "final_train_loss", "swuggy"):
        assert rec.get(k) == ref.get(k), k
    assert any(r.get("event") == "resumed" and r["at"] == 6 for r in run.metrics())


@pytest.mark.slow
def test_kill_9_then_rerun_matches_uninterrupted(prepared, tmp_path):
    spec = _with(_spec(prepared, tokens=256 * 400), checkpoint_every=40)
    ref_run, ref = _train(tmp_path / "ref", spec)
    run = RunDir(tmp_path / "kill" / "runs" / spec.run_id).create(spec)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "scaling.cli", "train", str(run.path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((run.path / "checkpoints").glob("step_*")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run.result() is None, "the run finished before it could be killed"
    assert run.status == "running"  # a killed run leaves no false 'done'
    rerun = subprocess.run([sys.executable, "-m", "scaling.cli", "train", str(run.path)], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    rec = run.result()
    assert _losses(run) == _losses(ref_run)
    assert rec["val_loss_speech"] == ref["val_loss_speech"] and rec["tokens"] == ref["tokens"]
    assert not (run.path / "checkpoints").exists()  # cleaned up once done
    assert not list(run.path.glob(".*tmp"))


def test_cooldown_branch_equals_a_separate_run(prepared, tmp_path):
    base = _with(_spec(prepared, tokens=256 * 10), schedule="wsd", warmup_frac=0.0, cooldown_frac=0.3)
    spec = dataclasses.replace(base, cooldowns=[256 * 5])
    run, rec = _train(tmp_path / "wsd", spec)
    cool = [e for e in rec["evals"] if e["kind"] == "cooldown"]
    assert [e["tokens"] for e in cool] == [256 * 5]
    assert cool[0]["flops"] == 6 * rec["params"] * 256 * 5
    assert (run.path / "cooldowns" / str(256 * 5) / "model" / "config.json").is_file()
    _, short = _train(tmp_path / "short", dataclasses.replace(base, tokens=256 * 5))
    assert cool[0]["val_loss_speech"] == pytest.approx(short["val_loss_speech"], rel=1e-6)
    # the main trajectory is not disturbed by the branch
    _, plain = _train(tmp_path / "plain", base)
    assert rec["val_loss_speech"] == pytest.approx(plain["val_loss_speech"], rel=1e-6)


def test_warmup_of_the_shortest_budget_makes_a_branch_a_separate_run(prepared, tmp_path):
    """warmup_basis 'shortest': warmup is a fraction of the first branch, so that branch is exactly a
    run of its own length (which warms up over the same fraction of itself); with the default basis
    the branch inherits the long run's warmup and is not."""
    base = _with(_spec(prepared, tokens=256 * 10), schedule="wsd", warmup_frac=0.2, cooldown_frac=0.3)
    _, short = _train(tmp_path / "short", dataclasses.replace(base, tokens=256 * 5))
    losses = {}
    for basis in ("shortest", "run"):
        spec = dataclasses.replace(_with(base, warmup_basis=basis), cooldowns=[256 * 5])
        run, rec = _train(tmp_path / basis, spec)
        losses[basis] = next(e for e in rec["evals"] if e["kind"] == "cooldown")["val_loss_speech"]
        lrs = [r["lr"] for r in run.metrics() if "lr" in r and "branch" not in r]
        assert lrs[0] == pytest.approx(base.train.lr / (1 if basis == "shortest" else 2))  # 1 or 2 warmup steps
    assert losses["shortest"] == pytest.approx(short["val_loss_speech"], rel=1e-6)
    assert losses["run"] != pytest.approx(short["val_loss_speech"], rel=1e-6)


def test_warmup_basis_is_checked_and_hashed_only_when_set(prepared):
    from scaling.errors import ConfigError

    spec = _with(_spec(prepared, tokens=2560), schedule="wsd")
    assert _with(spec, warmup_basis="run").run_id == spec.run_id  # existing ids stay valid
    assert _with(spec, warmup_basis="shortest").run_id != spec.run_id
    with pytest.raises(ConfigError, match="warmup_basis"):
        _with(spec, warmup_basis="longest").validate()


def test_cooldowns_need_wsd(prepared):
    from scaling.errors import ConfigError

    with pytest.raises(ConfigError, match="wsd"):
        dataclasses.replace(_spec(prepared, tokens=2560), cooldowns=[1024]).validate()


def test_document_mask_isolates_packed_documents():
    from trainer.attention import doc_inputs
    from trainer.model import build_model
    from scaling.shapes import DEMO

    model = build_model(DEMO["toy-xs"].with_vocab(64), seed=0).eval()
    eos = 1
    a = torch.tensor([5, 6, 7, eos]); b = torch.tensor([8, 9, 10, 11, 12, eos]); c = torch.tensor([13, 14])
    packed = torch.cat([a, b, c]).unsqueeze(0)
    with torch.no_grad():
        out = model(input_ids=packed, **doc_inputs(packed, eos)).logits[0]
        for doc, start in ((a, 0), (b, 4), (c, 10)):
            alone = model(input_ids=doc.unsqueeze(0)).logits[0]
            assert torch.allclose(out[start:start + len(doc)], alone, atol=1e-5)
        unmasked = model(input_ids=packed).logits[0]
    assert not torch.allclose(unmasked[4:10], model(input_ids=b.unsqueeze(0)).logits[0], atol=1e-3)


def test_gradient_accumulation_matches_full_batch(prepared, tmp_path):
    spec = _spec(prepared, tokens=256 * 4)
    _, full = _train(tmp_path / "full", spec)
    _, acc = _train(tmp_path / "acc", _with(spec, micro_batch_size=1))
    assert acc["val_loss_speech"] == pytest.approx(full["val_loss_speech"], rel=1e-4)


def test_non_finite_loss_stops_and_keeps_checkpoint(prepared, tmp_path, monkeypatch):
    from trainer import loop

    real = loop.Trainer._loss_sum
    def poisoned(self, rows):
        s = real(self, rows)
        return s * float("nan") if self._poison_now else s
    monkeypatch.setattr(loop.Trainer, "_loss_sum", poisoned)
    real_step = loop.Trainer.step
    def step(self, p, total, limit):
        self._poison_now = p.step == 5
        return real_step(self, p, total, limit)
    monkeypatch.setattr(loop.Trainer, "step", step)
    spec = _with(_spec(prepared, tokens=256 * 8), checkpoint_every=2)
    with pytest.raises(FloatingPointError, match="non-finite loss.*step 5.*step_00000004"):
        _train(tmp_path, spec)
    run = RunDir(tmp_path / "runs" / spec.run_id)
    assert run.status == "failed" and "non-finite" in run.state()["error"]
    assert (run.path / "checkpoints" / "step_00000004" / "state.json").is_file()
