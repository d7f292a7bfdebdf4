"""Two-step downstream prediction (OLMo ladder, Bhagia et al. 2024): metric from loss, loss from (N, D).

Step 1 is the parametric law L(N, D) (:func:`analysis.fits.parametric.fit_parametric`); step 2 a
sigmoid in the loss, Acc(L) = floor + (ceil - floor) / (1 + exp(k (L - L0))), which saturates at
chance (``floor``) for high loss and at ``ceil`` for low loss. The prediction for a new (N, D) is
Acc(L(N, D)).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from scaling.errors import ConfigError

from .parametric import ParametricFit


def sigmoid(L, floor, ceil, k, L0):
    with np.errstate(over="ignore"):
        return floor + (ceil - floor) / (1.0 + np.exp(k * (np.asarray(L, dtype=float) - L0)))


@dataclass
class SigmoidFit:
    """Metric as a function of loss."""

    floor: float
    ceil: float
    k: float
    L0: float
    rmse: float
    n: int

    def predict(self, L):
        return sigmoid(L, self.floor, self.ceil, self.k, self.L0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SigmoidFit":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def fit_sigmoid(loss, metric, *, floor: float | None = None) -> SigmoidFit:
    """Least-squares sigmoid of metric on loss; ``floor`` fixes the chance level (e.g. 0.5 for
    two-way tasks) instead of fitting it. Needs at least 4 finite points (5 with a free floor)."""
    from scipy.optimize import curve_fit

    L = np.asarray(loss, dtype=float).ravel()
    y = np.asarray(metric, dtype=float).ravel()
    ok = np.isfinite(L) & np.isfinite(y)
    L, y = L[ok], y[ok]
    n_par = 3 if floor is not None else 4
    if L.size < n_par + 1:
        raise ConfigError(f"sigmoid of metric on loss needs at least {n_par + 1} points, got {L.size}")
    k0 = 4.0 / max(np.ptp(L), 1e-6)
    if floor is None:
        f = sigmoid
        p0 = [y.min(), min(1.0, y.max() + 0.05), k0, float(np.median(L))]
        bounds = ([0.0, 0.0, 1e-6, -np.inf], [1.0, 1.0, np.inf, np.inf])
    else:
        def f(Lv, ceil, k, L0):
            return sigmoid(Lv, floor, ceil, k, L0)

        p0 = [min(1.0, y.max() + 0.05), k0, float(np.median(L))]
        bounds = ([0.0, 1e-6, -np.inf], [1.0, np.inf, np.inf])
    # Fits the data identify converge within ~120 evaluations (the demos' sWUGGY and sBLIMP, 2026-12-01); a
    # metric at chance never does, and 20,000 evaluations spent ~10 s each on two such fits of the quick demo
    try:
        p, _ = curve_fit(f, L, y, p0=p0, bounds=bounds, maxfev=2000)
    except RuntimeError as exc:
        raise ConfigError(f"sigmoid fit did not converge: {exc}") from None
    full = list(p) if floor is None else [floor, *p]
    rmse = float(np.sqrt(np.mean((sigmoid(L, *full) - y) ** 2)))
    return SigmoidFit(*(float(v) for v in full), rmse=rmse, n=int(L.size))


@dataclass
class TwoStepPrediction:
    loss_law: ParametricFit
    link: SigmoidFit

    def predict(self, N, D):
        """Predicted metric for parameter count(s) N and token count(s) D."""
        return self.link.predict(self.loss_law.predict(N, D))

    def to_dict(self) -> dict:
        return {"loss_law": self.loss_law.to_dict(), "link": self.link.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "TwoStepPrediction":
        return cls(ParametricFit.from_dict(d["loss_law"]), SigmoidFit.from_dict(d["link"]))


def fit_two_step(params, tokens, loss, metric, *, loss_law: ParametricFit | None = None,
                 floor: float | None = None, **fit_kwargs) -> TwoStepPrediction:
    """Fit (or reuse ``loss_law``) L(N, D), then the sigmoid of ``metric`` on the observed loss."""
    from .parametric import fit_parametric

    law = loss_law or fit_parametric(params, tokens, loss, **fit_kwargs)
    return TwoStepPrediction(law, fit_sigmoid(loss, metric, floor=floor))
