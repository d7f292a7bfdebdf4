"""The optional wandb sink: one run per grid point, grouped by sweep, in the mode asked for.
wandb is not a dependency: a stand-in module records the calls (only disabled mode is used)."""
import sys
import types

import pytest

from conftest import write_sweep
from scaling.errors import ConfigError
from scaling.rundir import RunDir
from sweeps.grid import resolve
from sweeps.schema import load_sweep
from sweeps.tracking import WandbSink


class _Run:
    def __init__(self, calls):
        self.calls, self.summary = calls, {}

    def log(self, row):
        self.calls.append(("log", row))

    def finish(self):
        self.calls.append(("finish", dict(self.summary)))


def test_wandb_sink_one_run_per_point_disabled_mode(prepared, tmp_path, monkeypatch):
    calls = []
    fake = types.SimpleNamespace(init=lambda **kw: (calls.append(("init", kw)), _Run(calls))[1])
    monkeypatch.setitem(sys.modules, "wandb", fake)
    sw = load_sweep(write_sweep(tmp_path / "s.yaml", prepared))
    spec = resolve(sw)[3]
    run = RunDir(sw.runs_dir / spec.run_id).create(spec)
    run.log({"step": 1, "loss": 5.0, "note": "x"})
    WandbSink(sw, mode="disabled").log_run(spec, {"run_id": spec.run_id, "val_loss_speech": 4.2, "evals": []}, run)
    kinds = [c[0] for c in calls]
    assert kinds == ["init", "log", "finish"]
    init = calls[0][1]
    assert init["mode"] == "disabled" and init["group"] == "tiny" and init["id"] == spec.run_id
    assert calls[1][1] == {"step": 1, "loss": 5.0}
    assert calls[2][1]["val_loss_speech"] == 4.2 and "evals" not in calls[2][1]


def test_wandb_missing_is_a_clear_error(prepared, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
    sw = load_sweep(write_sweep(tmp_path / "s.yaml", prepared))
    with pytest.raises(ConfigError, match=r"speech-scaling\[wandb\]"):
        WandbSink(sw, mode="offline")
