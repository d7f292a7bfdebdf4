"""Chinchilla approach 2: per-budget minimum of loss over N, then N_opt ~ C^a and D_opt ~ C^b.

``method="parabola"`` (Hoffmann et al.): a parabola in x = ln N per budget; its vertex gives
N_opt and D_opt = C / (6 N_opt). A vertex outside the sampled range of N is an extrapolation of
the parabola, not a measured minimum: it is flagged (``extrapolated``) and, unless
``keep_extrapolated``, left out of the N_opt and D_opt power laws (``excluded``). The parabola is
symmetric in ln N while the true isoFLOP curve is not, so it is biased on wide or one-sided grids.

``method="window"``: the same parabola fitted, per budget, only to the sizes around that budget's
lowest loss. The rule (:func:`window_mask`): the sizes within a factor ``window`` (default 2) in N of
the size with the lowest (mean) loss; when fewer than ``min_sizes`` (default 3) sizes qualify, the
nearest sizes in ln N are added until there are ``min_sizes`` (or every size). At the edge of the
grid (the lowest loss at the smallest or largest sampled size) the window is not shifted: it is
one-sided, filled from the interior side, and its vertex usually lies outside the window's sizes,
so it is flagged ``extrapolated`` like any other. ``n_min``/``n_max``/``n_sizes`` then describe the
window and ``n_sampled`` the budget's sizes. On grids that sample sizes far past each minimum (loss
climbing to 2-3x its minimum, as in Porian et al. 2024) one parabola over all sizes follows the far
side's curvature, not the minimum; the window does not.

``method="interp"``: Porian et al.'s interpolation estimator (analysis.fits.isoflop_interp):
an Akima spline of ln L on ln N per budget, its minimiser, and their seed-noise bootstrap with a
weighted N_opt power law. Its intervals come from the noise draws (``bootstrap`` of them, 200 when
``bootstrap`` is 0), so it always has ``ci``.

Curvature check (parabolas over at least 6 sizes, ``parabola`` and ``window``): the parabola is
compared with a quartic in ln N on the same points by a nested F test. When the quartic is
significantly better (p < 0.01) and its minimum within the sampled sizes lies more than 0.1 in
ln N (10% in N) from the parabola's vertex, the parabola cannot follow the curve's shape where it
matters: the budget's minimum records it (``curvature``) and the fit carries a warning naming the
budget (``warnings``, printed by ``summary``).

``method="auto"`` (the default): the parabola over all sizes, unless the curvature check below flags
at least 2 budgets; then the interpolation estimator (noise estimated unless given), the parabola's
warnings kept and ``options["auto"]`` saying why. Measured on Porian et al.'s 15 published setups
(benchmarks/bench_isoflop_published.py): the parabola over all sizes fell outside the authors' 95%
interval of a in most setups, the interpolation estimator inside in all; on noisy narrow grids (the
default demo's kind) the parabola is the better estimator and auto keeps it.

``method="powersum"`` (the less biased alternative): along an isoFLOP line, D = C / 6N turns
L = E + A/N^alpha + B/D^beta into L_C(N) = E_C + P_C N^-alpha + Q_C N^beta, exactly. We fit that
form to every budget at once with exponents (alpha, beta) shared across budgets and (E_C, P_C,
Q_C) free per budget: for fixed exponents the per-budget coefficients are linear least squares
(variable projection), and the two exponents are found by a grid then Nelder-Mead. The minimum is
closed-form, N_opt = (alpha P_C / (beta Q_C))^(1/(alpha+beta)). With three sizes a budget's three
coefficients fit its points exactly for any exponents, so the exponents (and the minima) would be
arbitrary: budgets with fewer than 4 sizes are skipped. It has no symmetry bias when the law holds.

Uncertainty: ``se`` holds the least-squares standard errors of the exponents a and b of the
N_opt and D_opt power laws (NaN with two budgets); ``bootstrap`` > 0 adds percentile intervals
(``ci``) from a residual bootstrap over runs: each run keeps its (C, N) and gets its budget's
fitted loss plus a residual drawn from all runs' residuals, and the whole fit is repeated. (Drawing
runs with replacement inside a budget of 5 sizes leaves fewer than 3 distinct sizes in a fifth of
the draws, and the intervals it gave were meaningless.)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from scaling.errors import ConfigError

from .powerlaw import fit_powerlaw


@dataclass
class BudgetMinimum:
    """The parabola fit of one isoFLOP curve and its vertex."""

    budget: float
    n_opt: float
    d_opt: float
    loss_min: float
    coef: list  # [c2, c1, c0] of loss = c2 x^2 + c1 x + c0 with x = ln N
    n_min: float  # smallest sampled N
    n_max: float  # largest sampled N
    n_sizes: int
    extrapolated: bool
    form: str = "parabola"
    excluded: bool = False  # left out of the N_opt / D_opt power laws (an extrapolated vertex)  # "powersum": coef = [E_C, P_C, Q_C, alpha, beta, N_ref], N in units of N_ref
    # "interp": coef = [ln sizes, ln mean losses] of the Akima spline
    n_sampled: int = 0  # sizes sampled at this budget (n_sizes: those fitted; fewer with the window)
    curvature: dict | None = None  # quartic-vs-parabola check: p, shift (ln N), flagged; None under 6 sizes
    sd_log_n: float | None = None  # interp: the budget's sd of ln N_opt over the noise draws (its weight)

    def to_dict(self) -> dict:
        return asdict(self)

    def curve(self, N):
        N = np.asarray(N, dtype=float)
        if self.form == "interp":
            from .isoflop_interp import spline_curve

            return spline_curve(self.coef, N)
        if self.form == "powersum":
            e, p, q, al, be, nref = self.coef
            n = N / nref
            return e + p * n ** -al + q * n ** be
        x = np.log(N)
        c2, c1, c0 = self.coef
        return c2 * x * x + c1 * x + c0


@dataclass
class IsoflopFit:
    """Per-budget minima plus N_opt = k_n C^a and D_opt = k_d C^b."""

    minima: list
    a: float
    b: float
    k_n: float
    k_d: float
    r2_n: float
    r2_d: float
    skipped: dict = field(default_factory=dict)  # budget -> reason
    method: str = "parabola"
    ci: dict = field(default_factory=dict)  # "a", "b" -> [low, high] (residual bootstrap over runs)
    se: dict = field(default_factory=dict)  # "a", "b" -> least-squares standard error of the exponent
    bootstrap: dict = field(default_factory=dict)  # method, n_resamples, n_used, sd of a and b
    warnings: list = field(default_factory=list)  # curvature the parabola cannot follow, naming the budget
    options: dict = field(default_factory=dict)  # window, min_sizes (window); noise, noise_source (interp)

    def n_opt(self, C):
        return self.k_n * np.asarray(C, dtype=float) ** self.a

    def d_opt(self, C):
        return self.k_d * np.asarray(C, dtype=float) ** self.b

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "k_n": self.k_n, "k_d": self.k_d, "r2_n": self.r2_n,
                "r2_d": self.r2_d, "minima": [m.to_dict() for m in self.minima],
                "skipped": {str(k): v for k, v in self.skipped.items()}, "method": self.method, "ci": self.ci,
                "se": self.se, "bootstrap": self.bootstrap, "warnings": self.warnings, "options": self.options}

    @classmethod
    def from_dict(cls, d: dict) -> "IsoflopFit":
        return cls(minima=[BudgetMinimum(**m) for m in d["minima"]], a=float(d["a"]), b=float(d["b"]),
                   k_n=float(d["k_n"]), k_d=float(d["k_d"]), r2_n=float(d["r2_n"]), r2_d=float(d["r2_d"]),
                   skipped=dict(d.get("skipped", {})), method=d.get("method", "parabola"), ci=dict(d.get("ci", {})),
                   se=dict(d.get("se", {})), bootstrap=dict(d.get("bootstrap", {})),
                   warnings=list(d.get("warnings", [])), options=dict(d.get("options", {})))

    def summary(self) -> str:
        def unc(k):
            se = self.se.get(k)
            ci = self.ci.get(k)
            return ((f" (se {se:.3g})" if se is not None and np.isfinite(se) else "")
                    + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))

        lines = [f"isoFLOP fit ({self.method}): N_opt = {self.k_n:.4g} C^{self.a:.4f}{unc('a')}   "
                 f"D_opt = {self.k_d:.4g} C^{self.b:.4f}{unc('b')}",
                 f"{'budget':>10} {'N_opt':>10} {'D_opt':>10} {'L_min':>8} {'sizes':>5}  note"]
        if self.ci:
            how = ("seed-noise draws, weighted N_opt law (Porian et al.)" if self.method == "interp"
                   else "residual bootstrap over runs")
            lines.insert(1, f"(intervals: 95% {how}, {self.bootstrap.get('n_used')} resamples)")
        if self.method == "window":
            lines.insert(1, f"(window: sizes within a factor {self.options.get('window')} of each budget's lowest "
                            f"loss, at least {self.options.get('min_sizes')})")
        if self.method == "interp":
            lines.insert(1, f"(seed noise {self.options.get('noise', float('nan')):.3g}, "
                            f"{self.options.get('noise_source', '')})")
        for m in self.minima:
            note = ("outside sampled N, excluded from the fit" if m.excluded else "outside sampled N") if m.extrapolated else ""
            lines.append(f"{m.budget:>10.3g} {m.n_opt:>10.3g} {m.d_opt:>10.3g} {m.loss_min:>8.4f} {m.n_sizes:>5}  {note}")
        for bud, why in self.skipped.items():
            lines.append(f"{float(bud):>10.3g} skipped: {why}")
        if self.bootstrap.get("note"):
            lines.append(self.bootstrap["note"])
        lines += [f"WARNING (isoFLOP): {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


#: How far (in log N) a parabola's vertex may sit from the sampled sizes' mean before the curve counts as
#: flat: e^30 ~ 1e13 times outside the ladder (a bootstrap resample of the default demo put it at e^-800).
_FLAT = 30.0


#: The curvature check: a quartic significantly better than the parabola (F test, this p) ...
CURVATURE_P = 0.01
#: ... whose minimum lies more than this far (in ln N) from the parabola's vertex.
CURVATURE_SHIFT = 0.1
#: ``auto`` leaves the parabola for the interpolation estimator when at least this many budgets are flagged
#: (one flag in a noisy narrow study is a 1-2% false alarm per budget; on Porian et al.'s grids 2-7 of 12 are).
AUTO_MIN_FLAGGED = 2
METHODS = ("auto", "parabola", "window", "interp", "powersum")


def curvature_check(params, loss, vertex_x: float) -> dict | None:
    """Quartic vs parabola in x = ln N on the same points: ``{"p", "shift", "flagged"}`` (see the module
    docstring), or None with fewer than 6 sizes (a quartic needs 5 coefficients and one degree of freedom)."""
    from scipy.special import fdtrc  # F survival function; scipy.stats would import scipy's optimisers

    x, L = np.log(np.asarray(params, dtype=float)), np.asarray(loss, dtype=float)
    n = x.size
    if np.unique(x).size < 6:
        return None
    xc = x - x.mean()  # centred: a quartic in raw ln N (~18-25) is badly conditioned
    rss2 = float(np.sum((L - np.polyval(np.polyfit(xc, L, 2), xc)) ** 2))
    q4 = np.polyfit(xc, L, 4)
    rss4 = float(np.sum((L - np.polyval(q4, xc)) ** 2))
    if rss4 <= 0 or rss2 <= rss4:
        p = 0.0 if rss4 <= 0 < rss2 else 1.0
    else:
        p = float(fdtrc(2, n - 5, ((rss2 - rss4) / 2) / (rss4 / (n - 5))))
    grid = np.linspace(xc.min(), xc.max(), 2001)
    shift = float(abs(grid[np.argmin(np.polyval(q4, grid))] + x.mean() - vertex_x))
    return {"p": p, "shift": shift, "flagged": bool(p < CURVATURE_P and shift > CURVATURE_SHIFT)}


def window_mask(params, loss, window: float = 2.0, min_sizes: int = 3) -> np.ndarray:
    """Rows of one budget inside its window: sizes within a factor ``window`` in N of the size with the
    lowest mean loss, topped up with the nearest sizes in ln N to ``min_sizes`` (at equal distance the
    smaller size first; module docstring). Replicates of a size are averaged and kept or left together."""
    N, L = np.asarray(params, dtype=float), np.asarray(loss, dtype=float)
    sizes, inv = np.unique(N, return_inverse=True)
    mean = np.bincount(inv, weights=L) / np.bincount(inv)
    dist = np.abs(np.log(sizes) - np.log(sizes[np.argmin(mean)]))
    keep = dist <= math.log(window) * (1 + 1e-12)
    if keep.sum() < min_sizes:
        keep[np.argsort(dist, kind="stable")[:min_sizes]] = True
    return keep[inv]


def budget_minimum(budget: float, params, loss) -> BudgetMinimum:
    """Fit one isoFLOP parabola; raises ConfigError with the reason when it has no minimum."""
    N = np.asarray(params, dtype=float)
    L = np.asarray(loss, dtype=float)
    sizes = np.unique(N)
    if sizes.size < 3:
        raise ConfigError(f"needs at least 3 model sizes, has {sizes.size}")
    x = np.log(N)
    c2, c1, c0 = np.polyfit(x, L, 2)
    if not c2 > 0:
        raise ConfigError("parabola opens downwards (no interior minimum)")
    xs = -c1 / (2 * c2)
    if abs(xs - x.mean()) > _FLAT:  # a nearly flat parabola: its vertex (and exp of it) is meaningless
        raise ConfigError(f"parabola is nearly flat (vertex at log N = {xs:.3g}, far outside the sampled "
                          f"{x.min():.3g}-{x.max():.3g}; no interior minimum)")
    n_opt = math.exp(xs)
    return BudgetMinimum(budget=float(budget), n_opt=n_opt, d_opt=float(budget) / (6 * n_opt),
                         loss_min=float(c0 - c1 * c1 / (4 * c2)), coef=[float(c2), float(c1), float(c0)],
                         n_min=float(sizes.min()), n_max=float(sizes.max()), n_sizes=int(sizes.size),
                         extrapolated=bool(n_opt < sizes.min() or n_opt > sizes.max()), n_sampled=int(sizes.size),
                         curvature=curvature_check(N, L, xs))


def _powersum_design(N, nref, al, be):
    n = N / nref
    return np.column_stack([np.ones_like(n), n ** -al, n ** be])


class _PowersumSSE:
    """Summed least-squares error of the power-sum curves L = e + p n^-al + q n^be of every budget, at
    many (al, be) at once: the budgets' sizes are padded to one length (padding rows are zero in the
    design and the loss, so they change nothing) and each (al, be, budget) least-squares problem is
    solved by one batched QR. It replaces a loop of ``np.linalg.lstsq`` per budget per evaluation
    (the same numbers to ~1e-7, 6-7x faster on the default demo's 45 points per arm; the report's 200
    bootstrap refits per arm spent most of their time there)."""

    def __init__(self, data):
        m = max(N.size for N, _, _ in data)
        self.log_n = np.zeros((len(data), m))  # log(N / nref); 0 in the padding
        self.L = np.zeros((len(data), m))
        self.mask = np.zeros((len(data), m))
        for g, (N, L, nref) in enumerate(data):
            self.log_n[g, :N.size], self.L[g, :N.size], self.mask[g, :N.size] = np.log(N / nref), L, 1.0

    def __call__(self, al, be) -> np.ndarray:
        """SSE at each pair of the 1-d arrays ``al``, ``be``."""
        al, be = np.atleast_1d(np.asarray(al, dtype=float)), np.atleast_1d(np.asarray(be, dtype=float))
        shape = (al.size,) + self.log_n.shape
        X = np.stack([np.broadcast_to(self.mask, shape),
                      np.exp(-al[:, None, None] * self.log_n) * self.mask,
                      np.exp(be[:, None, None] * self.log_n) * self.mask], axis=-1)
        Q, _ = np.linalg.qr(X)
        y = np.broadcast_to(self.L, shape)
        r = y - np.einsum("kgmi,kgi->kgm", Q, np.einsum("kgmi,kgm->kgi", Q, y))
        return np.sum(r * r, axis=(1, 2))


def powersum_minima(groups) -> tuple[list, dict]:
    """Joint power-sum fit of isoFLOP curves; ``groups`` is a list of (budget, N, L). Returns
    (minima, skipped) like the parabola path."""
    from scipy.optimize import minimize

    data = [(N, L, float(np.exp(np.mean(np.log(N))))) for _, N, L in groups]
    sse_at = _PowersumSSE(data)
    grid = np.linspace(0.05, 1.5, 12)
    ga, gb = np.meshgrid(grid, grid, indexing="ij")
    sse = sse_at(ga.ravel(), gb.ravel()).reshape(ga.shape)
    i, j = np.unravel_index(np.argmin(sse), sse.shape)
    res = minimize(lambda t: float(sse_at(*np.clip(t, 1e-3, 5.0)[:, None])[0]), [grid[i], grid[j]],
                   method="Nelder-Mead", options={"xatol": 1e-5, "fatol": 1e-14, "maxiter": 2000})
    al, be = (float(v) for v in np.clip(res.x, 1e-3, 5.0))
    minima, skipped = [], {}
    for (c, N, L), (_, _, nref) in zip(groups, data):
        X = _powersum_design(N, nref, al, be)
        e, p, q = np.linalg.lstsq(X, L, rcond=None)[0]
        if not (p > 0 and q > 0):
            skipped[float(c)] = "power-sum curve has no interior minimum (a coefficient is not positive)"
            continue
        n_star = (al * p / (be * q)) ** (1.0 / (al + be))
        n_opt = float(n_star * nref)
        sizes = np.unique(N)
        minima.append(BudgetMinimum(budget=float(c), n_opt=n_opt, d_opt=float(c) / (6 * n_opt),
                                    loss_min=float(e + p * n_star ** -al + q * n_star ** be),
                                    coef=[float(e), float(p), float(q), al, be, nref], n_min=float(sizes.min()),
                                    n_max=float(sizes.max()), n_sizes=int(sizes.size),
                                    extrapolated=bool(n_opt < sizes.min() or n_opt > sizes.max()), form="powersum"))
    return minima, skipped


def _slope_se(x, y) -> float:
    """Least-squares standard error of the slope of log y on log x (NaN with fewer than 3 points)."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    if lx.size < 3:
        return math.nan
    p = np.polyfit(lx, ly, 1)
    resid = ly - np.polyval(p, lx)
    sxx = float(np.sum((lx - lx.mean()) ** 2))
    return float(math.sqrt(np.sum(resid ** 2) / (lx.size - 2) / sxx)) if sxx > 0 else math.nan


def fit_isoflop(budget, params, tokens, loss, *, method: str = "auto", bootstrap: int = 0,
                seed: int = 0, level: float = 0.95, keep_extrapolated: bool = False, window: float = 2.0,
                min_sizes: int = 3, noise: float | None = None) -> IsoflopFit:
    """Approach 2 over runs grouped by their nominal ``budget``.

    ``method``: "auto" (default: the parabola, unless its curvature check flags at least
    ``AUTO_MIN_FLAGGED`` budgets, then "interp"), "parabola" (Hoffmann, every size), "window" (the
    parabola over the sizes within a factor ``window`` of each budget's lowest loss, at least
    ``min_sizes``), "interp" (Porian et al.'s interpolation; ``noise`` the loss sd of its draws, None: estimated) or "powersum" (less biased when
    the law holds); see the module docstring. Minima outside the sampled sizes of their budget are
    flagged and, unless ``keep_extrapolated``, left out of the N_opt and D_opt power laws.
    ``bootstrap`` > 0: that many residual-bootstrap resamples over runs (interp: noise draws),
    percentile intervals of a and b in ``ci`` (see the module docstring).

    ``tokens`` is accepted for symmetry and validation; D_opt uses C / (6 N_opt) with C the budget.
    """
    C = np.asarray(budget, dtype=float).ravel()
    N = np.asarray(params, dtype=float).ravel()
    D = np.asarray(tokens, dtype=float).ravel()
    L = np.asarray(loss, dtype=float).ravel()
    if not (C.size == N.size == D.size == L.size):
        raise ConfigError("isoFLOP: budget, params, tokens and loss must have the same length")
    if method not in METHODS:
        raise ConfigError(f"isoFLOP method must be one of {', '.join(METHODS)}", field="method", value=method)
    if not (isinstance(window, (int, float)) and window > 1 and math.isfinite(window)):
        raise ConfigError("isoFLOP window must be a finite factor > 1 (sizes within window x of the lowest loss)",
                          field="window", value=window)
    if not (isinstance(min_sizes, (int, np.integer)) and min_sizes >= 3):
        raise ConfigError("isoFLOP window needs min_sizes >= 3 (a parabola has 3 coefficients)", field="min_sizes",
                          value=min_sizes)
    ok = np.isfinite(C) & np.isfinite(N) & np.isfinite(L) & (C > 0) & (N > 0)
    if np.unique(C[ok]).size < 2:
        raise ConfigError(f"isoFLOP needs at least two budgets, got {np.unique(C[ok]).size} "
                          "(a single budget has no compute trend to fit)")
    C, N, L = C[ok], N[ok], L[ok]
    win = (float(window), int(min_sizes))
    if method == "auto":
        par = fit_isoflop(C, N, C, L, method="parabola", bootstrap=bootstrap, seed=seed, level=level,
                          keep_extrapolated=keep_extrapolated)
        flagged = [m.budget for m in par.minima if m.curvature and m.curvature.get("flagged")]
        if len(flagged) < AUTO_MIN_FLAGGED:
            return par
        try:
            fit = _fit_interp(C, N, L, bootstrap=bootstrap, seed=seed, level=level, noise=noise, win=win)
        except ConfigError as exc:
            par.warnings.append(f"auto: the interpolation estimator failed ({exc}); the parabola is kept")
            return par
        fit.warnings = par.warnings + [f"auto: interpolation estimator used (the parabola over all sizes cannot follow "
                                       f"the curve at {len(flagged)} budget(s)); parabola's a = {par.a:.4f}"]
        fit.options["auto"] = {"chosen": "interp", "parabola_a": par.a, "flagged_budgets": flagged}
        return fit
    if method == "interp":
        return _fit_interp(C, N, L, bootstrap=bootstrap, seed=seed, level=level, noise=noise, win=win)
    minima, skipped = _minima(C, N, L, method, win)
    for m in minima:
        m.excluded = bool(m.extrapolated and not keep_extrapolated)
    used = [m for m in minima if not m.excluded]
    if len(used) < 2:
        detail = "; ".join(f"{b:.3g}: {w}" for b, w in skipped.items())
        n_out = sum(m.excluded for m in minima)
        raise ConfigError(f"isoFLOP needs at least two budgets with a minimum inside their sampled sizes, got {len(used)}"
                          + (f" ({n_out} minima outside the sampled sizes were excluded; keep_extrapolated / "
                             "--keep-extrapolated keeps them)" if n_out else "")
                          + (f" (skipped {detail})" if detail else ""))
    cs = [m.budget for m in used]
    pn = fit_powerlaw(cs, [m.n_opt for m in used], name="isoFLOP N_opt")
    pd_ = fit_powerlaw(cs, [m.d_opt for m in used], name="isoFLOP D_opt")
    fit = IsoflopFit(minima=minima, a=pn.p, b=pd_.p, k_n=pn.k, k_d=pd_.k, r2_n=pn.r2, r2_d=pd_.r2, skipped=skipped,
                     method=method, se={"a": _slope_se(cs, [m.n_opt for m in used]),
                                        "b": _slope_se(cs, [m.d_opt for m in used])},
                     warnings=_curvature_warnings(minima, method),
                     options={"window": win[0], "min_sizes": win[1]} if method == "window" else {})
    if bootstrap:
        fit.ci, fit.bootstrap = _bootstrap_exponents(C, N, L, minima, method, bootstrap, seed, level, keep_extrapolated,
                                                     win)
    return fit


def _curvature_warnings(minima, method: str) -> list[str]:
    out = []
    for m in minima:
        cv = m.curvature
        if cv and cv.get("flagged"):
            hint = "a narrower --isoflop-window" if method == "window" else "--isoflop-method window or interp"
            out.append(f"budget {m.budget:.3g}: the parabola over {m.n_sizes} sizes cannot follow the isoFLOP curve "
                       f"(a quartic fits better, F test p = {cv['p']:.2g}, and its minimum lies {cv['shift']:.2f} in "
                       f"ln N from the vertex): its N_opt is biased; try {hint}")
    return out


def estimate_noise(C, N, L, win=(2.0, 3)) -> float:
    """Loss sd about a smooth curve near each minimum: the pooled residual sd of the windowed parabolas
    (the window rule with at least 5 sizes) of the budgets with at least 4 sizes (NaN when none has).
    Curvature the parabola misses counts as noise here: on precise, strongly curved data it errs high."""
    ss, dof = 0.0, 0
    for c in np.unique(C):
        sel = C == c
        keep = window_mask(N[sel], L[sel], win[0], max(win[1], 5))
        x, y = np.log(N[sel][keep]), L[sel][keep]
        if np.unique(x).size >= 4:
            ss += float(np.sum((y - np.polyval(np.polyfit(x, y, 2), x)) ** 2))
            dof += x.size - 3
    return math.sqrt(ss / dof) if dof else math.nan


def _fit_interp(C, N, L, *, bootstrap, seed, level, noise, win) -> IsoflopFit:
    from .isoflop_interp import interp_fit

    source = "given"
    if noise is None:
        noise, source = estimate_noise(C, N, L, win), "estimated: pooled residual sd of the windowed parabolas"
        if not math.isfinite(noise):
            raise ConfigError("isoFLOP interp: no budget has 4 sizes in its window to estimate the seed noise from; "
                              "give it (--isoflop-noise)")
    groups, skipped = [], {}
    for c in np.unique(C):
        sel = C == c
        n_sizes = np.unique(N[sel]).size
        if n_sizes < 3:
            skipped[float(c)] = f"needs at least 3 model sizes, has {n_sizes}"
        else:
            groups.append((c, N[sel], L[sel]))
    draws = int(bootstrap) if bootstrap else 200
    rows, s2, law = interp_fit(groups, noise=float(noise), draws=draws, seed=seed, level=level)
    skipped.update(s2)
    if law is None:
        detail = "; ".join(f"{b:.3g}: {w}" for b, w in skipped.items())
        raise ConfigError(f"isoFLOP needs at least two budgets with an interior minimum, got {len(rows)}"
                          + (f" (skipped {detail})" if detail else ""))
    minima = [BudgetMinimum(budget=c, n_opt=n, d_opt=c / (6 * n), loss_min=float(l0),
                            coef=[np.log(sz).tolist(), np.log(ls).tolist()], n_min=float(sz[0]), n_max=float(sz[-1]),
                            n_sizes=int(sz.size), extrapolated=False, form="interp", n_sampled=int(sz.size),
                            sd_log_n=float(sd)) for c, sz, ls, n, l0, sd, _ in rows]
    a, lc = law["a"], np.log([m.budget for m in minima])
    y, w = np.log([m.n_opt for m in minima]), 1.0 / np.array([m.sd_log_n for m in minima]) ** 2
    resid = y - (np.log(law["k_n"]) + a * lc)
    yw = np.sum(w * y) / np.sum(w)
    r2 = float(1 - np.sum(w * resid ** 2) / np.sum(w * (y - yw) ** 2)) if np.ptp(y) > 0 else math.nan
    fit = IsoflopFit(minima=sorted(minima, key=lambda m: m.budget), a=a, b=1 - a, k_n=law["k_n"],
                     k_d=1 / (6 * law["k_n"]), r2_n=r2, r2_d=r2, skipped=skipped, method="interp",
                     options={"noise": float(noise), "noise_source": source})
    if "ci_a" in law:
        lo, hi = law["ci_a"]
        fit.ci = {"a": [lo, hi], "b": [1 - hi, 1 - lo]}
        fit.se = {"a": law["sd_a"], "b": law["sd_a"]}
        fit.bootstrap = {"method": "seed-noise", "n_resamples": draws, "n_used": law["n_used"], "level": float(level),
                         "sd": {"a": law["sd_a"], "b": law["sd_a"]}}
    return fit


def _minima(C, N, L, method, win=(2.0, 3)):
    need = 4 if method == "powersum" else 3
    minima, skipped, groups = [], {}, []
    for c in np.unique(C):
        sel = C == c
        n_sizes = np.unique(N[sel]).size
        if n_sizes < need:
            why = " (with 3, the power-sum curve fits any exponents exactly)" if method == "powersum" else ""
            skipped[float(c)] = f"needs at least {need} model sizes, has {n_sizes}{why}"
            continue
        if method == "powersum":
            groups.append((c, N[sel], L[sel]))
            continue
        keep = window_mask(N[sel], L[sel], *win) if method == "window" else np.ones(int(sel.sum()), dtype=bool)
        try:
            m = budget_minimum(c, N[sel][keep], L[sel][keep])
        except ConfigError as exc:
            skipped[float(c)] = str(exc)
            continue
        m.n_sampled = int(n_sizes)
        minima.append(m)
    if groups:
        m2, s2 = powersum_minima(groups)
        minima, skipped = m2, {**skipped, **s2}
    return sorted(minima, key=lambda m: m.budget), skipped


def _modified_residuals(C, N, resid):
    """Residuals of per-budget parabolas divided by sqrt(1 - leverage) (Davison & Hinkley's modified
    residuals), those of exactly fitted points (leverage 1) left out of the pool."""
    out = []
    for c in np.unique(C):
        sel = C == c
        x = np.log(N[sel])
        X = np.column_stack([x * x, x, np.ones_like(x)])
        h = np.einsum("ij,ji->i", X, np.linalg.pinv(X))
        ok = 1 - h > 1e-6
        out.append(resid[sel][ok] / np.sqrt(1 - h[ok]))
    return np.concatenate(out) if out else resid[:0]


def _bootstrap_exponents(C, N, L, minima, method, n_resamples, seed, level, keep_extrapolated, win=(2.0, 3)):
    """Residual bootstrap over runs: fitted curve + resampled residual per run, the whole fit repeated.
    With the window, the runs outside a budget's window keep their loss (the parabola does not describe
    them) and the window is chosen again in every resample."""
    by_budget = {m.budget: m for m in minima}
    fitted = np.array([by_budget[c].curve([n])[0] if c in by_budget and by_budget[c].n_min <= n <= by_budget[c].n_max
                       else np.nan for c, n in zip(C, N)])
    kept = np.isin(C, list(by_budget))
    has = np.isfinite(fitted)[kept]
    resid = (L - fitted)[kept][has]
    if method == "window":  # windows of 3 sizes fit exactly: pool leverage-corrected residuals r / sqrt(1 - h)
        resid = _modified_residuals(C[kept][has], N[kept][has], resid)
        if resid.size < 2:
            return {}, {"method": "residual", "n_resamples": int(n_resamples), "n_used": 0,
                        "note": "no interval: every window fits its sizes exactly (3 sizes), there are no residuals "
                                "to resample; min_sizes 4 (--isoflop-min-sizes 4) gives one"}
    if resid.size < 2:
        return {}, {}
    rng = np.random.default_rng(seed)
    a_s, b_s = [], []
    for _ in range(int(n_resamples)):
        Lr = L[kept].copy()
        Lr[has] = fitted[kept][has] + resid[rng.integers(0, resid.size, int(has.sum()))]
        ms, _ = _minima(C[kept], N[kept], Lr, method, win)
        ms = [m for m in ms if keep_extrapolated or not m.extrapolated]
        if len(ms) < 2:
            continue
        cs = np.log([m.budget for m in ms])
        a_s.append(np.polyfit(cs, np.log([m.n_opt for m in ms]), 1)[0])
        b_s.append(np.polyfit(cs, np.log([m.d_opt for m in ms]), 1)[0])
    if len(a_s) < 2:
        return {}, {}
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    ci = {"a": [float(v) for v in np.percentile(a_s, q)], "b": [float(v) for v in np.percentile(b_s, q)]}
    info = {"method": "residual", "n_resamples": int(n_resamples), "n_used": len(a_s), "level": float(level),
            "sd": {"a": float(np.std(a_s, ddof=1)), "b": float(np.std(b_s, ddof=1))}}
    return ci, info
