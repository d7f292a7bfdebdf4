"""The isoFLOP minimum as Porian et al. (2024, "Resolving Discrepancies in Compute-Optimal Scaling of
Language Models") estimate it: no curve family, an interpolant through the measured points.

Per budget, the losses of each model size (replicates averaged) are joined by an Akima spline of
ln L against ln N (scipy's ``Akima1DInterpolator``: piecewise cubic, local, no overshoot at a kink);
N_opt is the minimiser of that spline on a fine grid of ln N between the smallest and largest
sampled sizes, refined by a bounded scalar search. A minimiser at either end of the sampled sizes
is no interior minimum: the budget is skipped.

Uncertainty (their "seed noise" bootstrap, reimplemented): each of ``draws`` resamples adds
Gaussian noise of standard deviation ``noise`` (loss units) to every point and takes every
budget's minimiser again. A budget whose draws find an interior minimum less than half the time is
skipped. Per budget: the point is the median of its draws' N_opt, and its spread
``sd_log_n = max(sd(ln N_opt draws), 0.33 x mean ln spacing of its sizes) x draws / interior draws``
(the floor stops a grid point that wins every draw from getting infinite weight). The N_opt power
law is a weighted least-squares fit of ln N_opt on ln C with weights 1 / sd_log_n^2, and its 95%
interval the percentiles of the same weighted fit repeated on each draw's minima.

``noise`` None: estimated from the data, the pooled residual standard deviation of the windowed
parabolas (analysis.fits.isoflop's ``window`` rule, at least 5 sizes) of the budgets with at least 4
sizes: the scatter of the points about a smooth curve near each minimum. Porian et al. measured
theirs from repeated seeds (0.002 on RefinedWeb, 0.01 on OpenWebText2).
"""
from __future__ import annotations

import math

import numpy as np

from scaling.errors import ConfigError

#: Points of the search grid per gap between two sampled sizes (Porian et al. use 25).
GRID_PER_GAP = 25
#: Floor of a budget's sd of ln N_opt, in units of the mean ln spacing of its sizes (Porian et al.: 0.33).
MIN_SD_FACTOR = 0.33


def per_size(N, L):
    """Sorted distinct sizes and their mean loss."""
    sizes, inv = np.unique(np.asarray(N, dtype=float), return_inverse=True)
    return sizes, np.bincount(inv, weights=np.asarray(L, dtype=float)) / np.bincount(inv)


def spline_minimum(sizes, losses, refine: bool = True):
    """(N_opt, L at N_opt, interior) of the Akima spline of ln L on ln N through (sizes, losses); without
    ``refine`` the best grid point (the noise draws: 25 points per gap is finer than their spread)."""
    from scipy.interpolate import Akima1DInterpolator
    from scipy.optimize import minimize_scalar

    x, y = np.log(sizes), np.log(losses)
    f = Akima1DInterpolator(x, y)
    grid = np.linspace(x[0], x[-1], (x.size - 1) * GRID_PER_GAP)
    j = int(np.argmin(f(grid)))
    if j == 0 or j == grid.size - 1:
        return math.exp(grid[j]), math.exp(float(f(grid[j]))), False
    if not refine:
        return math.exp(grid[j]), math.exp(float(f(grid[j]))), True
    res = minimize_scalar(lambda t: float(f(t)), bounds=(grid[j - 1], grid[j + 1]), method="bounded",
                          options={"xatol": 1e-9})
    xs = float(res.x) if res.fun <= f(grid[j]) else float(grid[j])
    return math.exp(xs), math.exp(float(f(xs))), True


def spline_curve(coef, N):
    """Loss of the stored spline (coef = [ln sizes, ln losses]) at N; NaN outside the sampled sizes."""
    from scipy.interpolate import Akima1DInterpolator

    x, y = np.asarray(coef[0], dtype=float), np.asarray(coef[1], dtype=float)
    return np.exp(Akima1DInterpolator(x, y, extrapolate=False)(np.log(np.asarray(N, dtype=float))))


def weighted_slope(x, y, w) -> tuple[float, float]:
    """(slope, intercept) of the weighted least-squares line of y on x."""
    X = np.column_stack([np.ones_like(x), x]) * np.sqrt(w)[:, None]
    (c0, c1), *_ = np.linalg.lstsq(X, y * np.sqrt(w), rcond=None)
    return float(c1), float(c0)


def interp_fit(groups, *, noise: float, draws: int, seed: int, level: float):
    """Per-budget minima and the weighted N_opt law. ``groups``: (budget, N, L) per budget with >= 3
    sizes. Returns (rows, skipped, law) with rows (budget, sizes, losses, n_point, l_point, sd_log_n,
    draws of N_opt) and law {a, k_n, ci_a, sd_a, n_used} or None when fewer than two budgets remain."""
    if not (noise >= 0 and math.isfinite(noise)):
        raise ConfigError("isoFLOP interpolation noise must be a finite number >= 0", field="noise", value=noise)
    rng = np.random.default_rng(seed)
    rows, skipped = [], {}
    for c, N, L in groups:
        sizes, losses = per_size(N, L)
        n0, l0, inside = spline_minimum(sizes, losses)
        if not inside:
            skipped[float(c)] = (f"lowest interpolated loss at the {'smallest' if n0 <= sizes[0] else 'largest'} "
                                 "sampled size (no interior minimum)")
            continue
        Ls = np.asarray(L, dtype=float)[None, :] + noise * rng.standard_normal((draws, np.size(L)))
        stars = np.full(draws, np.nan)
        for i in range(draws):
            s, lo = per_size(N, Ls[i])
            if np.all(lo > 0):
                n_i, _, ok = spline_minimum(s, lo, refine=False)
                stars[i] = n_i if ok else np.nan
        valid = np.isfinite(stars)
        if valid.sum() < draws / 2:
            skipped[float(c)] = f"interior minimum in only {int(valid.sum())} of {draws} noise draws"
            continue
        floor = MIN_SD_FACTOR * float(np.mean(np.diff(np.log(sizes))))
        sd = max(float(np.std(np.log(stars[valid]))), floor) * draws / valid.sum()
        point = float(np.median(stars[valid])) if draws else n0
        rows.append((float(c), sizes, losses, point, l0, sd, stars))
    if len(rows) < 2:
        return rows, skipped, None
    lc = np.log([r[0] for r in rows])
    w = 1.0 / np.array([r[5] for r in rows]) ** 2
    a, k = weighted_slope(lc, np.log([r[3] for r in rows]), w)
    a_s = []
    for i in range(draws):
        ln = np.log([r[6][i] for r in rows])
        ok = np.isfinite(ln)
        if ok.sum() >= 2:
            a_s.append(weighted_slope(lc[ok], ln[ok], w[ok])[0])
    law = {"a": a, "k_n": math.exp(k), "n_used": len(a_s)}
    if len(a_s) >= 2:
        q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
        law["ci_a"] = [float(v) for v in np.percentile(a_s, q)]
        law["sd_a"] = float(np.std(a_s, ddof=1))
    return rows, skipped, law
