"""Grid kinds, data-less planning of the shipped sweeps, constraints, wsd cooldown grids and the
errors a malformed sweep gets before anything runs."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, write_sweep
from scaling.cli import main
from scaling.flops import count_params
from scaling.shapes import PUBLISHED
from sweeps.grid import resolve
from sweeps.plan import plan_rows, plan_totals
from sweeps.schema import load_sweep

CONFIGS = REPO / "sweeps" / "configs"
PUBLISHED_SIZES = {"qwen2.5-1.5b": 1.54e9, "qwen2.5-3b": 3.09e9, "qwen2.5-7b": 7.61e9}


def test_sims_plan_meets_acceptance_without_data(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", str(CONFIGS / "sims_qwen2.5.yaml"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "GPU-hours at 40% MFU" in text
    rows = json.loads(out.read_text())
    at_2e20 = {r["model"]: r for r in rows if r["budget"] == 2e20}
    assert set(at_2e20) == set(PUBLISHED_SIZES)
    assert [r["budget"] for r in rows if r["model"] == "qwen2.5-7b"] == [2e20, 6.86e20]
    for m, r in at_2e20.items():
        shape = PUBLISHED[m]
        rows_added = 152192 - shape.vocab_size  # 151,665 + 502 padded to 64
        expected = PUBLISHED_SIZES[m] + rows_added * shape.hidden_size * (1 if shape.tie_embeddings else 2)
        assert abs(r["params"] - expected) / expected < 0.01, (m, r["params"], expected)
        assert abs(r["tokens"] - 2e20 / (6 * r["params"])) / (2e20 / (6 * r["params"])) < 0.02
        assert r["flops"] == 6 * r["params"] * r["tokens"]
        assert r["gpu_hours"] == pytest.approx(r["flops_exact"] / (0.4 * 989e12) / 3600)
        assert r["init"].startswith("Qwen/")
    # the 7B at 6.86e20 is SIMS's final 15B-token run
    final = next(r for r in rows if r["budget"] == 6.86e20)
    assert abs(final["tokens"] - 15e9) / 15e9 < 0.02


def test_sims_run_refuses_without_data(capsys):
    assert main(["run", str(CONFIGS / "sims_qwen2.5.yaml")]) == 2
    err = capsys.readouterr().err
    assert "'data'" in err and "required to run" in err
    assert not (CONFIGS / "sims").exists()


def test_cuervo_ladder_plan(tmp_path):
    sw = load_sweep(CONFIGS / "textless_cuervo.yaml")
    rows = plan_rows(resolve(sw))
    assert len(rows) == 5 * 6 and {r["arm"] for r in rows} == {"textless"}
    published = {"cm-20m": 20e6, "cm-85m": 85e6, "cm-155m": 155e6, "cm-309m": 309e6, "cm-823m": 823e6}
    for r in rows:
        assert abs(r["non_embedding_params"] - published[r["model"]]) / published[r["model"]] < 0.1
        assert r["params"] - r["non_embedding_params"] == 512 * sw.shapes[r["model"]].hidden_size  # units vocab
    ratios = sorted({round(r["tokens_per_param"]) for r in rows})
    assert ratios == [2, 5, 10, 20, 50, 100]


def test_demo_configs_still_load_and_plan(prepared, tmp_path):
    for name in ("demo_quick.yaml", "demo.yaml", "demo_gpu.yaml"):
        cfg = yaml.safe_load((CONFIGS / name).read_text())
        cfg["data"] = str(prepared)
        p = tmp_path / name
        p.write_text(yaml.safe_dump(cfg))
        dropped = []
        specs = resolve(load_sweep(p), dropped=dropped)
        # wsd: per size and seed one text LM and one run per arm, each with a cooldown branch at every smaller budget
        # the sweep keeps (a D/N band in `constraints` may drop some of a size's budgets, or all of them at
        # this fixture's larger vocabulary: then the size has neither runs nor a text LM)
        gone = {m for m in cfg["models"]
                if sum(1 for _, model, *_ in dropped if model == m) == 2 * len(cfg["budgets"])}
        assert all("tokens/param" in why for *_, why in dropped), (name, dropped)
        assert len(gone) <= 1, (name, gone)
        k = int(cfg.get("replicates", 1))  # every run (and its text LM) once per seed
        assert len(specs) == (len(cfg["models"]) - len(gone)) * (1 + 2) * k, name
        speech = [s for s in specs if s.arm != "textlm"]
        for s in speech:
            lost = sum(1 for arm, model, *_ in dropped if (arm, model) == (s.arm, s.model))
            assert len(s.cooldowns) + 1 + lost == len(cfg["budgets"]), (name, s.run_id)


def test_tokens_per_param_and_explicit_grids(prepared, tmp_path):
    sw = load_sweep(write_sweep(tmp_path / "a.yaml", prepared, grid="tokens_per_param", budgets=None,
                                tokens_per_param=[20, 40], arms=["textless"]))
    specs = resolve(sw)
    assert len(specs) == 4
    for s in specs:
        n = count_params(s.shape).total
        assert s.tokens % 64 == 0 and abs(s.tokens / n - round(s.tokens / n / 20) * 20) <= 64 / n
        assert s.budget == 6.0 * n * s.tokens
    sw = load_sweep(write_sweep(tmp_path / "b.yaml", prepared, grid="explicit", budgets=None, arms=["textless"],
                                runs=[{"model": "toy-xs", "tokens": 6400}, {"model": "toy-s", "budget": 4e9}]))
    specs = resolve(sw)
    assert [(s.model, s.tokens) for s in specs][0] == ("toy-xs", 6400)
    n = count_params(specs[1].shape).total
    assert specs[1].budget == 4e9 and abs(specs[1].tokens - 4e9 / (6 * n)) <= 32


def test_log_spaced_budgets_and_inline_shapes(prepared, tmp_path):
    sw = load_sweep(write_sweep(tmp_path / "s.yaml", prepared, budgets={"start": 1e9, "stop": 1.6e10, "num": 5},
                                models=["toy-xs", {"name": "w64d2", "hidden_size": 64, "num_layers": 2}]))
    assert sw.budgets == pytest.approx([1e9, 2e9, 4e9, 8e9, 1.6e10])
    shape = sw.shapes["w64d2"]
    assert (shape.num_heads, shape.num_kv_heads, shape.intermediate_size) == (1, 1, 192)
    assert {s.model for s in resolve(sw)} == {"toy-xs", "w64d2"}


def test_max_params_drops_larger_models(prepared, tmp_path):
    sw = load_sweep(write_sweep(tmp_path / "s.yaml", prepared, constraints={"max_params": 70_000}))
    dropped = []
    specs = resolve(sw, dropped=dropped)
    assert {s.model for s in specs} == {"toy-xs"} and all(count_params(s.shape).total <= 7e4 for s in specs)
    assert dropped and all(d[1] == "toy-s" for d in dropped)


def test_wsd_grid_one_run_per_size_with_cooldowns(prepared, tmp_path, capsys):
    train = {"seq_len": 64, "batch_size": 4, "lr": 3e-3, "min_lr": 3e-4, "warmup_frac": 0.1, "val_sequences": 4,
             "schedule": "wsd", "cooldown_frac": 0.2}
    sweep = write_sweep(tmp_path / "s.yaml", prepared, budgets=[2e9, 4e9, 8e9], train=train)
    cos = resolve(load_sweep(write_sweep(tmp_path / "c.yaml", prepared, budgets=[2e9, 4e9, 8e9])))
    sw = load_sweep(sweep)
    specs = resolve(sw)
    speech = [s for s in specs if s.arm != "textlm"]
    assert len(speech) == 2 * 2  # one per (arm, size) instead of 3
    for s in speech:
        same = sorted(c.tokens for c in cos if c.arm == s.arm and c.model == s.model)
        assert s.tokens == same[-1] and s.cooldowns == same[:-1] and s.budget == 8e9
    tot = plan_totals(sw, specs, plan_rows(specs))
    assert 0 < tot["saved_flops"] < tot["cosine_flops"]
    cos_speech = sum(6 * count_params(c.shape).total * c.tokens for c in cos if c.arm != "textlm")
    text = sum(6 * count_params(c.shape).total * c.tokens for c in cos if c.arm == "textlm")
    assert tot["cosine_flops"] == pytest.approx(cos_speech + text)
    assert main(["plan", str(sweep)]) == 0
    assert "wsd schedule" in capsys.readouterr().out


def test_replicates_train_every_point_under_the_next_seeds(prepared, tmp_path):
    """``replicates``: a model's runs again under seed + 1, ... (distinct run ids, interleaved ones from a text
    LM of their own seed); per model with ``default`` for the rest; plan rows and plan points keep them apart."""
    from analysis.power import plan_points

    train = {"seq_len": 64, "batch_size": 4, "lr": 3e-3, "min_lr": 3e-4, "warmup_frac": 0.1, "val_sequences": 4,
             "schedule": "wsd", "cooldown_frac": 0.2}
    one = resolve(load_sweep(write_sweep(tmp_path / "one.yaml", prepared, budgets=[2e9, 4e9, 8e9], train=train, seed=3)))
    sw = load_sweep(write_sweep(tmp_path / "rep.yaml", prepared, budgets=[2e9, 4e9, 8e9], train=train, seed=3,
                                replicates={"default": 1, "toy-s": 3}))
    assert sw.seeds_of("toy-s") == [3, 4, 5] and sw.seeds_of("toy-xs") == [3]
    specs = resolve(sw)
    ids = [s.run_id for s in specs]
    assert len(ids) == len(set(ids))
    assert {s.run_id for s in one} <= set(ids)  # the first replicate is the run a sweep without replicates trains
    speech = [s for s in specs if s.arm != "textlm"]
    for arm in ("interleaved", "textless"):
        runs = [s for s in speech if s.arm == arm and s.model == "toy-s"]
        assert sorted(s.seed for s in runs) == [3, 4, 5]
        assert len({(s.tokens, tuple(s.cooldowns)) for s in runs}) == 1  # the same points, three times
        assert [s.seed for s in speech if s.arm == arm and s.model == "toy-xs"] == [3]
    lms = {s.run_id: s for s in specs if s.arm == "textlm"}
    for s in speech:
        if s.arm == "interleaved":
            lm = lms[s.init.split(":", 1)[1]]
            assert lm.model == s.model and lm.seed == s.seed
    rows = plan_rows(specs)
    assert sorted(r["seed"] for r in rows if r["arm"] == "textless" and r["model"] == "toy-s") == [3, 4, 5]
    N, D, C, R = plan_points(rows)["textless"]
    n_s = count_params(next(s for s in speech if s.model == "toy-s").shape).total
    assert len(np.unique(R[N == n_s])) == 3 and len(np.unique(R)) == 4  # three runs of toy-s, one of toy-xs
    # every count: an int for all models
    assert all(load_sweep(write_sweep(tmp_path / "all.yaml", prepared, replicates=2)).seeds_of(m) == [0, 1]
               for m in ("toy-xs", "toy-s"))


@pytest.mark.parametrize("override,field,words", [
    ({"replicates": 0}, "replicates", "positive integer"),
    ({"replicates": {"toy-q": 2}}, "replicates.toy-q", "names no model"),
    ({"replicates": {"toy-s": 1.5}}, "replicates.toy-s", "positive integer"),
    ({"replicates": "two"}, "replicates", "whole number of runs"),
    ({"models": ["qwen9-1t"]}, "models[0]", "unknown model"),
    ({"models": []}, "models", "non-empty"),
    ({"budgets": [4e9, 2e9]}, "budgets", "strictly increasing"),
    ({"budgets": {"start": 4e9, "stop": 2e9, "num": 3}}, "budgets.stop", "larger"),
    ({"constraints": {"max_params": 10}}, "constraints", "leave no runs"),
    ({"constraints": {"min_tokens_per_param": 1e6}}, "constraints", "leave no runs"),
    ({"grid": "explicit", "runs": [{"model": "toy-xs", "tokens": 6400}, {"model": "toy-xs", "tokens": 6400}]},
     "runs[1]", "same 6,400 tokens as runs[0]"),
    ({"grid": "explicit", "runs": [{"model": "toy-xl", "tokens": 6400}]}, "runs[0].model", "not in 'models'"),
    ({"grid": "tokens_per_param"}, "tokens_per_param", "non-empty"),
    ({"grid": "chinchilla"}, "grid", "unknown grid"),
    ({"tokenizer": "qwen2.5"}, "tokenizer", "planning without data"),
    ({"models": [{"name": "x", "hidden_size": 60, "num_layers": 2, "num_heads": 7}]}, "models[0].num_heads", "divisible"),
    # head dimension 10 / 2 = 5: planning used to pass it and training failed inside the rotary embedding
    ({"models": [{"name": "x", "hidden_size": 10, "num_layers": 2, "num_heads": 2}]}, "models[0].num_heads", "is odd"),
    ({"hyperparameters": {"lr": {"toy-xl": 1e-3}}}, "hyperparameters.lr.toy-xl", "not in 'models'"),
])
def test_malformed_sweeps_rejected_before_anything_runs(prepared, tmp_path, capsys, override, field, words):
    sweep = write_sweep(tmp_path / "sweep.yaml", prepared, **override)
    for cmd in (["plan", str(sweep)], ["run", str(sweep), "--workers", "2"]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert str(sweep) in err and f"'{field}'" in err and words in err, err
        assert err.count("field '") == 1 and err.count("(got ") <= 1, err  # named once, not re-wrapped
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results.csv").exists()


def test_plan_says_when_warmup_eats_a_cooldown_branch(prepared, tmp_path, capsys):
    """A wsd run warming up over 10% of itself spends ~40% of a branch at a quarter of its length warming
    up; the plan says so and names the setting; with warmup_basis: shortest it has nothing to say."""
    train = {"seq_len": 64, "batch_size": 4, "lr": 3e-3, "min_lr": 3e-4, "warmup_frac": 0.1, "val_sequences": 4,
             "schedule": "wsd"}
    for basis, expect in (("run", True), ("shortest", False)):
        sweep = write_sweep(tmp_path / f"{basis}.yaml", prepared, models=["toy-xs"], arms=["textless"],
                            budgets=[2e9, 4e9, 8e9], train={**train, "warmup_basis": basis})
        assert main(["plan", str(sweep)]) == 0
        out = capsys.readouterr().out
        assert ("note: warmup takes 38% of the first cooldown branch" in out) is expect, out  # 3 of 8 steps
        assert ("train.warmup_basis: shortest" in out) is expect
