"""Designing a grid before it trains (`scaling design`): the run-level noise model, the analytic predictor of
the fit's interval widths, and the search that beats a hand-made grid at no more compute."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from analysis.design import predict
from analysis.fits.parametric import fit_parametric
from analysis.fits.synthetic import Law
from analysis.noise import NoiseModel, draw, estimate_noise
from analysis.power import simulate
from conftest import write_sweep
from scaling.cli import main

PILOT = Law(E=1.5, A=30.0, B=400.0, alpha=0.35, beta=0.4)


def _wsd_grid(sizes, budgets, lo=3.5, hi=800.0):
    """Points of a wsd isoFLOP grid: one run per size, a branch at every budget inside the band."""
    N, D, R = [], [], []
    for i, n in enumerate(sizes):
        for c in budgets:
            d = c / (6 * n)
            if lo <= d / n <= hi:
                N.append(n), D.append(d), R.append(i)
    return np.array(N), np.array(D), np.array(R)


def test_the_noise_model_splits_run_and_point_scatter():
    """Residuals about a fitted law, with runs sharing an offset 3x the points' own noise: the estimate
    finds most of the scatter at the run level (averaged over studies, as one study has few runs)."""
    N, D, R = _wsd_grid([7.5e3, 1.2e4, 2e4, 2.9e4, 5.5e4, 9e4], np.geomspace(2e10, 2e11, 7))
    rng = np.random.default_rng(0)
    truth = NoiseModel(run_sd=0.009, point_sd=0.003)
    got = []
    for _ in range(4):
        L = PILOT.loss(N, D) * np.exp(draw(truth, R, D, rng))
        got.append(estimate_noise(fit_parametric(N, D, L), N, D, L, R))
    run = np.sqrt(np.mean([g.run_sd ** 2 for g in got]))
    point = np.sqrt(np.mean([g.point_sd ** 2 for g in got]))
    assert 0.5 * truth.run_sd < run < 2 * truth.run_sd and 0.6 * truth.point_sd < point < 1.6 * truth.point_sd
    assert run > 1.5 * point and got[0].n_runs == 6 and got[0].n_points == N.size
    # one point per run (a cosine grid): run and point noise cannot be told apart, all of it is per point
    L = PILOT.loss(N, D) * np.exp(np.random.default_rng(1).normal(0, 0.01, N.size))
    iid = estimate_noise(fit_parametric(N, D, L), N, D, L, np.arange(N.size))
    assert iid.run_sd == 0.0 and 0.005 < iid.point_sd < 0.02


@pytest.mark.parametrize("law,noise", [
    (Law(E=1.5, A=30.0, B=400.0, alpha=0.35, beta=0.4), NoiseModel(point_sd=0.008)),
    (Law(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28), NoiseModel(point_sd=0.006)),
    (Law(E=2.0, A=12.0, B=900.0, alpha=0.25, beta=0.5), NoiseModel(point_sd=0.007)),
])
def test_the_predicted_bootstrap_widths_match_the_simulator(law, noise):
    """The linearised Huber fit predicts the median bootstrap 95% width of alpha, beta and a of simulated
    studies (each fitted and bootstrapped as `scaling fit --bootstrap` does) within 25%."""
    N, D, R = _wsd_grid([7.5e3, 1.2e4, 2e4, 3.5e4, 6e4], np.geomspace(2e10, 2e11, 6))
    pred = predict(law, N, D, R, noise)
    sim = simulate(N, D, law, noise=noise, runs=R, replicates=5, resamples=40, seed=2)
    for k in ("alpha", "beta", "a"):
        assert pred["bootstrap"][k] == pytest.approx(sim["width"][k], rel=0.25), (k, pred, sim["width"])


def test_run_level_noise_widens_the_true_spread_beyond_the_bootstrap():
    """With the same total scatter, moving it to the run level leaves the predicted bootstrap width (points
    taken as independent) about where it was, but widens the spread of the estimate across studies."""
    N, D, R = _wsd_grid([7.5e3, 1.2e4, 2e4, 3.5e4, 6e4], np.geomspace(2e10, 2e11, 6))
    iid = predict(PILOT, N, D, R, NoiseModel(point_sd=0.009))
    runs = predict(PILOT, N, D, R, NoiseModel(run_sd=0.0085, point_sd=0.003))
    assert runs["sampling"]["alpha"] > 1.5 * iid["sampling"]["alpha"]
    assert runs["sampling"]["alpha"] > 1.5 * runs["bootstrap"]["alpha"]
    assert iid["sampling"]["alpha"] == pytest.approx(iid["bootstrap"]["alpha"], rel=0.15)


def test_design_beats_a_hand_made_grid_at_no_more_compute(prepared, tmp_path, capsys):
    """`scaling design` on a pilot fits.json with run-level noise returns a grid at no more compute whose
    predicted width of a is at most 0.6x today's, writes it as a sweep file that plans, and says so."""
    models = ["micro-4k", "micro-8k", "micro-15k", "micro-23k", "micro-46k", "micro-81k"]
    # today's hand-made grid: three middle sizes, budgets over 1.7x
    sweep = write_sweep(tmp_path / "today.yaml", prepared, models=models[1:4], arms=["textless"],
                        budgets=[1.2e11, 1.4e11, 1.7e11, 2e11],
                        train={"seq_len": 64, "batch_size": 4, "lr": 3e-3, "min_lr": 3e-4, "warmup_frac": 0.1,
                               "val_sequences": 4, "schedule": "wsd", "cooldown_frac": 0.1},
                        constraints={"min_steps": 8, "min_tokens_per_param": 3.5, "max_tokens_per_param": 800})
    par = {"E": PILOT.E, "A": PILOT.A, "B": PILOT.B, "alpha": PILOT.alpha, "beta": PILOT.beta,
           "extra": {"noise": NoiseModel(run_sd=0.0008, point_sd=0.0003, n_runs=5, n_points=25).to_dict()}}
    fits = tmp_path / "fits.json"
    fits.write_text(json.dumps({"arms": {"textless": {"parametric": par}}}))
    out = tmp_path / "designed.yaml"
    assert main(["design", str(sweep), "--law", str(fits), "--ladder", ",".join(models), "--confirm", "0",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    today = next(line for line in text.splitlines() if "today's grid" in line).split()
    best = text.split("best under the limit:")[1].splitlines()[1].split()
    flops_today, flops_best = float(today[2]), float(best[1])
    width_today, width_best = float(today[7]), float(best[6])
    assert flops_best <= flops_today and width_best <= 0.6 * width_today, text
    doc = yaml.safe_load(out.read_text())
    assert doc["train"]["lr"] == 3e-3 and doc["arms"] == ["textless"] and doc["grid"] == "isoflop"
    assert set(doc["models"]) <= set(models) and len(doc["models"]) >= 4
    assert main(["plan", str(out)]) == 0  # the sweep schema accepts it
    assert out.read_text().startswith("# Designed by `scaling design`")


def test_design_refuses_bad_input(prepared, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "s.yaml", prepared, models=["micro-8k", "micro-15k", "micro-23k", "micro-46k"],
                        arms=["textless"], budgets=[2.25e10, 4e10])
    law = "E=1.5,A=30,B=400,alpha=0.35,beta=0.4"
    assert main(["design", str(sweep), "--law", law]) == 2  # no noise to assume
    assert "'--noise'" in capsys.readouterr().err
    assert main(["design", str(sweep), "--law", law, "--run-sd", "0.01", "--target", "loss"]) == 2
    assert "'--at-compute'" in capsys.readouterr().err
    assert main(["design", str(tmp_path / "none.yaml"), "--law", law, "--noise", "0.01"]) == 2
    assert "sweep file not found" in capsys.readouterr().err
    assert main(["design", str(sweep), "--law", law, "--noise", "0.01", "--frontier", "0"]) == 2
    assert "'--frontier'" in capsys.readouterr().err
    (tmp_path / "a_folder").mkdir()
    assert main(["design", str(sweep), "--law", law, "--noise", "0.01", "--out", str(tmp_path / "a_folder")]) == 2
    err = capsys.readouterr()
    assert "'--out'" in err.err and "design of a grid" not in err.out  # refused before the search


def _design_rows(out: str) -> dict[str, float]:
    """The predicted width column of `scaling design`'s "today's grid" and "#1" rows."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("  today's grid"):
            rows["today"] = float(parts[7])
        elif line.startswith("  #1"):
            rows["best"] = float(parts[6])
    return rows


def test_design_searches_the_template_grid_and_never_returns_a_worse_one(tmp_path, capsys):
    """A wide cosine template with no tokens-per-parameter band (the Qwen2.5 isoFLOP sweep spans 200x in
    compute): the search must reach grids like it, and what it writes is never predicted worse than it."""
    from importlib import resources

    template = tmp_path / "isoflop.yaml"
    template.write_text(resources.files("sweeps").joinpath("configs", "isoflop_qwen2.5.yaml").read_text())
    law = "E=1.69,A=406.4,B=410.7,alpha=0.34,beta=0.28"
    out = tmp_path / "designed.yaml"
    assert main(["design", str(template), "--law", law, "--noise", "0.01", "--confirm", "0", "--out", str(out)]) == 0
    rows = _design_rows(capsys.readouterr().out)
    assert rows["best"] <= rows["today"]
    doc = yaml.safe_load(out.read_text())
    assert max(doc["budgets"]) / min(doc["budgets"]) > 20  # a span the fixed 5-20x candidates never had


def test_design_keeps_the_template_grid_when_no_candidate_beats_it(tmp_path, capsys, monkeypatch):
    """Only worse candidates (a 5x span of budgets where the template spans 200x): the design says so and
    writes the template's own grid, not the best of the worse ones."""
    from importlib import resources

    import analysis.design_run as design_run
    from analysis.design_grid import log_budgets

    template = tmp_path / "isoflop.yaml"
    template.write_text(resources.files("sweeps").joinpath("configs", "isoflop_qwen2.5.yaml").read_text())
    ladder = yaml.safe_load(template.read_text())["models"]
    monkeypatch.setattr(design_run, "candidates", lambda *a, **k: iter(
        [(tuple(ladder), log_budgets(2e19, 1e20, 5), (None, None), {})]))
    out = tmp_path / "designed.yaml"
    assert main(["design", str(template), "--law", "E=1.69,A=406.4,B=410.7,alpha=0.34,beta=0.28", "--noise", "0.01",
                 "--confirm", "0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    rows = _design_rows(text)
    assert rows["best"] > rows["today"] and "no candidate under the limit beats today's grid" in text
    from scaling import yamlio

    assert yamlio.load(out, what="sweep")["budgets"] == yamlio.load(template, what="sweep")["budgets"]


def test_design_buys_seeds_where_run_scatter_dominates(prepared, tmp_path, capsys):
    """With run-to-run scatter 20x a point's own and no other size to add, twice the compute is best spent on
    a second seed of every run (more budgets add points, not runs): the design writes ``replicates`` and its
    grid plans with two runs per size; the grid of one seed per size it also printed is wider."""
    models = ["micro-8k", "micro-15k", "micro-23k", "micro-46k"]
    train = {"seq_len": 64, "batch_size": 4, "lr": 3e-3, "min_lr": 3e-4, "warmup_frac": 0.1, "val_sequences": 4,
             "schedule": "wsd", "cooldown_frac": 0.1}
    sweep = write_sweep(tmp_path / "today.yaml", prepared, models=models, arms=["textless"],
                        budgets=[4e10, 8e10, 1.6e11], train=train,
                        constraints={"min_steps": 8, "min_tokens_per_param": 3.5, "max_tokens_per_param": 800})
    par = {"E": PILOT.E, "A": PILOT.A, "B": PILOT.B, "alpha": PILOT.alpha, "beta": PILOT.beta,
           "extra": {"noise": NoiseModel(run_sd=0.01, point_sd=0.0005, n_runs=4, n_points=12).to_dict()}}
    fits = tmp_path / "fits.json"
    fits.write_text(json.dumps({"huber_delta": 0.03, "arms": {"textless": {"parametric": par}}}))
    rows = json.loads((lambda p: (main(["plan", str(sweep), "--json", str(p)]), p.read_text())[1])(tmp_path / "p.json"))
    today_flops = sum(6 * r["params"] * (r["tokens"] + 0.1 * sum(r["cooldowns"])) for r in rows)
    capsys.readouterr()
    out = tmp_path / "designed.yaml"
    args = ["design", str(sweep), "--law", str(fits), "--confirm", "0", "--interval", "sampling",
            "--max-flops", f"{2.2 * today_flops:.6g}", "--min-sizes", "4"]
    assert main(args + ["--seeds", "1", "--out", str(tmp_path / "one.yaml")]) == 0
    one_seed = _design_rows(capsys.readouterr().out)["best"]
    assert main(args + ["--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Huber delta 0.03" in text  # the pilot fits.json's delta, not scaling fit's default
    assert _design_rows(text)["best"] < 0.85 * one_seed, text
    doc = yaml.safe_load(out.read_text())
    assert doc["replicates"] and set(doc["replicates"]) <= set(doc["models"])
    assert all(k == 2 for k in doc["replicates"].values())
    assert main(["plan", str(out), "--json", str(tmp_path / "w.json")]) == 0
    planned = json.loads((tmp_path / "w.json").read_text())
    for m, k in doc["replicates"].items():
        assert sorted(r["seed"] for r in planned if r["model"] == m) == list(range(k))


def test_the_exponents_target_is_the_worst_exponent_over_its_limit():
    """``exponents`` ranks grids the way the fit's verdict flags them: the worst of alpha, beta and a, each
    over the verdict's 'wide' limit."""
    from analysis.design import wide_limit

    N, D, R = _wsd_grid([5e3, 1e4, 2e4, 4e4, 8e4], [2e10, 4e10, 8e10, 1.6e11])
    noise = NoiseModel(run_sd=0.005, point_sd=0.003, n_runs=5, n_points=int(N.size))
    for delta in (1e-3, 0.03):
        w = predict(PILOT, N, D, R, noise, delta=delta)
        for kind in ("bootstrap", "sampling"):
            ratios = {k: w[kind][k] / wide_limit(PILOT, k) for k in ("alpha", "beta", "a")}
            assert w[kind]["exponents"] == pytest.approx(max(ratios.values()))
    # a far larger Huber delta than the scatter is least squares: narrower than the near-LAD fit at 1e-3
    assert predict(PILOT, N, D, R, noise, delta=0.03)["sampling"]["a"] < predict(PILOT, N, D, R, noise)["sampling"]["a"]


@pytest.mark.parametrize("seeds", ["0", "1,x", "11", ""])
def test_design_refuses_bad_seed_counts(prepared, tmp_path, capsys, seeds):
    sweep = write_sweep(tmp_path / "s.yaml", prepared, models=["micro-8k", "micro-15k", "micro-23k", "micro-46k"],
                        arms=["textless"], budgets=[2.25e10, 4e10])
    assert main(["design", str(sweep), "--law", "E=1.5,A=30,B=400,alpha=0.35,beta=0.4", "--noise", "0.01",
                 "--seeds", seeds]) == 2
    err = capsys.readouterr().err
    assert "'--seeds'" in err and "counts of seeds per size" in err
