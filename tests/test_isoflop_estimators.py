"""isoFLOP minima as the literature estimates them: the windowed parabola (its stated rule), Porian et
al.'s interpolation estimator, the curvature warning and the auto default."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from analysis.fits.isoflop import IsoflopFit, curvature_check, fit_isoflop, window_mask
from scaling.errors import ConfigError

ALPHA, BETA, E, A, B = 0.34, 0.28, 1.7, 400.0, 1500.0
A_TRUE = BETA / (ALPHA + BETA)
G = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))


def law(N, D):
    return E + A / N ** ALPHA + B / D ** BETA


def grid(spread, sizes, budgets=(1e18, 1e19, 1e20, 1e21, 1e22), noise=0.0, seed=0):
    """Sizes n* x geomspace(1/spread, spread) at every budget (n* the law's optimum); relative noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        n_star = G * (C / 6) ** A_TRUE
        for N in n_star * np.geomspace(1 / spread, spread, sizes):
            rows.append((C, N, C / (6 * N), law(N, C / (6 * N)) * math.exp(rng.normal(0, noise))))
    return np.array(rows).T


def fixed_grid(sizes=18, noise=0.0, seed=0, budgets=(1e18, 1e19, 1e20, 1e21, 1e22)):
    """The same sizes at every budget, from 8x below the smallest budget's optimum to 8x above the largest's
    (as Porian et al. sample 5M-900M at every budget): each budget's minimum sits elsewhere in the grid,
    and the loss climbs far on both sides."""
    rng = np.random.default_rng(seed)
    lo, hi = G * (budgets[0] / 6) ** A_TRUE / 8, G * (budgets[-1] / 6) ** A_TRUE * 8
    rows = []
    for C in budgets:
        for N in np.geomspace(lo, hi, sizes):
            rows.append((C, N, C / (6 * N), law(N, C / (6 * N)) * math.exp(rng.normal(0, noise))))
    return np.array(rows).T


def test_window_rule_factor_topup_and_edge():
    N = np.array([1, 2, 3, 4, 8, 16, 32], dtype=float) * 1e6
    L = np.array([3.0, 2.9, 2.8, 2.75, 2.85, 3.1, 3.6])  # lowest at 4e6
    # within a factor 2 of 4e6: 2e6, 3e6, 4e6, 8e6
    assert window_mask(N, L, 2.0, 3).tolist() == [False, True, True, True, True, False, False]
    # a factor 1.2 keeps only 4e6: topped up with the nearest sizes in ln N to 3 (3e6, then 2e6 and 8e6
    # tie at a factor 2: the smaller first)
    assert window_mask(N, L, 1.2, 3).tolist() == [False, True, True, True, False, False, False]
    assert window_mask(N, L, 1.2, 5).tolist() == [True, True, True, True, True, False, False]  # 1e6 before 16e6
    # replicates of a size are averaged before the lowest is chosen, and stay together
    Nr, Lr = np.append(N, 8e6), np.append(L, 2.5)  # 8e6 now averages 2.675: the lowest
    m = window_mask(Nr, Lr, 2.0, 3)
    assert m[4] and m[-1] and not m[2]  # 4e6, 8e6, 16e6 kept; 3e6 is more than 2x from 8e6
    # the edge: the lowest loss at the smallest size; the window is one-sided, not shifted
    edge = window_mask(N, np.linspace(2.0, 3.0, N.size), 2.0, 3)
    assert edge.tolist() == [True, True, True, False, False, False, False]


def test_window_edge_budget_is_flagged_not_trusted():
    C, N, D, L = grid(4, 7)
    # drop every size above each budget's optimum but one: the lowest loss sits at or near the top of the grid
    keep = N <= G * (C / 6) ** A_TRUE * 1.01
    keep |= np.isclose(N, G * (C / 6) ** A_TRUE * 4 ** (-2 / 3))
    fit = fit_isoflop(C[keep], N[keep], D[keep], L[keep], method="window", keep_extrapolated=True)
    assert all(m.n_sizes <= m.n_sampled for m in fit.minima)
    assert all(m.n_sizes >= 3 for m in fit.minima)


def test_window_beats_all_sizes_on_a_grid_far_past_the_minimum():
    # the parabola over all sizes follows the far sides' curvature, differently at each budget
    C, N, D, L = fixed_grid(noise=0.0005)
    par = fit_isoflop(C, N, D, L, method="parabola")
    win = fit_isoflop(C, N, D, L, method="window", bootstrap=50)
    assert abs(win.a - A_TRUE) < 0.01 < abs(par.a - A_TRUE)
    assert win.options == {"window": 2.0, "min_sizes": 3}
    assert all(m.n_sizes < m.n_sampled == 18 for m in win.minima)
    # each window: the sizes within a factor 2 of that budget's lowest-loss size
    for m in win.minima:
        sel = C == m.budget
        best = N[sel][np.argmin(L[sel])]
        assert m.n_min >= best / 2 * (1 - 1e-9) and m.n_max <= best * 2 * (1 + 1e-9)
    # windows of 3 sizes fit exactly: no residuals, no interval, and the fit says so
    assert win.ci == {} and "no interval" in win.summary()
    four = fit_isoflop(C, N, D, L, method="window", min_sizes=4, bootstrap=50)
    assert all(m.n_sizes == 4 for m in four.minima) and abs(four.a - A_TRUE) < 0.01
    lo, hi = four.ci["a"]
    assert lo < four.a < hi and lo < A_TRUE < hi
    # windows of 3 and of more sizes in one fit: the exact ones add no residuals, the others give an interval
    extra = C == 1e20
    Nx = N[extra] * 1.27
    Cm, Nm = np.append(C, C[extra]), np.append(N, Nx)
    Lm = np.append(L, law(Nx, 1e20 / (6 * Nx)))
    mixed = fit_isoflop(Cm, Nm, Cm / (6 * Nm), Lm, method="window", bootstrap=30)
    assert sorted({m.n_sizes for m in mixed.minima}) == [3, 5] and mixed.bootstrap["n_used"] == 30
    assert mixed.ci["a"][0] <= mixed.a <= mixed.ci["a"][1]
    assert "window: sizes within a factor 2.0" in win.summary()
    assert IsoflopFit.from_dict(json.loads(json.dumps(win.to_dict()))).to_dict() == win.to_dict()


def test_window_bad_options_are_config_errors():
    C, N, D, L = grid(4, 7)
    with pytest.raises(ConfigError, match="window"):
        fit_isoflop(C, N, D, L, method="window", window=1.0)
    with pytest.raises(ConfigError, match="min_sizes"):
        fit_isoflop(C, N, D, L, method="window", min_sizes=2)
    with pytest.raises(ConfigError, match="method"):
        fit_isoflop(C, N, D, L, method="spline")


def test_interp_finds_the_minimum_of_the_curve_and_its_interval_covers_the_truth():
    C, N, D, L = fixed_grid(noise=0.0005)
    fit = fit_isoflop(C, N, D, L, method="interp", noise=0.002, bootstrap=200)
    assert fit.method == "interp" and all(m.form == "interp" for m in fit.minima)
    for m in fit.minima:  # each budget's minimiser near the law's optimum (grid step 1.6x)
        assert abs(math.log(m.n_opt / (G * (m.budget / 6) ** A_TRUE))) < 0.25
        assert m.sd_log_n > 0
        assert m.curve([m.n_opt])[0] == pytest.approx(m.loss_min, rel=1e-3)
    assert abs(fit.a - A_TRUE) < 0.02 and fit.b == pytest.approx(1 - fit.a)
    lo, hi = fit.ci["a"]
    assert lo < A_TRUE < hi and fit.ci["b"] == pytest.approx([1 - hi, 1 - lo])
    assert fit.bootstrap["method"] == "seed-noise" and fit.options["noise"] == 0.002
    # more seed noise, a wider interval
    wide = fit_isoflop(C, N, D, L, method="interp", noise=0.02, bootstrap=200)
    assert wide.ci["a"][1] - wide.ci["a"][0] > hi - lo
    assert IsoflopFit.from_dict(json.loads(json.dumps(fit.to_dict()))).a == fit.a


def test_interp_skips_a_budget_whose_lowest_loss_is_at_the_edge_and_estimates_noise():
    C, N, D, L = fixed_grid(noise=0.001)
    top = C == 1e22
    L = np.where(top, 5.0 - 0.01 * np.log(N), L)  # still falling at the largest size
    fit = fit_isoflop(C, N, D, L, method="interp")
    assert 1e22 in fit.skipped and "largest" in fit.skipped[1e22]
    assert len(fit.minima) >= 3 and 1e22 not in [m.budget for m in fit.minima]
    assert fit.options["noise_source"].startswith("estimated") and fit.options["noise"] > 0


def test_curvature_check_flags_a_curve_the_parabola_cannot_follow():
    x = np.linspace(-3, 3, 11)
    N = np.exp(x + 18)
    asym = 3 + 0.1 * x ** 2 + 0.04 * x ** 3 + 0.01 * x ** 4  # the far side climbs faster
    cv = curvature_check(N, asym, -np.polyfit(x + 18, asym, 2)[1] / (2 * np.polyfit(x + 18, asym, 2)[0]))
    assert cv["flagged"] and cv["p"] < 0.01 and cv["shift"] > 0.1
    rng = np.random.default_rng(1)
    para = 3 + 0.1 * x ** 2 + rng.normal(0, 0.002, x.size)
    c = np.polyfit(x + 18, para, 2)
    assert not curvature_check(N, para, -c[1] / (2 * c[0]))["flagged"]
    assert curvature_check(N[:5], para[:5], 18.0) is None  # under 6 sizes: no check


def test_curvature_warning_names_the_budget_and_is_printed():
    C, N, D, L = fixed_grid()
    par = fit_isoflop(C, N, D, L, method="parabola")
    flagged = [m.budget for m in par.minima if m.curvature and m.curvature["flagged"]]
    assert flagged and len(par.warnings) == len(flagged)
    for b, w in zip(flagged, par.warnings):
        assert w.startswith(f"budget {b:.3g}:") and "cannot follow" in w
    assert "WARNING (isoFLOP): budget" in par.summary()
    narrow = fit_isoflop(*grid(3, 7, noise=0.003), method="parabola")
    assert narrow.warnings == []


def test_auto_is_the_default_and_switches_only_on_curvature():
    wide = fixed_grid(noise=0.0005)
    auto = fit_isoflop(*wide)
    assert auto.method == "interp" and auto.options["auto"]["chosen"] == "interp"
    assert len(auto.options["auto"]["flagged_budgets"]) >= 2
    assert any(w.startswith("auto:") for w in auto.warnings)
    narrow = grid(3, 7, noise=0.003)
    kept = fit_isoflop(*narrow)
    assert kept.method == "parabola" and kept.a == fit_isoflop(*narrow, method="parabola").a
