"""Held-out checks of the parametric law: fit without the largest budget (extrapolation check) or
without the largest model size (rollout, OLMo-core's ladder check), predict what was left out, report
the error."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

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
    #: mean (predicted - observed) / observed: > 0 when the law over-predicts the held-out losses
    mean_signed_rel_error: float = math.nan

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ExtrapolationCheck":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def __str__(self) -> str:
        return (f"held out C = {self.held_out_budget:.3g} ({self.n_test} points, trained on {self.n_train}): "
                f"mean |error| {self.mean_abs_error:.4g} ({100 * self.mean_rel_error:.2f}%), best point "
                f"{self.best_observed:.4f} observed vs {self.best_predicted:.4f} predicted")


def extrapolation_check(budget, params, tokens, loss, **fit_kwargs) -> ExtrapolationCheck:
    """Fit the parametric law without the largest budget and score it on that budget's runs.

    ``fit_kwargs`` go to :func:`fit_parametric` (e.g. ``huber_delta``, ``grid``, ``overestimate_penalty``).
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
                              best_observed=float(L[test][i]), best_predicted=float(pred[i]),
                              mean_signed_rel_error=float(np.mean(err / L[test])))


@dataclass
class RolloutCheck:
    """The law fitted without the largest model size, scored on that size's points."""

    held_out_params: float  # the largest model size, left out of the fit
    n_sizes_train: int  # model sizes the law was fitted to
    next_smaller_params: float  # the largest size it saw
    n_train: int
    n_test: int
    observed: list
    predicted: list
    mean_abs_rel_error: float  # mean |predicted - observed| / observed
    mean_signed_rel_error: float  # mean (predicted - observed) / observed: > 0 when the law over-predicts
    max_abs_rel_error: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RolloutCheck":
        return cls(**{f.name: d[f.name] for f in fields(cls)})

    def __str__(self) -> str:
        return (f"held out N = {self.held_out_params:.3g} ({self.n_test} points; fitted to {self.n_train} points of "
                f"{self.n_sizes_train} sizes up to {self.next_smaller_params:.3g}): mean |rel. error| "
                f"{100 * self.mean_abs_rel_error:.2f}%, bias {100 * self.mean_signed_rel_error:+.2f}%, "
                f"worst {100 * self.max_abs_rel_error:.2f}%")


def rollout_check(params, tokens, loss, **fit_kwargs) -> RolloutCheck:
    """Fit the parametric law without the largest model size and score it on that size's points
    (OLMo-core's ladder rollout: fit the smaller rungs, predict the next). Where the extrapolation
    check asks "does the law hold at more compute?", this asks "does it hold at a larger model?".

    Sizes are the distinct parameter counts; ``fit_kwargs`` go to :func:`fit_parametric`.
    """
    N, D, L = (np.asarray(x, dtype=float).ravel() for x in (params, tokens, loss))
    ok = np.isfinite(N) & np.isfinite(D) & np.isfinite(L)
    N, D, L = N[ok], D[ok], L[ok]
    sizes = np.unique(N)
    if sizes.size < 3:
        raise ConfigError(f"rollout check needs at least three model sizes (two to fit, one to predict), got {sizes.size}",
                          field="params", value=int(sizes.size))
    test = N == sizes[-1]
    fit = fit_parametric(N[~test], D[~test], L[~test], **fit_kwargs)
    pred = fit.predict(N[test], D[test])
    rel = (pred - L[test]) / L[test]
    return RolloutCheck(held_out_params=float(sizes[-1]), n_sizes_train=int(sizes.size - 1),
                        next_smaller_params=float(sizes[-2]), n_train=int((~test).sum()), n_test=int(test.sum()),
                        observed=[float(v) for v in L[test]], predicted=[float(v) for v in pred],
                        mean_abs_rel_error=float(np.mean(np.abs(rel))), mean_signed_rel_error=float(np.mean(rel)),
                        max_abs_rel_error=float(np.max(np.abs(rel))))
