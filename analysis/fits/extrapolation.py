"""Extrapolation check: fit on every budget but the largest, predict the largest, report the error."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from scaling.errors import ConfigError

from .parametric import fit_parametric


@dataclass
class ExtrapolationCheck:
    """Held-out budget, its points' observed and predicted losses, and the error summary."""

    held_out_budget: float
    n_train: int
    n_test: int
    observed: list
    predicted: list
    mean_abs_error: float  # mean |predicted - observed| in loss units
    mean_rel_error: float  # mean |predicted - observed| / observed
    best_observed: float  # lowest loss at the held-out budget
    best_predicted: float  # predicted loss of that same run

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ExtrapolationCheck":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def __str__(self) -> str:
        return (f"held out C = {self.held_out_budget:.3g} ({self.n_test} points, trained on {self.n_train}): "
                f"mean |error| {self.mean_abs_error:.4g} ({100 * self.mean_rel_error:.2f}%), best point "
                f"{self.best_observed:.4f} observed vs {self.best_predicted:.4f} predicted")


def extrapolation_check(budget, params, tokens, loss, **fit_kwargs) -> ExtrapolationCheck:
    """Fit the parametric law without the largest budget and score it on that budget's runs.

    ``fit_kwargs`` go to :func:`fit_parametric` (e.g. ``huber_delta``, ``grid``).
    """
    C = np.asarray(budget, dtype=float).ravel()
    N, D, L = (np.asarray(x, dtype=float).ravel() for x in (params, tokens, loss))
    ok = np.isfinite(C) & np.isfinite(L)
    C, N, D, L = C[ok], N[ok], D[ok], L[ok]
    budgets = np.unique(C)
    if budgets.size < 2:
        raise ConfigError(f"extrapolation check needs at least two budgets, got {budgets.size}")
    top = budgets.max()
    test = C == top
    fit = fit_parametric(N[~test], D[~test], L[~test], **fit_kwargs)
    pred = fit.predict(N[test], D[test])
    err = pred - L[test]
    i = int(np.argmin(L[test]))
    return ExtrapolationCheck(held_out_budget=float(top), n_train=int((~test).sum()), n_test=int(test.sum()),
                              observed=[float(v) for v in L[test]], predicted=[float(v) for v in pred],
                              mean_abs_error=float(np.mean(np.abs(err))),
                              mean_rel_error=float(np.mean(np.abs(err) / L[test])),
                              best_observed=float(L[test][i]), best_predicted=float(pred[i]))
