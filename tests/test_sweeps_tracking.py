"""Live tracking with the real wandb package in offline mode: step metrics reach wandb while the run
trains (from the loop, not replayed afterwards), a restarted run logs to the same wandb run id, and
the run carries the sweep, arm, model, budget and plan row as config."""
import json
import struct
import sys
import time

import pytest
import wandb  # the real package (the test extra installs it)

from conftest import write_sweep
from helpers.runs import crash_at_step
from scaling.errors import ConfigError
from scaling.rundir import RunDir
from sweeps.grid import resolve
from sweeps.schema import load_sweep
from sweeps.tracking import tracking_for


def _records(path):
    """The records of a wandb transaction log (.wandb): a leveldb-style log of protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        buf += data[pos:pos + n]
        pos += n
        if kind in (1, 4):  # FULL or LAST
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def _offline_runs(run):
    """[(run id, config, history rows)] of every offline wandb run under the run folder, oldest first.

    ``run.finish()`` waits for the exit record, not for the service to close its files: the tail of
    the transaction log can still be in the service's buffer (seen once in CI: the last 11 history
    rows missing). ``wandb.teardown()`` stops the service, which closes every file, before reading."""
    wandb.teardown()
    out = []
    for f in sorted((run.path / "wandb").glob("offline-run-*/run-*.wandb")):
        rid, config, rows, kind = None, {}, [], None
        for rec in _records(f):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                rid = rec.run.run_id
                config.update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
            elif kind == "config":
                config.update({i.key: json.loads(i.value_json) for i in rec.config.update})
            elif kind == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
        assert kind == "exit", f"{f}: the log ends with a {kind} record, not the run's exit record"
        out.append((rid, config, rows))
    return out


def _tracked_run(prepared, tmp_path):
    sw = load_sweep(write_sweep(tmp_path / "s.yaml", prepared, models=["toy-xs"], arms=["textless"], budgets=[4e9],
                                train={"seq_len": 64, "batch_size": 4, "lr": 3e-3, "min_lr": 3e-4, "warmup_frac": 0.1,
                                       "val_sequences": 4, "checkpoint_every": 3, "keep_checkpoints": True}))
    (spec,) = resolve(sw)
    run = RunDir(sw.runs_dir / spec.run_id).create(spec)
    tracking_for(sw, spec, "offline").write(run.path)
    return sw, spec, run


def test_wandb_receives_step_metrics_while_the_run_trains(prepared, tmp_path, monkeypatch):
    from trainer.execute import execute

    monkeypatch.setenv("WANDB_SILENT", "true")
    sw, spec, run = _tracked_run(prepared, tmp_path)
    rec = execute(run)
    (wb,) = _offline_runs(run)
    rid, config, rows = wb
    assert rid == spec.run_id
    assert config["sweep"] == "tiny" and config["arm"] == "textless" and config["model"] == "toy-xs"
    assert config["budget"] == 4e9 and config["plan"]["run_id"] == spec.run_id and config["plan"]["tokens"] == spec.tokens
    steps = [r for r in run.metrics() if "loss" in r]
    logged = [r for r in rows if "loss" in r]
    assert [(r["step"], r["loss"]) for r in logged] == [(r["step"], r["loss"]) for r in steps]
    # logged live by the loop: every step row reached wandb before the result record was written
    written = run.result_path.stat().st_mtime
    assert max(r["_timestamp"] for r in logged) <= written
    final = [r for r in rows if r.get("eval_kind") == "final"]
    assert final and final[0]["val_loss_speech"] == pytest.approx(rec["val_loss_speech"])


def test_restarted_run_continues_the_same_wandb_run(prepared, tmp_path, monkeypatch):
    from trainer import loop
    from trainer.execute import execute

    monkeypatch.setenv("WANDB_SILENT", "true")
    sw, spec, run = _tracked_run(prepared, tmp_path)
    real_step = crash_at_step(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        execute(run)
    monkeypatch.setattr(loop.Trainer, "step", real_step)
    time.sleep(1.1)  # wandb names an offline run's folder by its start second: a restart a second later
    execute(run)
    first, second = _offline_runs(run)
    assert first[0] == second[0] == spec.run_id  # one wandb run id: the restart resumes it
    first_steps = [r["step"] for r in first[2] if "loss" in r]
    second_steps = [r["step"] for r in second[2] if "loss" in r]
    assert max(first_steps) <= 7 and min(second_steps) > 6  # resumed from the step-6 checkpoint
    assert max(second_steps) == spec.steps


def test_wandb_missing_is_a_clear_error(prepared, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
    from scaling.cli import main

    sweep = write_sweep(tmp_path / "s.yaml", prepared)
    assert main(["run", str(sweep), "--wandb"]) == 2
    assert "speech-scaling[wandb]" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "x").exists()
    with pytest.raises(ConfigError, match="offline, online"):
        tracking_for(load_sweep(sweep), resolve(load_sweep(sweep))[0], "loud")
