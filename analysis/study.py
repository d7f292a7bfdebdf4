"""Fit every law for every arm of a results table: the content of ``fits.json``."""
from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.errors import ConfigError

from .fits.bootstrap import bootstrap_parametric
from .fits.curve_envelope import fit_curve_envelope
from .fits.envelope import fit_envelope
from .fits.extrapolation import extrapolation_check
from .fits.isoflop import fit_isoflop
from .fits.parametric import ParametricFit, fit_parametric
from .fits.two_step import fit_two_step
from .load import METRIC_COLUMNS

#: Arms that are not speech LMs (text pre-training runs): never part of speech fits.
EXCLUDED_ARMS = ("textlm",)
SINGLE_ARM = "all"


def arms_of(df: pd.DataFrame) -> list[str]:
    """Speech arms present, in a stable order (interleaved, textless, then the rest sorted)."""
    if "arm" not in df.columns:
        return [SINGLE_ARM]
    present = [a for a in pd.unique(df["arm"].astype(str)) if a not in EXCLUDED_ARMS]
    first = [a for a in ("interleaved", "textless") if a in present]
    return first + sorted(a for a in present if a not in first)


def arm_rows(df: pd.DataFrame, arm: str) -> pd.DataFrame:
    if "arm" not in df.columns:
        return df
    return df[df["arm"].astype(str) == arm]


def budget_of(df: pd.DataFrame) -> np.ndarray:
    """Nominal budget per run; where it is missing, 6ND rounded to 3 significant digits."""
    flops = df["flops"].to_numpy(dtype=float) if "flops" in df.columns else \
        6.0 * df["params"].to_numpy(dtype=float) * df["tokens"].to_numpy(dtype=float)
    rounded = np.array([float(f"{f:.3g}") if np.isfinite(f) else np.nan for f in flops])
    if "budget" not in df.columns:
        return rounded
    b = df["budget"].to_numpy(dtype=float)
    return np.where(np.isfinite(b) & (b > 0), b, rounded)


def _attempt(fn):
    try:
        return fn().to_dict()
    except ConfigError as exc:
        return {"error": str(exc)}


def fit_arm(rows: pd.DataFrame, *, loss_col: str, metrics, huber_delta: float, reduce: str = "sum",
            bootstrap: int = 0, seed: int = 0, curves: pd.DataFrame | None = None) -> dict:
    """All fits for one arm; a fit that lacks data becomes ``{"error": reason}``."""
    out: dict = {"n_runs": int(len(rows))}
    lossy = rows[np.isfinite(rows[loss_col].to_numpy(dtype=float))]
    out["n_runs_with_loss"] = int(len(lossy))
    N = lossy["params"].to_numpy(dtype=float)
    D = lossy["tokens"].to_numpy(dtype=float)
    L = lossy[loss_col].to_numpy(dtype=float)
    C = budget_of(lossy)
    def parametric():
        fit = fit_parametric(N, D, L, huber_delta=huber_delta, reduce=reduce)
        return bootstrap_parametric(fit, N, D, L, n_resamples=bootstrap, seed=seed) if bootstrap else fit

    out["parametric"] = _attempt(parametric)
    nb = min(bootstrap, 1000)  # isoFLOP resamples are a Python loop: 1,000 is plenty for a percentile interval
    out["isoflop"] = _attempt(lambda: fit_isoflop(C, N, D, L, bootstrap=nb, seed=seed))
    out["isoflop_powersum"] = _attempt(lambda: fit_isoflop(C, N, D, L, method="powersum", bootstrap=min(nb, 200), seed=seed))
    out["extrapolation"] = _attempt(lambda: extrapolation_check(C, N, D, L, huber_delta=huber_delta, reduce=reduce))
    if curves is not None and "arm" in curves.columns:
        arm_curves = curves[curves["arm"].isin(pd.unique(rows["arm"]))] if "arm" in rows.columns else curves
        out["curve_envelope"] = _attempt(lambda: fit_curve_envelope(arm_curves, loss_col="loss"))
    out["loss_envelope"] = _attempt(lambda: fit_envelope(C, L, higher_is_better=False))
    envs = {}
    C_all = budget_of(rows)
    for m in metrics:
        if m not in rows.columns:
            envs[m] = {"error": f"column '{m}' not in the results table"}
            continue
        vals = rows[m].to_numpy(dtype=float)
        envs[m] = _attempt(lambda: fit_envelope(C_all, vals, higher_is_better=True))
    out["metric_envelopes"] = envs
    par = out["parametric"]
    if "error" not in par:
        law = ParametricFit.from_dict(par)
        two = {}
        for m in metrics:
            if m in lossy.columns:
                two[m] = _attempt(lambda: fit_two_step(N, D, L, lossy[m].to_numpy(dtype=float), loss_law=law, floor=0.5))
        out["two_step"] = two
    return out


def fit_study(df: pd.DataFrame, *, loss_col: str = "val_loss_speech",
              metrics=METRIC_COLUMNS, huber_delta: float = 1e-3, reduce: str = "sum",
              arms=None, bootstrap: int = 0, seed: int = 0, curves: pd.DataFrame | None = None) -> dict:
    """Fit parametric, isoFLOP and envelope laws per speech arm; returns a JSON-serialisable dict.

    Structure: ``{"loss_col", "huber_delta", "reduce", "metrics", "n_runs", "arms": {arm: {
    "n_runs", "n_runs_with_loss", "parametric", "isoflop", "loss_envelope",
    "metric_envelopes": {metric: ...}}}}``. Each fit is its result's ``to_dict()`` or
    ``{"error": reason}`` when the arm lacks the data for it. ``textlm`` rows are ignored; a table
    without an ``arm`` column is one arm named ``all``.

    Also per arm: ``isoflop_powersum`` (the less biased approach 2), ``extrapolation`` (fit without
    the largest budget, error on it), ``two_step`` (metric from loss through a sigmoid, per metric)
    and, when ``curves`` (from :func:`analysis.curves.load_curves`) is given, ``curve_envelope``
    (approach 1). ``bootstrap`` > 0 adds ``ci`` intervals to the parametric and isoFLOP fits.
    """
    if loss_col not in df.columns:
        raise ConfigError(f"loss column '{loss_col}' not in the results table (columns: {', '.join(map(str, df.columns))})",
                          source=df.attrs.get("source"), field=loss_col)
    chosen = arms_of(df) if arms is None else list(arms)
    result = {"loss_col": loss_col, "huber_delta": float(huber_delta), "reduce": reduce,
              "metrics": list(metrics), "n_runs": int(len(df)), "bootstrap": int(bootstrap), "arms": {}}
    for arm in chosen:
        rows = arm_rows(df, arm)
        if rows.empty:
            result["arms"][arm] = {"n_runs": 0, "error": f"no runs for arm '{arm}'"}
            continue
        result["arms"][arm] = fit_arm(rows, loss_col=loss_col, metrics=metrics, huber_delta=huber_delta, reduce=reduce,
                                      bootstrap=bootstrap, seed=seed, curves=curves)
    return result
