"""Rollout check (largest model size held out) and the asymmetric --overestimate-penalty loss."""
import argparse
import json

import numpy as np
import pytest

from analysis.cli import add_fit_arguments, run_fit
from analysis.fits.bootstrap import bootstrap_parametric
from analysis.fits.extrapolation import RolloutCheck, rollout_check
from analysis.fits.parametric import ParametricFit, _Objective, default_grid, fit_parametric, objective_and_grad
from scaling.errors import ConfigError

TRUE = dict(E=1.7, A=400.0, B=1500.0, alpha=0.34, beta=0.28)
SIZES = np.geomspace(2e7, 1e9, 6)
SMALL_GRID = default_grid()[::15]


def law(N, D):
    return TRUE["E"] + TRUE["A"] / np.asarray(N) ** TRUE["alpha"] + TRUE["B"] / np.asarray(D) ** TRUE["beta"]


def ladder(seed, bias=0.02, noise=0.002):
    """6 sizes x 5 token counts from the law; the two smallest sizes under-tuned: each of their points
    lies above the law by an exponential amount (mean ``bias``)."""
    rng = np.random.default_rng(seed)
    NN, DD = np.meshgrid(SIZES, np.geomspace(4e8, 2e10, 5))
    N, D = NN.ravel(), DD.ravel()
    L = law(N, D) * np.exp(rng.normal(0, noise, N.size))
    L *= 1 + rng.exponential(bias, N.size) * (N < SIZES[2])
    return N, D, L


def test_penalised_gradient_matches_finite_differences():
    N, D, L = ladder(0)
    theta = np.array([[6.0, 7.3, 0.5, 0.3, 0.3], [2.0, 9.0, 0.2, 0.1, 0.5], [5.9, 7.2, 0.53, 0.33, 0.28]])
    for K in (1.0, 3.0):
        args = (np.log(N), np.log(D), np.log(L), 0.01)
        f, g = objective_and_grad(theta, *args, "sum", penalty=K)
        h = 1e-6
        for j in range(5):
            tp, tm = theta.copy(), theta.copy()
            tp[:, j] += h
            tm[:, j] -= h
            fd = (objective_and_grad(tp, *args, "sum", penalty=K)[0] - objective_and_grad(tm, *args, "sum", penalty=K)[0]) / (2 * h)
            np.testing.assert_allclose(g[:, j], fd, rtol=1e-4, atol=1e-8)
    # the penalty weighs exactly the over-predicted points (r > 0) K times
    x = np.array([[np.log(400.0), np.log(1500.0), np.log(1.71), 0.34, 0.28]])  # the true law, E 0.01 up
    r = np.log(1.71 + 400.0 / N ** 0.34 + 1500.0 / D ** 0.28) - np.log(L)
    hub = np.where(np.abs(r) <= 0.01, 0.5 * r ** 2, 0.01 * (np.abs(r) - 0.005))
    f3 = objective_and_grad(x, np.log(N), np.log(D), np.log(L), 0.01, "sum", penalty=3.0)[0][0]
    assert np.any(r > 0) and np.any(r < 0)
    assert f3 == pytest.approx(np.sum(np.where(r > 0, 3.0, 1.0) * hub), rel=1e-6)


def test_penalty_one_is_the_symmetric_fit_to_the_bit():
    N, D, L = ladder(1)
    base = fit_parametric(N, D, L, grid=SMALL_GRID)
    one = fit_parametric(N, D, L, grid=SMALL_GRID, overestimate_penalty=1)
    assert one.to_dict() == base.to_dict() and base.overestimate_penalty == 1.0
    theta = np.random.default_rng(0).normal([6, 7, 0.5, 0.3, 0.3], 0.1, (7, 5))
    plain = _Objective(np.log(N), np.log(D), np.log(L), 1e-3, "sum")
    pen1 = _Objective(np.log(N), np.log(D), np.log(L), 1e-3, "sum", penalty=1.0)
    for a, b in zip(plain(theta), pen1(theta)):
        assert np.array_equal(a, b)
    for bad in (0.5, float("nan"), float("inf"), "x"):
        with pytest.raises(ConfigError, match="overestimate_penalty"):
            fit_parametric(N, D, L, overestimate_penalty=bad)


def test_penalty_moves_the_fit_towards_the_truth_when_small_rungs_are_under_tuned():
    """Symmetric Huber on a ladder whose two smallest sizes lie above the law: alpha is biased up (it
    bends the law to reach them); K = 5 lets the law pass below them and recovers alpha and the loss of a
    10x larger model better."""
    err = {1: [], 5: []}
    pred = {1: [], 5: []}
    for seed in range(8):
        N, D, L = ladder(seed)
        for K in err:
            f = fit_parametric(N, D, L, grid=SMALL_GRID, overestimate_penalty=K)
            assert f.overestimate_penalty == K
            err[K].append(f.alpha - TRUE["alpha"])
            pred[K].append(abs(f.predict(1e10, 2e11) / law(1e10, 2e11) - 1))
    assert np.mean(err[1]) > 0.04  # the under-tuned rungs do bias the symmetric fit
    assert np.mean(np.abs(err[5])) < 0.5 * np.mean(np.abs(err[1]))
    assert np.mean(pred[5]) < np.mean(pred[1])


def test_bootstrap_refits_with_the_fits_own_penalty():
    N, D, L = ladder(0)
    sym = fit_parametric(N, D, L, grid=SMALL_GRID)
    pen = fit_parametric(N, D, L, grid=SMALL_GRID, overestimate_penalty=5)
    assert abs(pen.alpha - sym.alpha) > 0.05
    _, _, xb = bootstrap_parametric(pen, N, D, L, n_resamples=40, seed=0, return_samples=True)
    assert abs(np.median(xb[:, 3]) - pen.alpha) < abs(np.median(xb[:, 3]) - sym.alpha)
    d = json.loads(json.dumps(pen.to_dict()))
    assert d["overestimate_penalty"] == 5 and ParametricFit.from_dict(d).overestimate_penalty == 5
    assert "overestimate_penalty" in pen.summary()


def test_rollout_check_holds_out_the_largest_size():
    N, D, L = ladder(2, bias=0.0)
    chk = rollout_check(N, D, L, grid=SMALL_GRID)
    top = N == SIZES[-1]
    assert chk.held_out_params == SIZES[-1] and chk.n_test == 5 and chk.n_train == 25
    assert chk.n_sizes_train == 5 and chk.next_smaller_params == pytest.approx(SIZES[-2])
    ref = fit_parametric(N[~top], D[~top], L[~top], grid=SMALL_GRID)
    rel = (ref.predict(N[top], D[top]) - L[top]) / L[top]
    assert chk.mean_abs_rel_error == pytest.approx(np.mean(np.abs(rel)))
    assert chk.mean_signed_rel_error == pytest.approx(np.mean(rel))
    assert chk.max_abs_rel_error == pytest.approx(np.max(np.abs(rel)))
    assert chk.mean_abs_rel_error < 0.01  # the law holds: the larger model is predicted
    assert RolloutCheck.from_dict(json.loads(json.dumps(chk.to_dict()))) == chk
    # the penalty reaches the rollout's fit
    pen = rollout_check(N, D, L, grid=SMALL_GRID, overestimate_penalty=4)
    ref4 = fit_parametric(N[~top], D[~top], L[~top], grid=SMALL_GRID, overestimate_penalty=4)
    assert pen.predicted == pytest.approx(list(ref4.predict(N[top], D[top])))
    with pytest.raises(ConfigError, match="three model sizes"):
        rollout_check(N[N < SIZES[2]], D[N < SIZES[2]], L[N < SIZES[2]])


def _fit_args(argv):
    p = argparse.ArgumentParser()
    add_fit_arguments(p)
    return p.parse_args(argv)


def test_cli_records_rollout_laplace_and_penalty(tmp_path, capsys):
    import pandas as pd

    N, D, L = ladder(3)
    csv = tmp_path / "ladder.csv"
    pd.DataFrame({"params": N, "tokens": D, "loss": L, "budget": 6 * N * D}).to_csv(csv, index=False)
    out = tmp_path / "fits.json"
    assert run_fit(_fit_args([str(csv), "--json", str(out), "--overestimate-penalty", "3"])) == 0
    fits = json.loads(out.read_text())
    e = fits["arms"]["all"]
    assert fits["overestimate_penalty"] == 3.0 and e["parametric"]["overestimate_penalty"] == 3.0
    assert e["rollout"]["held_out_params"] == SIZES[-1] and "mean_signed_rel_error" in e["rollout"]
    assert set(e["parametric"]["ci_laplace"]) >= {"E", "A", "B", "alpha", "beta", "a"}
    text = capsys.readouterr().out
    assert "rollout (held-out largest size)" in text and "intervals (Laplace)" in text
    assert "overestimate penalty: 3" in text
    with pytest.raises(SystemExit) as exc:
        _fit_args([str(csv), "--overestimate-penalty", "0.5"])
    assert exc.value.code == 2
    with pytest.raises(ConfigError, match="parametric law only"):
        run_fit(_fit_args([str(csv), "--law", "isoflop", "--overestimate-penalty", "2"]))
