"""SIMS's question, computed: at equal compute, does one arm reach a lower speech loss and higher
semantic metrics than another, and do their compute-optimal exponents differ?

Three comparisons of each arm with the first one fitted (interleaved, then textless: the SIMS
order), each a difference ``first - other`` with a 95% interval:

- speech loss on the compute-optimal frontier L_opt(C) of the fitted parametric laws, at every
  budget both arms sampled. Interval: percentiles of the difference between the two arms'
  bootstrap refits (independent data, so resample i of one arm is paired with a random resample of
  the other).
- each metric's envelope (best point) at the largest budget both arms sampled. Per-item scores are
  not in the results table, so the interval is a parametric binomial bootstrap: each point's
  accuracy redrawn as Binomial(n, acc) / n with n its item count (``<bench>_n``), the best point
  taken again. Without item counts there is no interval, and the entry says so.
- the compute-optimal exponent a of each arm with its bootstrap interval, whether the two
  intervals overlap, and the interval of the difference.

A verdict is "lower" / "higher" when the difference's interval excludes 0, "not distinguishable"
otherwise, and "no interval" without one; the report's words follow these verdicts.
"""
from __future__ import annotations

import math

from typing import TYPE_CHECKING

import numpy as np

from .fits.bootstrap import derived
from .fits.parametric import ParametricFit

if TYPE_CHECKING:  # the table is an analysis.table.Table (scaling fit: no pandas) or a DataFrame
    import pandas as pd

LEVEL = 0.95
#: Binomial redraws of a metric's best point (cheap: a few arrays per metric).
N_BINOMIAL = 4000


def _q(level: float) -> list[float]:
    return [(1 - level) / 2 * 100, (1 + level) / 2 * 100]


def verdict(ci) -> str:
    """Sign of a difference from its interval: 'lower' (interval below 0), 'higher', 'not distinguishable'."""
    if ci is None or not all(np.isfinite(ci)):
        return "no interval"
    if ci[1] < 0:
        return "lower"
    if ci[0] > 0:
        return "higher"
    return "not distinguishable"


def _interval(v: np.ndarray, level: float):
    v = v[np.isfinite(v)]
    return [float(x) for x in np.percentile(v, _q(level))] if v.size >= 2 else None


def _shared_budgets(df: pd.DataFrame, arms, loss_col: str, budget_of, arm_rows) -> list[float]:
    sets = []
    for arm in arms:
        rows = arm_rows(df, arm)
        if loss_col in rows.columns:
            rows = rows[np.isfinite(np.asarray(rows[loss_col], dtype=float))]
        C = budget_of(rows)
        sets.append(set(C[np.isfinite(C)].tolist()))
    return sorted(set.intersection(*sets)) if sets else []


def _frontier(p0: ParametricFit, p1: ParametricFit, s0, s1, budgets, level, rng) -> dict:
    rows = []
    pair = None
    if s0 is not None and s1 is not None and len(s0) and len(s1):
        k = min(len(s0), len(s1))
        pair = (s0[:k], s1[rng.permutation(len(s1))[:k]])
    for C in budgets:
        d = float(p0.loss_opt(C) - p1.loss_opt(C))
        ci = None
        if pair is not None:
            ci = _interval(derived(pair[0], C)["loss_opt"] - derived(pair[1], C)["loss_opt"], level)
        # a law with a non-positive exponent has no compute-optimal frontier (L_opt is NaN): no verdict
        rows.append({"budget": float(C), "loss_opt": [float(p0.loss_opt(C)), float(p1.loss_opt(C))],
                     "difference": d, "ci": ci, "verdict": verdict(ci) if math.isfinite(d) else "undefined"})
    verdicts = {r["verdict"] for r in rows}
    overall = verdicts.pop() if len(verdicts) == 1 else "mixed"
    return {"budgets": rows, "verdict": overall}


def _best_point(rows: pd.DataFrame, metric: str, hib: bool):
    v = np.asarray(rows[metric], dtype=float)
    ok = np.isfinite(v)
    if not ok.any():
        return None
    return rows[ok], v[ok]


def _has_values(rows: pd.DataFrame, metric: str) -> bool:
    return metric in rows.columns and bool(np.isfinite(np.asarray(rows[metric], dtype=float)).any())


def _metric(df, arms, metric, C, hib, budget_of, arm_rows, level, rng) -> dict:
    best, draws, counts = [], [], []
    for arm in arms:
        rows = arm_rows(df, arm)
        if metric not in rows.columns:
            return {"error": f"column '{metric}' not in the results table"}
        at = rows[budget_of(rows) == C]
        got = _best_point(at, metric, hib)
        if got is None:
            return {"error": f"no {metric} value at C = {C:.3g} for arm '{arm}'"}
        sel, v = got
        best.append(float(v.max() if hib else v.min()))
        ncol = f"{metric}_n"
        n = np.asarray(sel[ncol], dtype=float) if ncol in sel.columns else np.full(v.size, np.nan)
        counts.append(n)
        if np.all(np.isfinite(n) & (n > 0)) and np.all((v >= 0) & (v <= 1)):
            k = rng.binomial(n.astype(int)[None, :], v[None, :], size=(N_BINOMIAL, v.size)) / n[None, :]
            draws.append(k.max(axis=1) if hib else k.min(axis=1))
        else:
            draws.append(None)
    diff = best[0] - best[1]
    if all(d is not None for d in draws):
        ci = _interval(draws[0] - draws[1], level)
        method = "binomial parametric bootstrap of each point's accuracy (item counts from the table)"
    else:
        ci, method = None, f"none: item counts ({metric}_n) are not in the results table"
    v = verdict(ci)
    return {"budget": float(C), "values": best, "difference": diff, "ci": ci, "verdict": v,
            "better": None if v in ("no interval", "not distinguishable") else
            (arms[0] if (v == "higher") == hib else arms[1]),
            "n_items": [float(np.nanmax(n)) if np.isfinite(n).any() else None for n in counts],
            "interval_method": method, "higher_is_better": bool(hib)}


def _exponent(p0: ParametricFit, p1: ParametricFit, s0, s1, level, rng) -> dict:
    c0, c1 = p0.ci.get("a"), p1.ci.get("a")
    overlap = None if not (c0 and c1) else bool(c0[0] <= c1[1] and c1[0] <= c0[1])
    ci = None
    if s0 is not None and s1 is not None and len(s0) and len(s1):
        k = min(len(s0), len(s1))
        a0 = derived(s0[:k], 1.0)["a"]
        a1 = derived(s1[rng.permutation(len(s1))[:k]], 1.0)["a"]
        ci = _interval(a0 - a1, level)
    return {"a": [float(p0.a), float(p1.a)], "ci": [c0, c1], "intervals_overlap": overlap,
            "difference": float(p0.a - p1.a), "difference_ci": ci, "verdict": verdict(ci)}


def compare_arms(df: pd.DataFrame, fits: dict, samples: dict, *, arm_rows, budget_of, direction,
                 level: float = LEVEL, seed: int = 0) -> dict:
    """The ``compare`` entry of fits.json: ``{"reference": first arm, "pairs": [{"arms": [first,
    other], "frontier", "metrics", "exponent"}]}``, or ``{"error"}`` when fewer than two arms have
    a parametric law. ``samples``: arm -> the bootstrap optima of its parametric fit (from
    :func:`analysis.fits.bootstrap.bootstrap_parametric` with ``return_samples``). ``arm_rows``,
    ``budget_of`` and ``direction`` (metric -> higher is better) are analysis.study's, passed in by
    fit_study (which imports this module)."""

    loss_col = fits.get("loss_col", "val_loss_speech")
    pars = {}
    for arm, e in fits["arms"].items():
        p = e.get("parametric")
        if isinstance(p, dict) and p and "error" not in p:
            pars[arm] = ParametricFit.from_dict(p)
    if len(pars) < 2:
        return {"error": f"{len(pars)} arm(s) with a parametric law: nothing to compare"}
    arms = list(pars)
    rng = np.random.default_rng(seed)
    out = {"reference": arms[0], "level": level, "loss_col": loss_col, "pairs": []}
    for other in arms[1:]:
        pair = [arms[0], other]
        budgets = _shared_budgets(df, pair, loss_col, budget_of, arm_rows)
        entry = {"arms": pair, "budgets": budgets,
                 "ill_conditioned": [bool(pars[a].ill_conditioned) for a in pair]}
        if not budgets:
            entry["frontier"] = {"error": "the arms share no compute budget"}
        else:
            entry["frontier"] = _frontier(pars[arms[0]], pars[other], samples.get(arms[0]), samples.get(other),
                                          budgets, level, rng)
        metrics = {}
        # a benchmark the table has no column for (a text-only table) is no part of the comparison; a column
        # present but empty for both arms is "not evaluated" (one line of the report)
        for m in (m for m in fits.get("metrics", []) if m in df.columns):
            if not budgets:
                metrics[m] = {"error": "the arms share no compute budget"}
                continue
            try:
                hib = direction(m)
            except Exception as exc:  # noqa: BLE001 - an unknown direction is reported, not fatal
                metrics[m] = {"error": str(exc)}
                continue
            if not any(_has_values(arm_rows(df, a), m) for a in pair):
                metrics[m] = {"error": "evaluated by neither arm", "not_evaluated": True}
                continue
            metrics[m] = _metric(df, pair, m, max(budgets), hib, budget_of, arm_rows, level, rng)
        entry["metrics"] = metrics
        entry["exponent"] = _exponent(pars[arms[0]], pars[other], samples.get(arms[0]), samples.get(other), level, rng)
        out["pairs"].append(entry)
    return out
