"""Chinchilla approach 2: per-budget parabola of loss in log N, then N_opt ~ C^a and D_opt ~ C^b.

The parabola is fitted in x = ln N. Its vertex gives N_opt; D_opt = C / (6 N_opt). A vertex
outside the sampled range of N is kept but flagged (``extrapolated``): the parabola is known to
be biased on wide or one-sided grids, so such budgets deserve a look before trusting the exponent.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from scaling.errors import ConfigError

from .powerlaw import PowerLawFit, fit_powerlaw


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

    def to_dict(self) -> dict:
        return asdict(self)

    def curve(self, N):
        x = np.log(np.asarray(N, dtype=float))
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

    def n_opt(self, C):
        return self.k_n * np.asarray(C, dtype=float) ** self.a

    def d_opt(self, C):
        return self.k_d * np.asarray(C, dtype=float) ** self.b

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "k_n": self.k_n, "k_d": self.k_d, "r2_n": self.r2_n,
                "r2_d": self.r2_d, "minima": [m.to_dict() for m in self.minima],
                "skipped": {str(k): v for k, v in self.skipped.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "IsoflopFit":
        return cls(minima=[BudgetMinimum(**m) for m in d["minima"]], a=float(d["a"]), b=float(d["b"]),
                   k_n=float(d["k_n"]), k_d=float(d["k_d"]), r2_n=float(d["r2_n"]), r2_d=float(d["r2_d"]),
                   skipped=dict(d.get("skipped", {})))

    def summary(self) -> str:
        lines = [f"isoFLOP fit: N_opt = {self.k_n:.4g} C^{self.a:.4f}   D_opt = {self.k_d:.4g} C^{self.b:.4f}",
                 f"{'budget':>10} {'N_opt':>10} {'D_opt':>10} {'L_min':>8} {'sizes':>5}  note"]
        for m in self.minima:
            note = "outside sampled N" if m.extrapolated else ""
            lines.append(f"{m.budget:>10.3g} {m.n_opt:>10.3g} {m.d_opt:>10.3g} {m.loss_min:>8.4f} {m.n_sizes:>5}  {note}")
        for bud, why in self.skipped.items():
            lines.append(f"{float(bud):>10.3g} skipped: {why}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


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
    n_opt = math.exp(xs)
    return BudgetMinimum(budget=float(budget), n_opt=n_opt, d_opt=float(budget) / (6 * n_opt),
                         loss_min=float(c0 - c1 * c1 / (4 * c2)), coef=[float(c2), float(c1), float(c0)],
                         n_min=float(sizes.min()), n_max=float(sizes.max()), n_sizes=int(sizes.size),
                         extrapolated=bool(n_opt < sizes.min() or n_opt > sizes.max()))


def fit_isoflop(budget, params, tokens, loss) -> IsoflopFit:
    """Approach 2 over runs grouped by their nominal ``budget``.

    ``tokens`` is accepted for symmetry and validation; D_opt uses C / (6 N_opt) with C the budget.
    """
    C = np.asarray(budget, dtype=float).ravel()
    N = np.asarray(params, dtype=float).ravel()
    D = np.asarray(tokens, dtype=float).ravel()
    L = np.asarray(loss, dtype=float).ravel()
    if not (C.size == N.size == D.size == L.size):
        raise ConfigError("isoFLOP: budget, params, tokens and loss must have the same length")
    ok = np.isfinite(C) & np.isfinite(N) & np.isfinite(L) & (C > 0) & (N > 0)
    minima, skipped = [], {}
    for c in np.unique(C[ok]):
        sel = ok & (C == c)
        try:
            minima.append(budget_minimum(c, N[sel], L[sel]))
        except ConfigError as exc:
            skipped[float(c)] = str(exc)
    if len(minima) < 2:
        detail = "; ".join(f"{b:.3g}: {w}" for b, w in skipped.items())
        raise ConfigError(f"isoFLOP needs at least two budgets with a parabola minimum, got {len(minima)}"
                          + (f" (skipped {detail})" if detail else ""))
    cs = [m.budget for m in minima]
    pn = fit_powerlaw(cs, [m.n_opt for m in minima], name="isoFLOP N_opt")
    pd_ = fit_powerlaw(cs, [m.d_opt for m in minima], name="isoFLOP D_opt")
    return IsoflopFit(minima=minima, a=pn.p, b=pd_.p, k_n=pn.k, k_d=pd_.k, r2_n=pn.r2, r2_d=pd_.r2, skipped=skipped)
