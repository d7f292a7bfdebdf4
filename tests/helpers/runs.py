"""Run specs and training shared by test modules (fixtures live in conftest.py)."""
from __future__ import annotations

from scaling.datadir import DataDir
from scaling.rundir import RunDir
from scaling.shapes import DEMO
from scaling.spec import RunSpec, TrainConfig


def toy_spec(data, arm="textless", tokens=1000, init="random", **kw):
    """A toy-xs run spec on the data folder ``data`` (seq 64, batch 4)."""
    m = DataDir.open(data, verify="none").manifest
    vocab = m["text_model_vocab"] if arm == "textlm" else m["speech_model_vocab"]
    streams = {"textlm": {"textlm": 1.0}, "textless": {"speech": 1.0},
               "interleaved": {"text": 1.0, "interleaved": 1.0, "speech": 1.0}}[arm]
    return RunSpec(arm=arm, model="toy-xs", shape=DEMO["toy-xs"].with_vocab(vocab), tokens=tokens, streams=streams,
                   init=init, data_fingerprint=m["fingerprint"], data_dir=str(data),
                   train=TrainConfig(seq_len=64, batch_size=4, val_sequences=4), **kw)


def train_spec(tmp_path, spec):
    """Create ``tmp_path/runs/<run_id>`` for ``spec`` and train it in this process; (RunDir, record)."""
    from trainer.execute import execute

    run = RunDir(tmp_path / "runs" / spec.run_id).create(spec)
    return run, execute(run)


def crash_at_step(monkeypatch, at: int):
    """Make ``Trainer.step`` raise KeyboardInterrupt (a simulated kill) when a run reaches step ``at``;
    returns the real step, to put back with ``monkeypatch.setattr(loop.Trainer, "step", real)``."""
    from trainer import loop

    real = loop.Trainer.step

    def crashing(self, p, total, limit):
        if p.step == at:
            raise KeyboardInterrupt("simulated kill")
        return real(self, p, total, limit)

    monkeypatch.setattr(loop.Trainer, "step", crashing)
    return real
