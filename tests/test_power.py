"""Power analysis of a grid (`scaling power PLAN --law LAW`): simulated studies at the planned points say
whether the parametric fit would pin its law down, before anything trains."""
from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.fits.parametric import fit_parametric
from analysis.fits.synthetic import Law, isoflop_grid
from analysis.power import format_power, laws_from_fits, parse_law, plan_points, simulate
from conftest import write_sweep
from scaling.cli import main
from scaling.errors import ConfigError

CHINCHILLA = Law(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def _grid(decades: float, n_budgets: int, spread: float, noise_seed: int = 0):
    C, N, D, _ = isoflop_grid(CHINCHILLA, np.random.default_rng(noise_seed), n_budgets=n_budgets, n_sizes=5,
                              c_min=1e18, decades=decades, spread=spread, noise=0.0)
    return C, N, D


def test_a_wide_grid_is_well_conditioned_and_a_narrow_one_is_not():
    """The same law and noise: three decades of compute with sizes over 30x identify the exponents
    (intervals inside the diagnostic's limit, no study flagged); one decade with sizes over 4x does not."""
    C, N, D = _grid(3.0, 7, 30.0)
    wide = simulate(N, D, CHINCHILLA, noise=0.005, replicates=4, resamples=60, budgets=C)
    C, N, D = _grid(1.0, 4, 4.0)
    narrow = simulate(N, D, CHINCHILLA, noise=0.005, replicates=4, resamples=60, budgets=C)
    assert wide["flagged"] == 0.0 and max(wide["width_ratio"].values()) < 1.0, wide
    assert narrow["flagged"] >= 0.75 and narrow["width_ratio"]["alpha"] > 1.0, narrow
    assert narrow["width"]["alpha"] > 3 * wide["width"]["alpha"]
    assert wide["n_points"] == 35 and wide["c_span"] == pytest.approx(1000.0)
    # the held-out largest budget is predicted from the rest: close on the wide grid
    assert wide["held_out_error"] < 0.01
    assert "in 0% of the studies: well conditioned" in format_power("x", wide)
    assert "in 100% of the studies: ill-conditioned in most studies; most often: wide interval of" in format_power("x", narrow)


def test_more_noise_widens_the_intervals():
    C, N, D = _grid(2.0, 5, 10.0)
    quiet = simulate(N, D, CHINCHILLA, noise=0.002, replicates=3, resamples=60, budgets=C)
    loud = simulate(N, D, CHINCHILLA, noise=0.02, replicates=3, resamples=60, budgets=C)
    for k in ("alpha", "beta", "a"):
        assert loud["width"][k] > 2 * quiet["width"][k], k


def test_plan_points_are_run_ends_and_cooldown_branches():
    rows = [{"arm": "textlm", "params": 10, "tokens": 100, "budget": None, "cooldowns": []},
            {"arm": "textless", "params": 1000, "tokens": 40000, "budget": 2.4e8, "cooldowns": [10000, 20000]},
            {"arm": "textless", "params": 2000, "tokens": 20000, "budget": 2.4e8, "cooldowns": []}]
    (arm, (N, D, C, runs)), = plan_points(rows).items()
    assert arm == "textless" and runs.tolist() == [1, 1, 1, 2]  # a run's branches and end share its run
    assert N.tolist() == [1000, 1000, 1000, 2000] and D.tolist() == [10000, 20000, 40000, 20000]
    assert C.tolist() == [6e7, 1.2e8, 2.4e8, 2.4e8]  # a branch's budget is its 6ND; an end keeps the planned one


def test_fit_records_its_scatter_and_the_pilot_law_is_read_back(tmp_path):
    C, N, D = _grid(2.0, 5, 10.0)
    L = CHINCHILLA.loss(N, D) * np.exp(np.random.default_rng(3).normal(0, 0.01, N.size))
    fit = fit_parametric(N, D, L)
    rms = np.sqrt(np.mean((np.log(L) - np.log(fit.predict(N, D))) ** 2))
    assert fit.extra["log_residual_rms"] == pytest.approx(rms, rel=1e-9) and 0.004 < rms < 0.02
    path = tmp_path / "fits.json"
    path.write_text(json.dumps({"arms": {"textless": {"parametric": fit.to_dict()}, "x": {"parametric": {"error": "no"}}}}))
    (arm, (law, noise)), = laws_from_fits(path).items()
    assert arm == "textless" and noise.point_sd == pytest.approx(rms) and noise.run_sd == 0
    assert law.alpha == pytest.approx(fit.alpha)
    # a fits.json with the run-level noise model: read as it is
    model = {"run_sd": 0.008, "point_sd": 0.003, "slope_sd": 0.0, "n_runs": 7, "n_points": 45}
    path.write_text(json.dumps({"arms": {"textless": {"parametric": {**fit.to_dict(), "extra": {"noise": model}}}}}))
    (_, (_, noise)), = laws_from_fits(path).items()
    assert noise.to_dict() == model


@pytest.mark.parametrize("text,words", [
    ("E=1,A=2,B=3,alpha=0.3", "missing beta"),
    ("E=1,A=2,B=3,alpha=0.3,beta=x", "'beta' is not a number"),
    ("E=1,A=2,B=3,alpha=-0.3,beta=0.2", "'alpha' must be"),
    ("E:1,A:2", "expected"),
    ("E=1;A=2", "'E' is not a number"),
])
def test_bad_law_is_refused(text, words):
    with pytest.raises(ConfigError, match=words) as e:
        parse_law(text)
    assert e.value.field == "--law"


def _wsd_plan(prepared, tmp_path, capsys):
    """The plan JSON of a 3-size x 3-budget wsd sweep of the textless arm."""
    sweep = write_sweep(tmp_path / "s.yaml", prepared, models=["toy-xs", "toy-s", "toy-m"], budgets=[2e9, 4e9, 8e9],
                        arms=["textless"], train={"seq_len": 64, "batch_size": 4, "lr": 3e-3, "min_lr": 3e-4,
                                                  "warmup_frac": 0.1, "val_sequences": 4, "schedule": "wsd"})
    plan = tmp_path / "plan.json"
    assert main(["plan", str(sweep), "--json", str(plan)]) == 0
    capsys.readouterr()
    return plan


def test_power_of_a_planned_sweep(prepared, tmp_path, capsys):
    plan = _wsd_plan(prepared, tmp_path, capsys)
    law = "E=1.5,A=30,B=400,alpha=0.35,beta=0.4"
    assert main(["power", str(plan), "--law", law, "--noise", "0.01", "--replicates", "2", "--resamples", "30"]) == 0
    out = capsys.readouterr().out
    assert "power of the parametric fit, arm 'textless': 2 simulated studies of its 9 points from 3 runs" in out
    assert "flagged ill-conditioned (CAUTION) in" in out and "alpha      0.35" in out
    # a pilot fits.json without the plan's arm, a law with no recorded scatter and no --noise: exit 2, why
    pilot = tmp_path / "fits.json"
    pilot.write_text(json.dumps({"arms": {"a": {"parametric": {"E": 1, "A": 2, "B": 3, "alpha": 0.3, "beta": 0.3}},
                                          "b": {"parametric": {"E": 1, "A": 2, "B": 3, "alpha": 0.3, "beta": 0.3}}}}))
    assert main(["power", str(plan), "--law", str(pilot)]) == 2
    err = capsys.readouterr().err
    assert str(pilot) in err and "'arms'" in err and "textless" in err
    assert main(["power", str(plan), "--law", law]) == 2
    assert "'--noise'" in capsys.readouterr().err
    assert main(["power", str(plan), "--law", law, "--noise", "0.01", "--replicates", "1"]) == 2
    assert "'--replicates'" in capsys.readouterr().err


@pytest.mark.parametrize("body,field", [
    ("{}", None),
    ("[]", None),
    ('[{"arm": "textless", "params": 10}]', "[0].tokens"),
    ('[{"arm": "textless", "params": -1, "tokens": 5}]', "[0].params"),
    ('[{"arm": "textless", "params": 10, "tokens": 5, "cooldowns": [0]}]', "[0].cooldowns"),
    ('[{"arm": "textlm", "params": 10, "tokens": 5}]', None),
])
def test_bad_plan_is_refused(tmp_path, capsys, body, field):
    plan = tmp_path / "plan.json"
    plan.write_text(body)
    assert main(["power", str(plan), "--law", "E=1,A=2,B=3,alpha=0.3,beta=0.3", "--noise", "0.01"]) == 2
    err = capsys.readouterr().err
    assert str(plan) in err and (field is None or f"'{field}'" in err), err


def test_a_study_whose_fit_diverges_counts_as_flagged(monkeypatch):
    """`scaling fit` refuses a diverged or degenerate fit (ConfigError); a simulated study that ends so is
    flagged, with that reason, instead of ending the power analysis."""
    from analysis.fits import parametric

    C, N, D = _grid(1.0, 3, 4.0)
    calls = []
    real = parametric.fit_parametric

    def every_other_diverges(*a, **kw):
        calls.append(1)
        if len(calls) % 2:
            raise ConfigError("the parametric fit diverged")
        return real(*a, **kw)

    monkeypatch.setattr(parametric, "fit_parametric", every_other_diverges)
    res = simulate(N, D, CHINCHILLA, noise=0.005, replicates=2, resamples=30, budgets=C)
    assert res["reasons"].get("no fit (diverged or degenerate)", 0) >= 1 and res["flagged"] >= 0.5
    assert "no fit (diverged or degenerate)" in format_power("x", res)


def test_run_level_noise_is_shared_by_a_runs_points():
    """The simulator draws one offset per run for its end and branches: with all of the noise at the run level,
    the points of a run deviate together; the result says how many runs the study had and its noise model."""
    from analysis.noise import NoiseModel, draw

    runs = np.repeat(np.arange(5), 4)
    D = np.tile([1e5, 2e5, 4e5, 8e5], 5)
    eps = draw(NoiseModel(run_sd=0.01), runs, D, np.random.default_rng(0))
    assert np.allclose(eps.reshape(5, 4), eps.reshape(5, 4)[:, :1]) and eps.std() > 0.003
    N = np.repeat([1e4, 2e4, 4e4, 8e4, 1.6e5], 4)
    res = simulate(N, D, CHINCHILLA, noise=NoiseModel(run_sd=0.005, point_sd=0.002), runs=runs, replicates=2,
                   resamples=20)
    assert res["n_runs"] == 5 and res["noise"]["run_sd"] == 0.005 and np.isfinite(res["spread"]["alpha"])


def test_power_noise_flags(prepared, tmp_path, capsys):
    """--run-sd/--point-sd replace the pilot's parts; --noise (iid) cannot be mixed with them."""
    plan = _wsd_plan(prepared, tmp_path, capsys)
    law = "E=1.5,A=30,B=400,alpha=0.35,beta=0.4"
    assert main(["power", str(plan), "--law", law, "--run-sd", "0.01", "--point-sd", "0.002", "--replicates", "2",
                 "--resamples", "20"]) == 0
    assert "log-loss noise per run 1%, per point 0.2%" in capsys.readouterr().out
    assert main(["power", str(plan), "--law", law, "--noise", "0.01", "--run-sd", "0.01"]) == 2
    assert "'--noise'" in capsys.readouterr().err
