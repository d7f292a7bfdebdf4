"""Log-log least-squares power law y = k x^p, the building block of approach 2 and envelopes."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from scaling.errors import ConfigError


@dataclass
class PowerLawFit:
    """y = k * x**p, fitted by least squares on (log x, log y)."""

    k: float
    p: float
    r2: float
    n: int

    def predict(self, x):
        return self.k * np.asarray(x, dtype=float) ** self.p

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PowerLawFit":
        return cls(k=float(d["k"]), p=float(d["p"]), r2=float(d["r2"]), n=int(d["n"]))

    def __str__(self) -> str:
        return f"y = {self.k:.4g} * x^{self.p:.4f}  (R^2 = {self.r2:.4f}, n = {self.n})"


def fit_powerlaw(x, y, *, name: str = "power law") -> PowerLawFit:
    """Fit y = k x^p on positive finite points; needs at least two distinct x values."""
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.size != y.size:
        raise ConfigError(f"{name}: x and y lengths differ ({x.size} vs {y.size})")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.unique(x).size < 2:
        raise ConfigError(f"{name}: needs at least two points with distinct positive x", value=int(x.size))
    lx, ly = np.log(x), np.log(y)
    p, logk = np.polyfit(lx, ly, 1)
    resid = ly - (logk + p * lx)
    ss_tot = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid ** 2)) / ss_tot if ss_tot > 0 else 1.0
    return PowerLawFit(k=float(np.exp(logk)), p=float(p), r2=r2, n=int(x.size))
