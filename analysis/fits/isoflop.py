"""Chinchilla approach 2: per-budget minimum of loss over N, then N_opt ~ C^a and D_opt ~ C^b.

``method="parabola"`` (Hoffmann et al.): a parabola in x = ln N per budget; its vertex gives
N_opt and D_opt = C / (6 N_opt). A vertex outside the sampled range of N is an extrapolation of
the parabola, not a measured minimum: it is flagged (``extrapolated``) and, unless
``keep_extrapolated``, left out of the N_opt and D_opt power laws (``excluded``). The parabola is
symmetric in ln N while the true isoFLOP curve is not, so it is biased on wide or one-sided grids.

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

    def to_dict(self) -> dict:
        return asdict(self)

    def curve(self, N):
        N = np.asarray(N, dtype=float)
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

    def n_opt(self, C):
        return self.k_n * np.asarray(C, dtype=float) ** self.a

    def d_opt(self, C):
        return self.k_d * np.asarray(C, dtype=float) ** self.b

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "k_n": self.k_n, "k_d": self.k_d, "r2_n": self.r2_n,
                "r2_d": self.r2_d, "minima": [m.to_dict() for m in self.minima],
                "skipped": {str(k): v for k, v in self.skipped.items()}, "method": self.method, "ci": self.ci,
                "se": self.se, "bootstrap": self.bootstrap}

    @classmethod
    def from_dict(cls, d: dict) -> "IsoflopFit":
        return cls(minima=[BudgetMinimum(**m) for m in d["minima"]], a=float(d["a"]), b=float(d["b"]),
                   k_n=float(d["k_n"]), k_d=float(d["k_d"]), r2_n=float(d["r2_n"]), r2_d=float(d["r2_d"]),
                   skipped=dict(d.get("skipped", {})), method=d.get("method", "parabola"), ci=dict(d.get("ci", {})),
                   se=dict(d.get("se", {})), bootstrap=dict(d.get("bootstrap", {})))

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
            lines.insert(1, f"(intervals: 95% residual bootstrap over runs, {self.bootstrap.get('n_used')} resamples)")
        for m in self.minima:
            note = ("outside sampled N, excluded from the fit" if m.excluded else "outside sampled N") if m.extrapolated else ""
            lines.append(f"{m.budget:>10.3g} {m.n_opt:>10.3g} {m.d_opt:>10.3g} {m.loss_min:>8.4f} {m.n_sizes:>5}  {note}")
        for bud, why in self.skipped.items():
            lines.append(f"{float(bud):>10.3g} skipped: {why}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


#: How far (in log N) a parabola's vertex may sit from the sampled sizes' mean before the curve counts as
#: flat: e^30 ~ 1e13 times outside the ladder (a bootstrap resample of the default demo put it at e^-800).
_FLAT = 30.0


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
                         extrapolated=bool(n_opt < sizes.min() or n_opt > sizes.max()))


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


def fit_isoflop(budget, params, tokens, loss, *, method: str = "parabola", bootstrap: int = 0,
                seed: int = 0, level: float = 0.95, keep_extrapolated: bool = False) -> IsoflopFit:
    """Approach 2 over runs grouped by their nominal ``budget``.

    ``method``: "parabola" (Hoffmann) or "powersum" (less biased; see the module docstring).
    Minima outside the sampled sizes of their budget are flagged and, unless ``keep_extrapolated``,
    left out of the N_opt and D_opt power laws. ``bootstrap`` > 0: that many residual-bootstrap
    resamples over runs, percentile intervals of a and b in ``ci`` (see the module docstring).

    ``tokens`` is accepted for symmetry and validation; D_opt uses C / (6 N_opt) with C the budget.
    """
    C = np.asarray(budget, dtype=float).ravel()
    N = np.asarray(params, dtype=float).ravel()
    D = np.asarray(tokens, dtype=float).ravel()
    L = np.asarray(loss, dtype=float).ravel()
    if not (C.size == N.size == D.size == L.size):
        raise ConfigError("isoFLOP: budget, params, tokens and loss must have the same length")
    if method not in ("parabola", "powersum"):
        raise ConfigError("isoFLOP method must be 'parabola' or 'powersum'", field="method", value=method)
    ok = np.isfinite(C) & np.isfinite(N) & np.isfinite(L) & (C > 0) & (N > 0)
    if np.unique(C[ok]).size < 2:
        raise ConfigError(f"isoFLOP needs at least two budgets, got {np.unique(C[ok]).size} "
                          "(a single budget has no compute trend to fit)")
    C, N, L = C[ok], N[ok], L[ok]
    minima, skipped = _minima(C, N, L, method)
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
                                        "b": _slope_se(cs, [m.d_opt for m in used])})
    if bootstrap:
        fit.ci, fit.bootstrap = _bootstrap_exponents(C, N, L, minima, method, bootstrap, seed, level, keep_extrapolated)
    return fit


def _minima(C, N, L, method):
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
        try:
            minima.append(budget_minimum(c, N[sel], L[sel]))
        except ConfigError as exc:
            skipped[float(c)] = str(exc)
    if groups:
        m2, s2 = powersum_minima(groups)
        minima, skipped = m2, {**skipped, **s2}
    return sorted(minima, key=lambda m: m.budget), skipped


def _bootstrap_exponents(C, N, L, minima, method, n_resamples, seed, level, keep_extrapolated):
    """Residual bootstrap over runs: fitted curve + resampled residual per run, the whole fit repeated."""
    by_budget = {m.budget: m for m in minima}
    fitted = np.array([by_budget[c].curve([n])[0] if c in by_budget else np.nan for c, n in zip(C, N)])
    has = np.isfinite(fitted)
    resid = (L - fitted)[has]
    if resid.size < 2:
        return {}, {}
    rng = np.random.default_rng(seed)
    a_s, b_s = [], []
    for _ in range(int(n_resamples)):
        Lr = fitted[has] + resid[rng.integers(0, resid.size, resid.size)]
        ms, _ = _minima(C[has], N[has], Lr, method)
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
