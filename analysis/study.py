"""Fit every law for every arm of a results table: the content of ``fits.json``.

A results table here is an :class:`analysis.table.Table` (``scaling fit``: no pandas import) or a
pandas DataFrame (report, figures, tests): these functions use only what both offer (``columns``,
``len``, ``t[column]`` read through ``np.asarray``, ``t[boolean mask]``, ``take``, ``attrs``).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from scaling.datadir import BENCHMARKS, higher_is_better
from scaling.errors import ConfigError
from scaling.flops import flops_6nd

from .fits.envelope import fit_envelope
from .fits.extrapolation import extrapolation_check, rollout_check
from .fits.isoflop import fit_isoflop
from .fits.parametric import ParametricFit, check_penalty, fit_parametric
from .fits.two_step import fit_two_step
from .load import METRIC_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from .table import Table

#: Arms that are not speech LMs (text pre-training runs): never part of speech fits.
EXCLUDED_ARMS = ("textlm",)
SINGLE_ARM = "all"


def _col(df, name: str) -> np.ndarray:
    """A numeric column as floats, from a Table or a DataFrame."""
    return np.asarray(df[name], dtype=float)


def _arms(df) -> np.ndarray:
    return np.asarray(df["arm"]).astype(str)


def arms_of(df: Table | pd.DataFrame) -> list[str]:
    """Speech arms present, in a stable order (interleaved, textless, then the rest sorted)."""
    if "arm" not in df.columns:
        return [SINGLE_ARM]
    present = [a for a in dict.fromkeys(_arms(df).tolist()) if a not in EXCLUDED_ARMS]
    first = [a for a in ("interleaved", "textless") if a in present]
    return first + sorted(a for a in present if a not in first)


def arm_rows(df, arm: str):
    """The rows of one arm (all rows when the table has no ``arm`` column), of the table's type."""
    if "arm" not in df.columns:
        return df
    return df[_arms(df) == arm]


def budget_of(df: Table | pd.DataFrame) -> np.ndarray:
    """Nominal budget per run; where it is missing, 6ND rounded to 3 significant digits."""
    flops = _col(df, "flops") if "flops" in df.columns else flops_6nd(_col(df, "params"), _col(df, "tokens"))
    rounded = np.array([float(f"{f:.3g}") if np.isfinite(f) else np.nan for f in flops])
    if "budget" not in df.columns:
        return rounded
    b = _col(df, "budget")
    return np.where(np.isfinite(b) & (b > 0), b, rounded)


def _point_ids(rows, mask) -> list[str]:
    """Ids of the masked rows: point ids (a wsd run has several points, one run id), else run ids."""
    col = next((c for c in ("point_id", "run_id") if c in rows.columns), None)
    if col:
        ids = np.asarray(rows[col]).astype(str)
    else:  # a DataFrame built by hand: its index labels are the row numbers
        ids = np.array([f"row {i + 1}" for i in getattr(rows, "index", range(len(rows)))])
    return ids[np.asarray(mask)].tolist()


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def n_runs_of(rows: Table | pd.DataFrame) -> int:
    """Training runs behind ``rows`` (a wsd run gives several points)."""
    if "run_id" not in rows.columns:
        return int(len(rows))
    return len({v for v in np.asarray(rows["run_id"]).tolist() if not _missing(v)})


def usable_losses(rows, loss_col: str) -> tuple:
    """The rows whose loss is finite and positive, and a note on the others (count, run ids,
    why), or None when every row is usable. A loss that is NaN, inf or <= 0 cannot enter a log-loss fit."""
    L = _col(rows, loss_col)
    bad = ~(np.isfinite(L) & (L > 0))
    if not bad.any():
        return rows, None
    kinds = []
    for name, m in (("missing (NaN)", np.isnan(L)), ("infinite", np.isinf(L)), ("<= 0", np.isfinite(L) & (L <= 0))):
        if m.any():
            kinds.append(f"{int(m.sum())} {name}")
    ids = _point_ids(rows, bad)
    note = {"count": int(bad.sum()), "runs": ids, "reason": f"{loss_col}: " + ", ".join(kinds)}
    return rows[~bad], note


def direction_of(column: str, overrides: dict | None = None) -> bool:
    """True when higher is better for ``column``: ``overrides`` first, then the benchmark registry
    (:func:`scaling.datadir.higher_is_better`); a column neither knows is a ConfigError."""
    if overrides and column in overrides:
        return bool(overrides[column])
    hib = higher_is_better(column)
    if hib is None:
        raise ConfigError("direction of this column is unknown (not a registered benchmark or a loss): pass "
                          "--higher-is-better or --lower-is-better", field=column)
    return hib


def drop_top(df, loss_col: str, k: int):
    """``df`` without the ``k`` highest-loss runs of each arm (Epoch drop the 5 highest of Chinchilla's 245).

    The rows come back arm by arm, each arm's sorted by loss (missing losses first): pandas'
    ``sort_values(na_position="first")`` order, which the fits' sums have always seen."""
    if k <= 0:
        return df
    L = _col(df, loss_col)
    every = np.arange(len(df))
    keep = []
    for arm in arms_of(df):
        pos = every if "arm" not in df.columns else every[_arms(df) == arm]
        missing = np.isnan(L[pos])
        # numpy's default (unstable) argsort, as pandas' nargsort: equal losses keep pandas' order
        order = np.concatenate([pos[missing], pos[~missing][np.argsort(L[pos][~missing], kind="quicksort")]])
        keep.append(order[:-k] if len(pos) > k else order[:0])
    out = df.take(np.concatenate(keep) if keep else np.zeros(0, dtype=np.intp))
    out.attrs.update(df.attrs)
    return out


#: The columns and size of Epoch's reconstruction of Chinchilla's points (tests/data/chinchilla_epoch.csv).
_CHINCHILLA_COLUMNS = {"params", "tokens", "flops", "loss"}


def data_notes(df, loss_col: str, *, dropped_top: int = 0) -> list[str]:
    """Conventions a reader of the fits should know about the table: Chinchilla's data (Epoch drop
    the 5 highest losses), and tables not on an isoFLOP grid (one run per budget)."""
    notes = []
    given = set(df.columns) - {"point_id", "kind"}  # the loader adds these to any table
    if given == _CHINCHILLA_COLUMNS and dropped_top == 0 and len(df) >= 200:
        notes.append("this table looks like Chinchilla's points (params, tokens, flops, loss): Epoch AI drop the 5 "
                     "highest-loss points before fitting; pass --drop-top 5 to do the same")
    elif dropped_top:
        notes.append(f"the {dropped_top} highest-loss runs of each arm were dropped (--drop-top {dropped_top})")
    for arm in arms_of(df):
        rows = arm_rows(df, arm)
        if loss_col in rows.columns:
            rows, _ = usable_losses(rows, loss_col)
        C = budget_of(rows)
        C = C[np.isfinite(C)]
        if C.size < 2:
            continue
        _, counts = np.unique(C, return_counts=True)
        single = int((counts == 1).sum())
        if single > counts.size / 2:
            notes.append(f"{arm}: not on an isoFLOP grid ({single} of {counts.size} budgets hold a single run): the "
                         "loss envelope and the extrapolation check run on one point per budget, and approach 2 "
                         "(isoFLOP) has no curves to fit")
    return notes


def check_fittable(rows, loss_col: str, *, source=None, arm: str = SINGLE_ARM) -> None:
    """Raise ConfigError for a table no law can be fitted to: no usable loss, a constant loss, or a
    single compute budget."""
    L = _col(rows, loss_col)
    if L.size == 0:
        raise ConfigError(f"arm '{arm}': no runs with a finite, positive loss", source=source, field=loss_col)
    if np.ptp(L) == 0:
        raise ConfigError(f"arm '{arm}': the loss is the same in all {L.size} runs: there is no trend to fit",
                          source=source, field=loss_col, value=float(L[0]))
    C = budget_of(rows)
    if np.unique(C[np.isfinite(C)]).size < 2:
        raise ConfigError(f"arm '{arm}': all {L.size} runs share a single budget: a scaling law needs several compute budgets",
                          source=source, field="budget", value=float(C[0]))


def _attempt(fn):
    try:
        return fn().to_dict()
    except ConfigError as exc:
        return {"error": str(exc)}


def fit_arm(rows, *, loss_col: str, metrics, huber_delta: float, reduce: str = "sum",
            bootstrap: int = 0, seed: int = 0, curves: pd.DataFrame | None = None, directions: dict | None = None,
            bootstrap_method: str = "pairs", keep_extrapolated: bool = False, samples_out: dict | None = None,
            extrapolation: bool = True, overestimate_penalty: float = 1.0) -> dict:
    """All fits for one arm; a fit that lacks data becomes ``{"error": reason}``. ``samples_out``
    receives the bootstrap optima of the parametric law (key "parametric"), for the comparison of arms.
    ``extrapolation=False`` leaves out the extrapolation and rollout checks (two more full parametric fits).
    ``overestimate_penalty`` goes to every parametric fit (see :func:`fit_parametric`)."""
    # One row per point: a run's end and each of its cooldown branches (scaling.points).
    out: dict = {"n_runs": n_runs_of(rows), "n_points": int(len(rows))}
    lossy, dropped = usable_losses(rows, loss_col)
    out["n_runs_with_loss"] = int(len(lossy))  # points, as every fit below counts them
    if dropped:
        out["dropped"] = dropped
    N = _col(lossy, "params")
    D = _col(lossy, "tokens")
    L = _col(lossy, loss_col)
    C = budget_of(lossy)

    def parametric():
        fit = fit_parametric(N, D, L, huber_delta=huber_delta, reduce=reduce, overestimate_penalty=overestimate_penalty)
        # the sandwich-covariance intervals: a Jacobian and a 5 x 5 inverse, so always (beside any bootstrap)
        from .fits.laplace import laplace_intervals

        laplace_intervals(fit, N, D, L)
        if not bootstrap:
            return fit
        # imported here only: scaling fit without --bootstrap stays lean
        from .fits.bootstrap import bootstrap_parametric, isoflop_band

        # Pairs resampling is over points, cooldown branches included, not over runs. A branch end
        # matches a separately trained run of its length (Hägele et al. 2024), and what it shares
        # with its run (init, data order) is shared in an isoFLOP sweep too by every run of one size
        # and seed; resampling the 5-6 runs of an arm instead would leave resamples with 2-3 model
        # sizes, where alpha is not identified at all.
        samples = bootstrap_parametric(fit, N, D, L, n_resamples=bootstrap, seed=seed, method=bootstrap_method,
                                       return_samples=True)
        if samples_out is not None:
            samples_out["parametric"] = samples[2]
        # the law's band along each budget's isoFLOP curve, over the sizes sampled there (figures)
        ranges = [(c, N[C == c].min() / 1.3, N[C == c].max() * 1.3) for c in sorted(set(C[np.isfinite(C)]))]
        samples[0].bootstrap["isoflop_band"] = isoflop_band(samples[2], ranges, level=samples[0].bootstrap["level"])
        return samples[0]

    out["parametric"] = _attempt(parametric)
    if "error" not in out["parametric"]:  # the scatter split into per-run and per-point parts (scaling power, design)
        from .noise import noise_record, point_runs

        out["parametric"].setdefault("extra", {})["noise"] = noise_record(out["parametric"], N, D, L, point_runs(lossy))
    nb = min(bootstrap, 1000)  # isoFLOP resamples are a Python loop: 1,000 is plenty for a percentile interval
    out["isoflop"] = _attempt(lambda: fit_isoflop(C, N, D, L, bootstrap=nb, seed=seed, keep_extrapolated=keep_extrapolated))
    out["isoflop_powersum"] = _attempt(lambda: fit_isoflop(C, N, D, L, method="powersum", bootstrap=min(nb, 200),
                                                           seed=seed, keep_extrapolated=keep_extrapolated))
    # Held out: every point at the largest budget. In a wsd sweep those are run ends whose own
    # cooldown branches (smaller budgets) stay in the training set, as a size's smaller runs do in
    # an isoFLOP sweep: the check still predicts (N, D) points the fit never saw.
    if extrapolation:
        out["extrapolation"] = _attempt(lambda: extrapolation_check(C, N, D, L, huber_delta=huber_delta, reduce=reduce,
                                                                    overestimate_penalty=overestimate_penalty))
        # Held out: every point of the largest model size (OLMo-core's rollout: fit the smaller rungs, predict the next)
        out["rollout"] = _attempt(lambda: rollout_check(N, D, L, huber_delta=huber_delta, reduce=reduce,
                                                        overestimate_penalty=overestimate_penalty))
    if curves is not None and "arm" in curves.columns:
        # imports pandas: only with curves (scaling report)
        from .fits.curve_envelope import fit_curve_envelope

        arm_curves = curves[curves["arm"].isin(set(_arms(rows).tolist()))] if "arm" in rows.columns else curves
        out["curve_envelope"] = _attempt(lambda: fit_curve_envelope(arm_curves, loss_col="loss"))
    out["loss_envelope"] = _attempt(lambda: fit_envelope(C, L, higher_is_better=direction_of(loss_col, directions)))
    envs = {}
    C_all = budget_of(rows)
    for m in metrics:
        if m not in rows.columns:
            envs[m] = {"error": f"column '{m}' not in the results table"}
            continue
        vals = _col(rows, m)
        envs[m] = _attempt(lambda: fit_envelope(C_all, vals, higher_is_better=direction_of(m, directions)))
    out["metric_envelopes"] = envs
    par = out["parametric"]
    if "error" not in par:
        law = ParametricFit.from_dict(par)
        two = {}
        for m in metrics:
            if m in lossy.columns:
                two[m] = _attempt(lambda: fit_two_step(N, D, L, _col(lossy, m), loss_law=law, floor=0.5))
        out["two_step"] = two
    return out


#: The fits of one arm that count as "a law was fitted" for ``scaling fit --law all``: the scaling
#: laws proper (an envelope through two budgets always "fits" and says nothing on its own).
LAW_KEYS = ("parametric", "isoflop", "isoflop_powersum")


def fitted_laws(fits: dict) -> list[str]:
    """``arm/law`` for every law in a fits.json dict that was fitted (no ``error``)."""
    return [f"{arm}/{k}" for arm, e in fits["arms"].items() for k in LAW_KEYS
            if isinstance(e.get(k), dict) and "error" not in e[k]]


def fit_study(df: Table | pd.DataFrame, *, loss_col: str = "val_loss_speech",
              metrics=None, huber_delta: float = 1e-3, reduce: str = "sum",
              arms=None, bootstrap: int = 0, seed: int = 0, curves: pd.DataFrame | None = None,
              directions: dict | None = None, bootstrap_method: str = "pairs",
              keep_extrapolated: bool = False, dropped_top: int = 0, require_fit: bool = False,
              require_law: bool | None = None, extrapolation: bool = True,
              overestimate_penalty: float = 1.0) -> dict:
    """Fit parametric, isoFLOP and envelope laws per speech arm; returns a JSON-serialisable dict.

    Structure: ``{"loss_col", "huber_delta", "reduce", "metrics", "n_runs", "notes", "arms": {arm: {
    "n_runs", "n_runs_with_loss", "dropped", "parametric", "isoflop", "loss_envelope",
    "metric_envelopes": {metric: ...}}}}``. Each fit is its result's ``to_dict()`` or
    ``{"error": reason}`` when the arm lacks the data for it. ``textlm`` rows are ignored; a table
    without an ``arm`` column is one arm named ``all``. Rows whose loss is NaN, inf or <= 0 are left
    out of the loss fits and listed under ``dropped`` (count, run ids, reason); ``notes`` holds
    :func:`data_notes`.

    Also per arm: ``isoflop_powersum`` (the less biased approach 2), ``extrapolation`` (fit without
    the largest budget, error on it) and ``rollout`` (fit without the largest model size, error on it;
    ``extrapolation=False`` leaves these two full parametric fits out, as ``scaling fit`` does when it
    writes no JSON), ``two_step`` (metric from loss through a sigmoid, per metric)
    and, when ``curves`` (from :func:`analysis.curves.load_curves`) is given, ``curve_envelope``
    (approach 1). ``bootstrap`` > 0 adds ``ci`` intervals to the parametric and isoFLOP fits
    (``bootstrap_method`` for the parametric one: pairs, residual or parametric); the parametric fit
    always carries ``ci_laplace`` (sandwich-covariance intervals, :mod:`analysis.fits.laplace`).
    ``overestimate_penalty`` K >= 1 weighs over-predicted points K times in every parametric fit
    (recorded at the top level; 1: the symmetric fit).
    Envelope directions come from the benchmark registry, ``directions`` (column -> higher is
    better) overriding it. ``require_fit``: raise ConfigError when an arm's data cannot be fitted
    at all (constant loss, one budget, no usable loss) or when no law was fitted; ``require_law=False``
    keeps the first check only (a report documents the runs even when no law could be fitted).
    """
    if metrics is None:  # every pair benchmark (a missing column is reported), generation metrics when present
        metrics = [m for m in METRIC_COLUMNS if m in df.columns or BENCHMARKS[m].kind == "pairs"]
    if loss_col not in df.columns:
        raise ConfigError(f"loss column '{loss_col}' not in the results table (columns: {', '.join(map(str, df.columns))})",
                          source=df.attrs.get("source"), field=loss_col)
    chosen = arms_of(df) if arms is None else list(arms)
    if require_fit:
        for arm in chosen:
            check_fittable(usable_losses(arm_rows(df, arm), loss_col)[0], loss_col, source=df.attrs.get("source"), arm=arm)
    result = {"loss_col": loss_col, "huber_delta": float(huber_delta), "reduce": reduce,
              "metrics": list(metrics), "n_runs": n_runs_of(df), "n_points": int(len(df)), "bootstrap": int(bootstrap),
              "bootstrap_method": bootstrap_method if bootstrap else None,
              "overestimate_penalty": check_penalty(overestimate_penalty),
              "notes": data_notes(df, loss_col, dropped_top=dropped_top), "arms": {}}
    samples: dict = {}
    for arm in chosen:
        rows = arm_rows(df, arm)
        if rows.empty:
            result["arms"][arm] = {"n_runs": 0, "error": f"no runs for arm '{arm}'"}
            continue
        got: dict = {}
        result["arms"][arm] = fit_arm(rows, loss_col=loss_col, metrics=metrics, huber_delta=huber_delta, reduce=reduce,
                                      bootstrap=bootstrap, seed=seed, curves=curves, directions=directions,
                                      bootstrap_method=bootstrap_method, keep_extrapolated=keep_extrapolated,
                                      samples_out=got, extrapolation=extrapolation,
                                      overestimate_penalty=overestimate_penalty)
        if "parametric" in got:
            samples[arm] = got["parametric"]
    if len(result["arms"]) >= 2:
        from .compare import compare_arms

        result["compare"] = compare_arms(df, result, samples, seed=seed, arm_rows=arm_rows, budget_of=budget_of,
                                         direction=lambda m: direction_of(m, directions))
    if (require_fit if require_law is None else require_law) and not fitted_laws(result):
        errors = "; ".join(f"{arm}/{k}: {e[k]['error']}" for arm, e in result["arms"].items() for k in LAW_KEYS
                           if isinstance(e.get(k), dict) and "error" in e[k])
        raise ConfigError(f"no law could be fitted ({errors})", source=df.attrs.get("source"))
    return result
