"""Fit every law for every arm of a results table: the content of ``fits.json``."""
from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.errors import ConfigError

from .fits.envelope import fit_envelope
from .fits.isoflop import fit_isoflop
from .fits.parametric import fit_parametric
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


def fit_arm(rows: pd.DataFrame, *, loss_col: str, metrics, huber_delta: float, reduce: str = "sum") -> dict:
    """All fits for one arm; a fit that lacks data becomes ``{"error": reason}``."""
    out: dict = {"n_runs": int(len(rows))}
    lossy = rows[np.isfinite(rows[loss_col].to_numpy(dtype=float))]
    out["n_runs_with_loss"] = int(len(lossy))
    N = lossy["params"].to_numpy(dtype=float)
    D = lossy["tokens"].to_numpy(dtype=float)
    L = lossy[loss_col].to_numpy(dtype=float)
    C = budget_of(lossy)
    out["parametric"] = _attempt(lambda: fit_parametric(N, D, L, huber_delta=huber_delta, reduce=reduce))
    out["isoflop"] = _attempt(lambda: fit_isoflop(C, N, D, L))
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
    return out


def fit_study(df: pd.DataFrame, *, loss_col: str = "val_loss_speech",
              metrics=METRIC_COLUMNS, huber_delta: float = 1e-3, reduce: str = "sum",
              arms=None) -> dict:
    """Fit parametric, isoFLOP and envelope laws per speech arm; returns a JSON-serialisable dict.

    Structure: ``{"loss_col", "huber_delta", "reduce", "metrics", "n_runs", "arms": {arm: {
    "n_runs", "n_runs_with_loss", "parametric", "isoflop", "loss_envelope",
    "metric_envelopes": {metric: ...}}}}``. Each fit is its result's ``to_dict()`` or
    ``{"error": reason}`` when the arm lacks the data for it. ``textlm`` rows are ignored; a table
    without an ``arm`` column is one arm named ``all``.
    """
    if loss_col not in df.columns:
        raise ConfigError(f"loss column '{loss_col}' not in the results table (columns: {', '.join(map(str, df.columns))})",
                          source=df.attrs.get("source"), field=loss_col)
    chosen = arms_of(df) if arms is None else list(arms)
    result = {"loss_col": loss_col, "huber_delta": float(huber_delta), "reduce": reduce,
              "metrics": list(metrics), "n_runs": int(len(df)), "arms": {}}
    for arm in chosen:
        rows = arm_rows(df, arm)
        if rows.empty:
            result["arms"][arm] = {"n_runs": 0, "error": f"no runs for arm '{arm}'"}
            continue
        result["arms"][arm] = fit_arm(rows, loss_col=loss_col, metrics=metrics, huber_delta=huber_delta, reduce=reduce)
    return result
