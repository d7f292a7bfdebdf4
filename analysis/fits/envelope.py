"""Envelope of a metric (or loss) against compute: the best run per budget, fitted as Q = k C^gamma."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scaling.errors import ConfigError

from .powerlaw import fit_powerlaw


@dataclass
class EnvelopeFit:
    """Q = k * C**gamma through the per-compute best values (``points``: list of (C, Q))."""

    k: float
    gamma: float
    r2: float
    higher_is_better: bool
    points: list = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.points)

    def predict(self, C):
        return self.k * np.asarray(C, dtype=float) ** self.gamma

    def to_dict(self) -> dict:
        return {"k": self.k, "gamma": self.gamma, "r2": self.r2, "higher_is_better": self.higher_is_better,
                "n": self.n, "points": [[float(c), float(q)] for c, q in self.points]}

    @classmethod
    def from_dict(cls, d: dict) -> "EnvelopeFit":
        return cls(k=float(d["k"]), gamma=float(d["gamma"]), r2=float(d["r2"]),
                   higher_is_better=bool(d["higher_is_better"]),
                   points=[(float(c), float(q)) for c, q in d.get("points", [])])

    def __str__(self) -> str:
        return f"Q = {self.k:.4g} * C^{self.gamma:.4f}  (R^2 = {self.r2:.4f}, {self.n} budgets)"


def envelope_points(compute, values, *, higher_is_better: bool = True) -> list[tuple[float, float]]:
    """Best value per distinct compute value, ignoring NaNs, sorted by compute."""
    c = np.asarray(compute, dtype=float).ravel()
    v = np.asarray(values, dtype=float).ravel()
    if c.size != v.size:
        raise ConfigError(f"envelope: compute and values lengths differ ({c.size} vs {v.size})")
    ok = np.isfinite(c) & np.isfinite(v) & (c > 0)
    c, v = c[ok], v[ok]
    pts = []
    for cu in np.unique(c):
        sel = v[c == cu]
        pts.append((float(cu), float(sel.max() if higher_is_better else sel.min())))
    return pts


def fit_envelope(compute, values, *, higher_is_better: bool = True) -> EnvelopeFit:
    """Take the best value at each compute budget (max for accuracies, min for losses); fit Q = k C^gamma."""
    pts = envelope_points(compute, values, higher_is_better=higher_is_better)
    if len(pts) < 2:
        raise ConfigError(f"envelope needs at least two compute budgets with finite values, got {len(pts)}")
    pl = fit_powerlaw([p[0] for p in pts], [p[1] for p in pts], name="envelope")
    return EnvelopeFit(k=pl.k, gamma=pl.p, r2=pl.r2, higher_is_better=higher_is_better, points=pts)
