"""Bootstrap of the parametric law: thousands of refits in one batched L-BFGS run.

Three resampling schemes (``method``):

- ``"pairs"`` (default, Epoch's): resample points with replacement. A resample is a vector of
  multinomial counts w (sum n); its objective is sum_i w_i Huber(r_i), so every resample shares
  the data and differs only in its weights.
- ``"residual"``: keep the design (N, D) and add resampled log residuals of the full fit to its
  fitted log losses; right when the design is fixed by the experimenter (an isoFLOP grid).
- ``"parametric"``: as residual, with Gaussian log residuals of the fitted residual spread.

Every resample is taken to its own optimum. Each starts from the full-data optimum and four
neighbours (the exponents halved and doubled, the coefficients moved so the fitted loss at the
median point is unchanged), and each start runs to convergence with a relative stopping test
(the objective divided by its starting value, as :func:`analysis.fits.parametric.polish_tight`).
The published loop's absolute tolerances (ftol against max(|f|, 1) on an objective of ~1e-4)
stop a warm start almost where it began: intervals built that way were 2-5x too narrow and
covered the true parameters of synthetic laws in 20-50% of grids (issue 14).
``benchmarks/bench_coverage.py`` measures the coverage of these intervals on synthetic grids, and
checks that resamples reach the optimum that a full 4,500-start refit finds.

Intervals are percentile intervals (default 95%) of E, A, B, alpha, beta, a, b, G, N_opt(C*),
D_opt(C*) and L(N_opt, D_opt) at C*.
"""
from __future__ import annotations

import math

import numpy as np

from scaling.errors import ConfigError

from .parametric import ParametricFit, _Objective, _validate, batched_lbfgs

CI_NAMES = ("E", "A", "B", "alpha", "beta", "a", "b", "G", "n_opt", "d_opt", "loss_opt")


def local_starts(theta: np.ndarray, log_n_med: float, log_d_med: float) -> np.ndarray:
    """The optimum and four neighbours: (alpha, beta) scaled by {1/2, 2}, a and b shifted so
    A/N^alpha and B/D^beta at the median point stay put."""
    a, b, e, al, be = theta
    rows = [theta]
    for fa in (0.5, 2.0):
        for fb in (0.5, 2.0):
            rows.append([a + (fa - 1) * al * log_n_med, b + (fb - 1) * be * log_d_med, e, al * fa, be * fb])
    return np.asarray(rows, dtype=float)


def _derived(x: np.ndarray, C: float) -> dict:
    """Columns of CI_NAMES from rows (a, b, e, alpha, beta)."""
    al, be = x[:, 3], x[:, 4]
    with np.errstate(all="ignore"):  # a resample of an ill-conditioned law may reach exp(>709): inf, kept as such
        A, B, E = np.exp(x[:, 0]), np.exp(x[:, 1]), np.exp(x[:, 2])
        ea, eb = be / (al + be), al / (al + be)
        G = np.exp((np.log(al * A) - np.log(be * B)) / (al + be))
        n = G * (C / 6.0) ** ea
        d = (C / 6.0) ** eb / G
        lo = E + A / n ** al + B / d ** be
    return dict(E=E, A=A, B=B, alpha=al, beta=be, a=ea, b=eb, G=G, n_opt=n, d_opt=d, loss_opt=lo)


#: Public name: the comparison of arms evaluates resampled laws at given budgets.
derived = _derived


def _band(x: np.ndarray, c_lo: float, c_hi: float, q, n: int = 24) -> dict:
    """Percentile bands of N_opt, D_opt and L_opt over a log grid of compute, for figures."""
    cs = np.geomspace(c_lo, c_hi, n)
    out = {"C": [float(c) for c in cs]}
    cols = [_derived(x, c) for c in cs]
    for name in ("n_opt", "d_opt", "loss_opt"):
        lo, hi = [], []
        for col in cols:
            v = col[name][np.isfinite(col[name])]
            p = np.percentile(v, q) if v.size else [math.nan, math.nan]
            lo.append(float(p[0]))
            hi.append(float(p[1]))
        out[name] = [lo, hi]
    return out


def isoflop_band(x: np.ndarray, ranges, level: float = 0.95, n: int = 40) -> list[dict]:
    """Percentile bands of L(N, C / 6N) along each budget's isoFLOP curve, for figures: ``ranges`` is
    [(C, N_low, N_high)], ``x`` the bootstrap optima (a, b, e, alpha, beta)."""
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    with np.errstate(over="ignore"):  # inf for a runaway resample; such curves drop out below (nan)
        A, B, E = np.exp(x[:, 0])[:, None], np.exp(x[:, 1])[:, None], np.exp(x[:, 2])[:, None]
    al, be = x[:, 3][:, None], x[:, 4][:, None]
    out = []
    for C, lo, hi in ranges:
        ns = np.geomspace(lo, hi, n)
        with np.errstate(all="ignore"):
            L = E + A / ns[None, :] ** al + B / (C / (6.0 * ns[None, :])) ** be
        L = np.where(np.isfinite(L), L, np.nan)
        p = np.nanpercentile(L, q, axis=0) if L.size else np.full((2, n), np.nan)
        out.append({"budget": float(C), "N": [float(v) for v in ns], "lo": [float(v) for v in p[0]],
                    "hi": [float(v) for v in p[1]]})
    return out


METHODS = ("pairs", "residual", "parametric")
#: Relative stopping test of the resample fits (objective and gradient divided by the starting
#: objective): tight enough that the percentiles do not move (bench_coverage.py --check).
GTOL, FTOL = 1e-8, 1e-12


def bootstrap_parametric(fit: ParametricFit, params, tokens, loss, *, n_resamples: int = 4000,
                         level: float = 0.95, seed: int = 0, target_compute: float | None = None,
                         maxiter: int = 2000, method: str = "pairs", return_samples: bool = False):
    """Percentile bootstrap of ``fit`` (the full-data fit on the same points).

    Returns ``fit`` with ``ci`` (name -> [low, high]) and ``bootstrap`` (method, n_resamples,
    n_failed, n_unconverged, level, seed, target_compute, starts_per_resample) filled; with
    ``return_samples`` also the (R, len(CI_NAMES)) array of resampled values and the (R, 5) optima
    (a, b, e, alpha, beta) of the resamples, failed ones left out. ``target_compute``
    (C*) defaults to 10x the largest 6ND in the data. Resamples whose optimiser ends at a
    non-finite objective are dropped and counted in n_failed. Resamples are fitted with the fit's
    own loss (Huber delta, reduction and ``overestimate_penalty``).
    """
    from scaling.flops import flops_6nd

    if n_resamples < 2:
        raise ConfigError("bootstrap needs at least 2 resamples", field="bootstrap", value=n_resamples)
    if not 0 < level < 1:
        raise ConfigError("level must be in (0, 1)", field="level", value=level)
    if method not in METHODS:
        raise ConfigError(f"bootstrap method must be one of {', '.join(METHODS)}", field="bootstrap_method", value=method)
    N, D, L = _validate(params, tokens, loss)
    n = N.size
    if n != fit.n_points:
        raise ConfigError(f"bootstrap data have {n} points but the fit used {fit.n_points}")
    rng = np.random.default_rng(seed)
    theta = np.array([math.log(fit.A), math.log(fit.B), math.log(max(fit.E, 1e-300)), fit.alpha, fit.beta])
    starts = local_starts(theta, float(np.median(np.log(N))), float(np.median(np.log(D))))
    k = starts.shape[0]
    log_l = np.log(L)
    penalty = getattr(fit, "overestimate_penalty", 1.0)  # each resample is fitted with the fit's own loss
    if method == "pairs":
        W = rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(float)
        obj = _Objective(np.log(N), np.log(D), log_l, fit.huber_delta, fit.reduce, weights=np.repeat(W, k, axis=0),
                         penalty=penalty)
    else:
        fitted = np.log(fit.predict(N, D))
        resid = log_l - fitted
        if method == "residual":
            e = resid[rng.integers(0, n, size=(n_resamples, n))]
        else:
            e = rng.normal(0.0, float(np.sqrt(np.mean(resid ** 2))), size=(n_resamples, n))
        obj = _Objective(np.log(N), np.log(D), np.repeat(fitted[None, :] + e, k, axis=0), fit.huber_delta, fit.reduce,
                         penalty=penalty)
    x0 = np.tile(starts, (n_resamples, 1))
    # Relative stopping test: each row's objective divided by its value at its start.
    f_start = obj(x0, np.arange(x0.shape[0]))[0]
    scale = np.where(np.isfinite(f_start) & (f_start > 0), 1.0 / np.where(f_start > 0, f_start, 1.0), 1.0)

    def fun(X, rows):
        f, g = obj(X, rows)
        return f * scale[rows], g * scale[rows][:, None]

    # Every start to convergence: picking each resample's start after a few iterations (a two-phase
    # screen, 3x cheaper) left 5 of 162 checked resamples up to 2.5% above their own optimum.
    x, f, conv, _ = batched_lbfgs(fun, x0, m=20, gtol=GTOL, ftol=FTOL, maxiter=maxiter, pass_rows=True)
    f = np.where(np.isfinite(f), f / scale, np.inf).reshape(n_resamples, k)
    lead = np.arange(n_resamples) * k + np.argmin(f, axis=1)
    xb = x[lead]
    ok = np.isfinite(f.ravel()[lead])
    conv_lead = conv[lead]
    unconverged = ~conv_lead & ok
    C = float(target_compute) if target_compute else 10.0 * float(np.max(flops_6nd(N, D)))
    cols = _derived(xb[ok], C)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    ci = {}
    for name in CI_NAMES:
        v = cols[name][np.isfinite(cols[name])]
        ci[name] = [float(t) for t in np.percentile(v, q)] if v.size else [math.nan, math.nan]
    fit.ci = ci
    fit.bootstrap = {"method": method, "n_resamples": int(n_resamples), "n_failed": int((~ok).sum()),
                     "n_unconverged": int(unconverged.sum()), "level": float(level),
                     "seed": int(seed), "target_compute": C, "starts_per_resample": int(k),
                     "band": _band(xb[ok], float(np.min(flops_6nd(N, D))) / 2, C, q)}
    if return_samples:
        return fit, np.column_stack([cols[c] for c in CI_NAMES]), xb[ok]
    return fit
