"""Sweep files, planning, the local launcher, and the CLI's handling of bad input."""
import csv
import json

import pytest
import yaml

from conftest import write_sweep
from scaling.cli import main
from scaling.flops import count_params
from sweeps.grid import resolve
from sweeps.schema import load_sweep


def _no_output(base):
    return not (base / "runs").exists() and not (base / "results.csv").exists()


@pytest.mark.parametrize("override,field", [
    ({"learning_rate": 1e-3}, "learning_rate"),
    ({"budgets": [-1.0e9, 4.0e9]}, "budgets[0]"),
    ({"budgets": [4.0e9, 2.0e9]}, "budgets"),
    ({"budgets": [1.0e6, 4.0e9]}, "budgets[0]"),  # too small for one optimiser step
    ({"data": "/nonexistent/data"}, "data"),
    ({"models": ["gpt-5"]}, "models[0]"),
    ({"models": []}, "models"),
    ({"train": {"seq_len": 64, "batch_size": 0}}, "train.batch_size"),
    ({"train": {"seq_len": 64, "warmup": 0.1}}, "train.warmup"),
])
def test_bad_sweep_rejected_before_anything_runs(prepared, tmp_path, capsys, override, field):
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared, **override)
    for cmd in (["plan", str(sweep)], ["run", str(sweep)]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert str(sweep) in err and f"'{field}'" in err, err
    assert _no_output(tmp_path)


def test_budget_too_small_message_names_value(prepared, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared, budgets=[1.0e6, 4.0e9])
    assert main(["run", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "1e+06" in err and "less than one optimiser step" in err


def test_isoflop_grid_tokens(prepared, tmp_path):
    sw = load_sweep(write_sweep(tmp_path / "sweep.yaml", prepared))
    specs = resolve(sw)
    assert [s.arm for s in specs[:2]] == ["textlm", "textlm"]  # dependencies first
    for s in specs[2:]:
        n = count_params(s.shape).total
        assert abs(s.tokens - s.budget / (6 * n)) <= s.train.seq_len / 2
        assert s.tokens % s.train.seq_len == 0
    inter = [s for s in specs if s.arm == "interleaved"]
    assert all(s.init == f"run:{specs[i].run_id}" for s in inter for i in [sw.models.index(s.model)])
    assert all(s.init == "random" for s in specs if s.arm == "textless")
    assert len({s.run_id for s in specs}) == len(specs)


def test_plan_json(prepared, tmp_path):
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared)
    assert main(["plan", str(sweep), "--json", str(tmp_path / "plan.json")]) == 0
    rows = json.loads((tmp_path / "plan.json").read_text())
    assert len(rows) == 2 + 2 * 2 * 2
    for r in rows:
        assert {"run_id", "model", "arm", "params", "non_embedding_params", "tokens", "flops", "flops_exact", "steps"} <= set(r)
        assert r["flops"] == 6 * r["params"] * r["tokens"]
        assert r["flops_exact"] > r["flops"] * 0.5
    assert _no_output(tmp_path)


@pytest.mark.slow
def test_run_sweep_then_rerun_trains_nothing(prepared, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared)
    assert main(["run", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert out.count(" done ") == 10
    with open(tmp_path / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 10 and all(r["status"] == "done" for r in rows)
    for r in rows:
        assert float(r["flops"]) == 6 * int(r["params"]) * int(r["tokens"])
        if r["arm"] != "textlm":
            assert 0 <= float(r["swuggy"]) <= 1 and float(r["val_loss_speech"]) > 0
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/result.json")}
    assert main(["run", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "already done; nothing to train" in out and "trained 0" in out
    assert mtimes == {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/result.json")}
    assert main(["status", str(sweep)]) == 0
    assert "done: 10" in capsys.readouterr().out


def test_status_of_unstarted_sweep(prepared, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared)
    assert main(["status", str(sweep)]) == 0
    assert "pending: 10" in capsys.readouterr().out


@pytest.mark.slow
def test_same_seed_gives_identical_results(prepared, tmp_path):
    tables = []
    for name in ("a", "b"):
        sweep = write_sweep(tmp_path / name / "sweep.yaml", prepared, models=["toy-xs"], arms=["interleaved", "textless"])
        assert main(["run", str(sweep)]) == 0
        tables.append((tmp_path / name / "results.csv").read_text())
    assert tables[0] == tables[1]
