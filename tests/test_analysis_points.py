"""Points of the results table: a wsd run's cooldown branches are (N, D) points beside its end,
in results.csv and in the run-directory reader alike, and every fit uses them."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from analysis.load import load_results
from analysis.study import budget_of, fit_study
from scaling.errors import ConfigError
from scaling.flops import flops_6nd
from scaling.points import point_rows
from sweeps.grid import resolve
from sweeps.local import run_sweep
from sweeps.schema import load_sweep
from tests.conftest import write_sweep

WSD = {"seq_len": 64, "batch_size": 4, "lr": 3e-3, "min_lr": 3e-4, "warmup_frac": 0.1, "val_sequences": 4,
       "schedule": "wsd", "cooldown_frac": 0.2}
BUDGETS = [2e9, 4e9, 8e9]


@pytest.fixture(scope="module")
def wsd_sweep(prepared, tmp_path_factory):
    """A tiny wsd sweep trained end to end: one arm, two sizes, three budgets (two cooldown branches per run)."""
    root = tmp_path_factory.mktemp("wsd")
    sw = load_sweep(write_sweep(root / "s.yaml", prepared, arms=["textless"], budgets=BUDGETS, train=WSD,
                                eval={"benchmarks": ["swuggy"], "max_items": 8}))
    specs = resolve(sw)
    counts = run_sweep(sw, specs, echo=lambda *_: None)
    assert counts["failed"] == 0
    return root, specs


def test_results_csv_has_one_row_per_branch_and_end(wsd_sweep):
    root, specs = wsd_sweep
    df = load_results(root / "results.csv")
    assert len(specs) == 2 and len(df) == 2 * len(BUDGETS)
    assert df["point_id"].is_unique
    for spec in specs:
        rec = json.loads((root / "runs" / spec.run_id / "result.json").read_text())
        rows = df[df["run_id"] == spec.run_id].sort_values("tokens")
        branches = [e for e in rec["evals"] if e["kind"] == "cooldown"]
        assert len(branches) == len(spec.cooldowns) == 2
        assert rows["tokens"].tolist() == [*spec.cooldowns, spec.tokens]
        assert rows["budget"].tolist() == BUDGETS  # the budgets the branches were planned for, not 6ND rounded
        assert rows["kind"].tolist() == ["cooldown", "cooldown", "final"]
        for (_, row), ev in zip(rows.iterrows(), branches + [rec]):
            assert row["val_loss_speech"] == ev["val_loss_speech"]
            assert row["swuggy"] == ev["swuggy"]
            assert row["flops"] == flops_6nd(rec["params"], ev["tokens"])
            assert row["point_id"] == (spec.run_id if ev is rec else f"{spec.run_id}@{ev['tokens']}")
        # each point says how often it repeated its data, the run's end as its record does
        assert rows["epochs"].tolist()[-1] == rec["epochs"] > 0
        assert rows["epochs"].tolist() == pytest.approx([rec["epochs"] * t / spec.tokens for t in rows["tokens"]], abs=1e-4)
        # periodic evaluations are mid-schedule: never points
        assert not any(e["kind"] == "periodic" and e["tokens"] in rows["tokens"].tolist()[:-1] for e in rec["evals"])


def test_runs_dir_reader_gives_the_same_table(wsd_sweep):
    root, _ = wsd_sweep
    csv = load_results(root / "results.csv").sort_values("point_id").reset_index(drop=True)
    runs = load_results(root / "runs").sort_values("point_id").reset_index(drop=True)
    cols = sorted(set(csv.columns) | set(runs.columns))
    assert set(csv.columns) == set(runs.columns)
    pd.testing.assert_frame_equal(csv[cols], runs[cols], check_dtype=False)


def test_fit_study_uses_every_point(wsd_sweep):
    root, _ = wsd_sweep
    df = load_results(root / "results.csv")
    fits = fit_study(df, metrics=["swuggy"])
    arm = fits["arms"]["textless"]
    assert arm["n_runs"] == 2 and arm["n_points"] == 6 and arm["n_runs_with_loss"] == 6
    assert arm["parametric"]["n_points"] == 6
    # holding out the largest budget leaves the 4 branch ends: too few for 5 parameters, and said so
    assert "at least 5 points, got 4" in arm["extrapolation"]["error"]
    assert [c for c, _ in arm["loss_envelope"]["points"]] == BUDGETS


def test_point_rows_skip_periodic_evals_and_keep_the_run():
    rec = {"run_id": "r1", "arm": "textless", "model": "m", "params": 1000, "non_embedding_params": 800,
           "tokens": 4000, "flops": 2.4e7, "flops_exact": 3.0e7, "budget": 2.4e7, "val_loss_speech": 2.0,
           "swuggy": 0.7, "swuggy_n": 500, "epochs": 1.6, "status": "done",
           "evals": [{"kind": "periodic", "tokens": 1000, "val_loss_speech": 3.0},
                     {"kind": "cooldown", "tokens": 2000, "budget": 1.2e7, "val_loss_speech": 2.5, "swuggy": 0.6,
                      "swuggy_n": 500},
                     {"kind": "cooldown", "tokens": 1500, "val_loss_speech": 2.7},
                     {"kind": "final", "tokens": 4000, "val_loss_speech": 2.0}]}
    rows = point_rows(rec)
    assert [r["point_id"] for r in rows] == ["r1@1500", "r1@2000", "r1"]
    assert [r["run_id"] for r in rows] == ["r1"] * 3
    b15, b20, fin = rows
    assert b20["budget"] == 1.2e7 and b20["swuggy"] == 0.6 and b20["swuggy_n"] == 500 and b20["flops"] == 6 * 1000 * 2000
    assert b20["flops_exact"] == pytest.approx(3.0e7 / 2)
    # passes over the data grow with the tokens read: a branch at half the run has read half as much
    assert [r["epochs"] for r in rows] == [pytest.approx(0.6), pytest.approx(0.8), 1.6]
    assert b15["budget"] is None and b15["swuggy"] is None  # no budget recorded: budget_of falls back to 6ND
    assert fin["val_loss_speech"] == 2.0 and fin["kind"] == "final" and fin["budget"] == 2.4e7
    df = pd.DataFrame(rows)
    assert budget_of(df).tolist() == [9e6, 1.2e7, 2.4e7]


def test_old_table_without_point_id_loads_and_duplicates_are_refused(tmp_path):
    old = pd.DataFrame({"run_id": ["a", "b"], "params": [1e6, 2e6], "tokens": [1e7, 1e7], "val_loss_speech": [3.0, 2.9]})
    old.to_csv(tmp_path / "old.csv", index=False)
    df = load_results(tmp_path / "old.csv")
    assert df["point_id"].tolist() == ["a", "b"] and df["kind"].tolist() == ["final", "final"]
    old.assign(point_id=["p", "p"]).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(ConfigError, match="duplicate point id") as e:
        load_results(tmp_path / "dup.csv")
    assert "dup.csv" in str(e.value) and "point_id" in str(e.value)


def test_wsd_grid_carries_branch_budgets_outside_the_run_id(prepared, tmp_path):
    sw = load_sweep(write_sweep(tmp_path / "s.yaml", prepared, arms=["textless"], budgets=BUDGETS, train=WSD))
    for spec in resolve(sw):
        assert spec.cooldown_budgets == BUDGETS[:-1] and len(spec.cooldowns) == 2
        assert dataclasses.replace(spec, cooldown_budgets=[]).run_id == spec.run_id
    with pytest.raises(ConfigError, match="one budget per cooldown branch"):
        dataclasses.replace(spec, cooldown_budgets=[1e9]).validate()


def test_training_curves_keep_each_branch_apart(wsd_sweep):
    from analysis.curves import load_curves

    root, specs = wsd_sweep
    curves = load_curves(root)
    for spec in specs:
        c = curves[curves.run_id == spec.run_id]
        assert set(c["curve"]) == {spec.run_id, *(f"{spec.run_id}@{t}" for t in spec.cooldowns)}
        main = c[(c.curve == spec.run_id) & (c.kind == "train")]
        assert main["tokens"].is_monotonic_increasing and main["tokens"].max() == spec.tokens
        for t in spec.cooldowns:  # a branch's lines end at its own budget, with its cooldown evaluation
            b = c[c.curve == f"{spec.run_id}@{t}"]
            assert b[b.kind == "train"]["tokens"].max() == t
            assert b[b.kind == "val"]["eval_kind"].tolist() == ["cooldown"]
