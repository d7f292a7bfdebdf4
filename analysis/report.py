"""``report.md``: tables of the fitted laws and sentences derived from the numbers, never hard-coded."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.atomic import write_text

from .fits.envelope import EnvelopeFit
from .fits.extrapolation import ExtrapolationCheck, RolloutCheck
from .fits.isoflop import IsoflopFit
from .fits.parametric import ParametricFit
from .fits.reference import REFERENCE_LAWS
from .study import arm_rows, budget_of, n_runs_of
from .report_compare import compare_section
from .tables import markdown_table


def _g(x, digits: int = 4) -> str:
    return f"{x:.{digits}g}" if isinstance(x, (int, float, np.floating)) and np.isfinite(x) else "–"


def _get(entry, cls):
    return None if not entry or "error" in entry else cls.from_dict(entry)


def _n_branches(rows: pd.DataFrame) -> int:
    return int((rows["kind"].astype(str) == "cooldown").sum()) if "kind" in rows.columns else 0


def _runs_section(df: pd.DataFrame, loss_col: str) -> list[str]:
    lines = ["## Runs", ""]
    epochs = _most_epochs(df)
    if "arm" in df.columns:
        ep_head, ep_rule = (" most epochs |", "---|") if epochs else ("", "")
        lines += [f"| arm | runs | points (cooldown branches) | model sizes | budgets | N range | points with loss |{ep_head}",
                  f"|---|---|---|---|---|---|---|{ep_rule}"]
        for arm, rows in df.groupby("arm", sort=True):
            C = budget_of(rows)
            n_loss = int(np.isfinite(rows[loss_col].to_numpy(dtype=float)).sum()) if loss_col in rows else 0
            note = " (text pre-training, not fitted)" if arm == "textlm" else ""
            ep = _most_epochs(rows)
            ep_cell = (f" {ep[0]:.2f} |" if ep else " – |") if epochs else ""
            lines.append(f"| {arm}{note} | {n_runs_of(rows)} | {len(rows)} ({_n_branches(rows)}) | {rows['params'].nunique()} | "
                         f"{len(set(C[np.isfinite(C)]))} | {_g(rows['params'].min(), 3)} – {_g(rows['params'].max(), 3)} | {n_loss} |"
                         f"{ep_cell}")
    else:
        lines.append(f"{n_runs_of(df)} runs, {len(df)} points, one arm (no `arm` column).")
    if epochs:
        most, worst, n_rec = epochs
        scope = "" if n_rec == len(df) else f" (of the {n_rec} of {len(df)} points whose runs record it)"
        verdict = "so no point repeats any of its data" if most <= 1 else "so some points repeat data"
        lines += ["", f"Data repetition: the most any point{scope} reads of one training stream is {most:.2f} "
                  f"epochs (`{worst}`), {verdict}; \"most epochs\" is that figure per arm (results column "
                  "`epochs`: the most passes over one stream, from each run's record)."]
    if _n_branches(df):
        lines += ["", "A point is a run's end or the end of one of its cooldown branches (wsd schedule): each branch "
                  "decays the learning rate over its own budget, so its end stands for a run of that length "
                  "(Hägele et al. 2024). Periodic evaluations are not points."]
    return lines + [""]


def _most_epochs(df: pd.DataFrame) -> tuple[float, str, int] | None:
    """The most passes over one training stream among the rows that record it, the point that makes them,
    and how many rows record it (None when none does)."""
    if "epochs" not in df.columns:
        return None
    e = pd.to_numeric(df["epochs"], errors="coerce")
    n = int(e.notna().sum())
    if not n:
        return None
    i = e.idxmax()
    return float(e[i]), str(df.loc[i, "point_id"] if "point_id" in df.columns else df.loc[i, "run_id"]), n


def _notes_section(fits: dict) -> list[str]:
    """Conventions and left-out runs: what a reader must know before reading the numbers."""
    lines = [f"- {n[0].upper() + n[1:]}." for n in fits.get("notes", [])]
    for arm, e in fits["arms"].items():
        d = e.get("dropped")
        if d:
            lines.append(f"- **{arm}**: {d['count']} run(s) left out of the loss fits ({d['reason']}): "
                         + ", ".join(f"`{r}`" for r in d["runs"][:20]) + (" …" if d["count"] > 20 else "") + ".")
    return ["## Data notes", "", *lines, ""] if lines else []


_BOOTSTRAP_WORDS = {"pairs": "resampling runs with replacement (pairs bootstrap)",
                    "residual": "resampling the fit's log residuals on the same runs (residual bootstrap)",
                    "parametric": "drawing Gaussian log residuals of the fitted spread (parametric bootstrap)"}


def _search_words(p: ParametricFit) -> str:
    x = p.extra
    if "n_polished" not in x:
        return f"{p.n_starts:,}-start grid"
    return (f"{p.n_starts:,} grid starts evaluated, {x['n_refined']:,} refined, {x['n_polished']} polished to "
            f"convergence, {x['n_at_best']} of them at the best objective" + ("; search widened" if x.get("widened") else ""))


def _laws_section(fits: dict) -> list[str]:
    boot = fits.get("bootstrap") or 0
    method = fits.get("bootstrap_method") or "pairs"
    lines = ["## Parametric law L(N, D) = E + A / N^α + B / D^β (Chinchilla approach 3)", "",
             f"Huber δ = {fits.get('huber_delta')}, objective reduced by {fits.get('reduce', 'sum')} over points. "
             + (f"Intervals: 95% percentile bootstrap, {boot} resamples, {_BOOTSTRAP_WORDS.get(method, method)}, each "
                "refitted to its own optimum." if boot else "No bootstrap intervals (bootstrap off).")
             + " Laplace intervals: 95% normal intervals from the sandwich covariance of the Huber fit at its optimum "
             "(kernel-smoothed Huber curvature; E, A, B on the log scale), no refits."
             + (f" Asymmetric loss: a point the law over-predicts costs {fits['overestimate_penalty']:g}x "
                "(--overestimate-penalty)." if fits.get("overestimate_penalty", 1.0) != 1.0 else ""), ""]
    for arm, entry in fits["arms"].items():
        p = _get(entry.get("parametric"), ParametricFit)
        if p is None:
            lines.append(f"- **{arm}**: not fitted: {entry.get('parametric', {}).get('error', entry.get('error'))}")
            continue
        for w in p.diagnostics():
            lines.append(f"- **CAUTION ({arm})**: {w}.")
        if p.ill_conditioned:
            lines.append(f"- **CAUTION ({arm})**: this fit is ill-conditioned; do not quote its parameters or "
                         "exponents. Add model sizes and budgets, or compare with the bounded variant "
                         "(`fit_parametric(..., bounds=True)`). Whether a wider grid would do is checked before it "
                         "trains: `scaling plan NEW.yaml --json plan.json` then `scaling power plan.json --law fits.json` "
                         "simulates it under this law and "
                         "this fit's scatter" + (f" ({p.extra['log_residual_rms']:.3g} in log loss)."
                                                 if "log_residual_rms" in p.extra else "."))
        lines += [f"- **{arm}** ({p.n_points} points): L(N, D) = {p.E:.4g} + {p.A:.4g} / N^{p.alpha:.4f} + "
                  f"{p.B:.4g} / D^{p.beta:.4f}",
                  f"  - E = {p.E:.4g}, A = {p.A:.4g}, B = {p.B:.4g}, α = {p.alpha:.4f}, β = {p.beta:.4f}",
                  f"  - compute-optimal: N_opt = {p.G:.4g} (C/6)^{p.a:.4f}, D_opt = {1 / p.G:.4g} (C/6)^{p.b:.4f} "
                  f"(a = {p.a:.4f}, b = {p.b:.4f}); objective {p.objective:.6g}, converged: {p.converged}",
                  f"  - search: {_search_words(p)}"] + _interval_bullets(p)
    fitted = {arm: e.get("parametric") for arm, e in fits["arms"].items()}
    if any(f and "error" not in f for f in fitted.values()):
        refs = {f"{r.label} (published)": r.as_fit() for r in REFERENCE_LAWS.values()}
        lines += ["", "Coefficients (95% bootstrap intervals where computed) beside the published laws "
                  "(each in its own loss units):", "", markdown_table({**fitted, **refs})]
    return lines + [""]


def _interval_bullets(p: ParametricFit) -> list[str]:
    """95% intervals of E, A, B, α, β and a: Laplace (sandwich covariance, no refits) beside the bootstrap."""
    names = (("E", "E"), ("A", "A"), ("B", "B"), ("alpha", "α"), ("beta", "β"), ("a", "a"))
    out = []
    if p.laplace.get("note"):
        out.append(f"  - 95% intervals, Laplace: undefined ({p.laplace['note']})")
    for kind, ci in (("Laplace (sandwich covariance)", {} if p.laplace.get("note") else p.ci_laplace), ("bootstrap", p.ci)):
        if ci:
            out.append(f"  - 95% intervals, {kind}: " + ", ".join(
                f"{sym} [{_g(ci[k][0], 3)}, {_g(ci[k][1], 3)}]" for k, sym in names if k in ci))
    return out


def _rollout_lines(fits: dict) -> list[str]:
    rows = [(arm, entry.get("rollout")) for arm, entry in fits["arms"].items()]
    if not any(isinstance(r, dict) for _, r in rows):
        return []
    lines = ["", "Rollout (OLMo-core's ladder check): the law fitted without the largest model size, scored on that "
             "size's points (bias > 0: the law over-predicts the larger model's loss).", "",
             "| arm | held-out N | sizes fitted (largest) | points (train / test) | mean abs. rel. error | bias | worst |",
             "|---|---|---|---|---|---|---|"]
    for arm, r in rows:
        x = _get(r, RolloutCheck)
        if x is None:
            lines.append(f"| {arm} | – | – | – | – | – | {(r or {}).get('error', 'not run')} |")
            continue
        lines.append(f"| {arm} | {x.held_out_params:.3g} | {x.n_sizes_train} ({x.next_smaller_params:.3g}) | "
                     f"{x.n_train} / {x.n_test} | {100 * x.mean_abs_rel_error:.2f}% | "
                     f"{100 * x.mean_signed_rel_error:+.2f}% | {100 * x.max_abs_rel_error:.2f}% |")
    return lines


def _extrapolation_section(fits: dict) -> list[str]:
    lines = ["## Extrapolation check (fit without the largest budget, predict it)", "",
             "| arm | held-out C | points (train / test) | mean abs. error | mean rel. error | best point: observed / predicted |",
             "|---|---|---|---|---|---|"]
    for arm, entry in fits["arms"].items():
        x = _get(entry.get("extrapolation"), ExtrapolationCheck)
        if x is None:
            err = (entry.get("extrapolation") or {}).get("error", "not run")
            lines.append(f"| {arm} | – | – | – | – | {err} |")
            continue
        lines.append(f"| {arm} | {x.held_out_budget:.3g} | {x.n_train} / {x.n_test} | {x.mean_abs_error:.4f} | "
                     f"{100 * x.mean_rel_error:.2f}% | {x.best_observed:.4f} / {x.best_predicted:.4f} |")
    return lines + _rollout_lines(fits) + [""]


def _isoflop_section(fits: dict) -> list[str]:
    lines = ["## IsoFLOP minima (Chinchilla approach 2)", ""]
    for arm, entry in fits["arms"].items():
        iso = _get(entry.get("isoflop"), IsoflopFit)
        if iso is None:
            lines += [f"**{arm}**: not fitted: {entry.get('isoflop', {}).get('error', entry.get('error'))}", ""]
            continue
        lines += [f"**{arm}**: N_opt = {iso.k_n:.4g} C^{iso.a:.4f} (R² {iso.r2_n:.3f}), "
                  f"D_opt = {iso.k_d:.4g} C^{iso.b:.4f} ({iso.method})", ""]
        lines += [f"- **Warning**: {w}" for w in iso.warnings] + ([""] if iso.warnings else [])
        lines += [
                  "| budget C | N_opt | D_opt | L_min | sizes | note |", "|---|---|---|---|---|---|"]
        rows = []  # one row per budget, in budget order, fitted or skipped
        for m in iso.minima:
            note = (("minimum outside sampled N, left out of the N_opt fit" if m.excluded else "minimum outside sampled N")
                    if m.extrapolated else "")
            rows.append((m.budget, f"| {m.budget:.3g} | {m.n_opt:.3g} | {m.d_opt:.3g} | {m.loss_min:.4f} | {m.n_sizes} | {note} |"))
        for b, why in iso.skipped.items():
            rows.append((float(b), f"| {float(b):.3g} | – | – | – | – | skipped: {why} |"))
        lines += [row for _, row in sorted(rows, key=lambda r: r[0])] + [""]
    return lines


def _with_ci(v, ci) -> str:
    return "–" if v is None else (_g(v) + (f" [{_g(ci[0], 3)}, {_g(ci[1], 3)}]" if ci else ""))


def _exponents_section(fits: dict) -> list[str]:
    lines = ["## Compute-optimal exponents (95% bootstrap intervals in brackets)", "",
             "| arm | a (parametric) | b (parametric) | a (isoFLOP: parabola, or interp when curved) | a (isoFLOP power-sum) | a (approach 1) |",
             "|---|---|---|---|---|---|"]
    from .fits.curve_envelope import CurveEnvelopeFit

    for arm, entry in fits["arms"].items():
        p = _get(entry.get("parametric"), ParametricFit)
        iso = _get(entry.get("isoflop"), IsoflopFit)
        ps = _get(entry.get("isoflop_powersum"), IsoflopFit)
        ce = _get(entry.get("curve_envelope"), CurveEnvelopeFit)
        warn = " ⚠" if p is not None and p.ill_conditioned else ""
        lines.append(f"| {arm} | {_with_ci(p.a if p else None, p.ci.get('a') if p else None)}{warn} | "
                     f"{_with_ci(p.b if p else None, p.ci.get('b') if p else None)}{warn} | "
                     f"{_with_ci(iso.a if iso else None, iso.ci.get('a') if iso else None)} | "
                     f"{_with_ci(ps.a if ps else None, ps.ci.get('a') if ps else None)} | {_g(ce.a) if ce else '–'} |")
    return lines + [""]


def _envelope_section(fits: dict) -> list[str]:
    arms = list(fits["arms"])
    lines = ["## Envelope exponents (best run per budget, Q = k C^γ)", "",
             "| quantity | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
    row = []
    for arm in arms:
        e = _get(fits["arms"][arm].get("loss_envelope"), EnvelopeFit)
        row.append(f"{e.gamma:.4f}" if e else "–")
    lines.append(f"| {fits.get('loss_col', 'loss')} | " + " | ".join(row) + " |")
    for m in fits.get("metrics", []):
        row = []
        for arm in arms:
            e = _get(fits["arms"][arm].get("metric_envelopes", {}).get(m), EnvelopeFit)
            row.append(f"{e.gamma:.4f}" if e else "–")
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    return lines + [""]


def findings(df: pd.DataFrame, fits: dict) -> list[str]:
    """Sentences computed from the table and the fits."""
    loss_col = fits.get("loss_col", "val_loss_speech")
    arms = list(fits["arms"])
    out = []
    best = {}
    for arm in arms:
        rows = arm_rows(df, arm)
        if loss_col not in rows.columns:
            continue
        rows = rows[np.isfinite(rows[loss_col].to_numpy(dtype=float))]
        if rows.empty:
            continue
        C = budget_of(rows)
        best[arm] = (rows, C)
    if len(best) >= 2:
        common = set.intersection(*(set(C[np.isfinite(C)]) for _, C in best.values()))
        if common:
            cmax = max(common)
            lows = {arm: float(rows[loss_col][C == cmax].min()) for arm, (rows, C) in best.items()}
            order = sorted(lows, key=lows.get)
            out.append(f"At the largest budget all arms share (C = {cmax:.3g}), **{order[0]}** reaches the lowest "
                       f"{loss_col} ({lows[order[0]]:.4f}) vs " +
                       ", ".join(f"{a} {lows[a]:.4f}" for a in order[1:]) + ".")
        else:
            out.append("The arms share no compute budget, so their losses are compared through the fitted laws only.")
    elif len(best) == 1:
        arm, (rows, C) = next(iter(best.items()))
        cmax = np.nanmax(C)
        out.append(f"At the largest budget (C = {cmax:.3g}) the best {loss_col} of {arm} is "
                   f"{float(rows[loss_col][C == cmax].min()):.4f}.")
    pars = {a: _get(fits["arms"][a].get("parametric"), ParametricFit) for a in arms}
    pars = {a: p for a, p in pars.items() if p is not None}
    for arm, p in pars.items():
        if p.ill_conditioned:
            out.append(f"Caution ({arm}): the parametric fit is ill-conditioned ({'; '.join(p.diagnostics())}); "
                       "its exponents are not evidence of anything.")
            continue
        where = "model size" if p.a > p.b else "training tokens"
        out.append(f"For {arm}, the parametric fit gives N_opt ∝ C^{p.a:.3f} and D_opt ∝ C^{p.b:.3f}: extra compute "
                   f"should go mostly to {where}.")
    if len(pars) >= 2:
        cmax = max(float(np.nanmax(C)) for _, C in best.values()) if best else None
        if cmax:
            preds = {a: float(p.loss_opt(cmax)) for a, p in pars.items()}
            none = sorted(a for a, v in preds.items() if not np.isfinite(v))
            preds = {a: v for a, v in preds.items() if np.isfinite(v)}
            order = sorted(preds, key=preds.get)
            if none:
                out.append(f"The parametric law of {', '.join(none)} has no compute-optimal point (non-positive exponents); "
                           "it is left out of the comparison below.")
        if cmax and len(preds) >= 2:
            flagged = [a for a in order if pars[a].ill_conditioned]
            caveat = (f" The law{'s' if len(flagged) > 1 else ''} of {', '.join(flagged)} "
                      f"{'are' if len(flagged) > 1 else 'is'} flagged above, so this is not evidence either way."
                      if flagged else "")
            out.append(f"At C = {cmax:.3g} the compute-optimal loss predicted by the parametric laws is lowest for "
                       f"**{order[0]}** ({preds[order[0]]:.4f}; " + ", ".join(f"{a} {preds[a]:.4f}" for a in order[1:]) + ")."
                       + caveat)
    for m in fits.get("metrics", []):
        envs = {a: _get(fits["arms"][a].get("metric_envelopes", {}).get(m), EnvelopeFit) for a in arms}
        envs = {a: e for a, e in envs.items() if e is not None}
        if len(envs) >= 2:
            order = sorted(envs, key=lambda a: envs[a].gamma, reverse=True)
            gammas = "; ".join(f"{a} γ = {envs[a].gamma:.4f}" for a in order)
            if abs(envs[order[0]].gamma - envs[order[1]].gamma) < 5e-5:  # equal at the printed precision
                out.append(f"{m}: the envelopes of {order[0]} and {order[1]} grow equally fast with compute ({gammas}).")
            else:
                out.append(f"{m}: the envelope grows fastest with compute for **{order[0]}** ({gammas}).")
    for arm, entry in fits["arms"].items():
        iso = _get(entry.get("isoflop"), IsoflopFit)
        if iso is not None:
            ext = [m.budget for m in iso.minima if m.extrapolated]
            if ext:
                out.append(f"Caution ({arm}): the isoFLOP minimum falls outside the sampled model sizes at budget(s) "
                           + ", ".join(f"{b:.3g}" for b in ext) + "; widen the grid there.")
    return out


def write_report(df: pd.DataFrame, fits: dict, figure_paths, out_path, *, link_from=None) -> Path:
    """Write ``report.md`` (atomically) with run counts, fitted laws, exponents, figures and findings.

    Figure links are relative to ``link_from`` (default ``out_path``): the place the report will live."""
    out_path = Path(out_path)
    link_base = Path(link_from) if link_from is not None else out_path
    loss_col = fits.get("loss_col", "val_loss_speech")
    lines = ["# Scaling-law report", "",
             f"Source: `{df.attrs.get('source', 'in-memory table')}`; loss column `{loss_col}`.", ""]
    lines += _runs_section(df, loss_col)
    lines += _notes_section(fits)
    pngs = [Path(p) for p in figure_paths if Path(p).suffix == ".png"]
    links = {p.stem: Path(os.path.relpath(p.resolve(), link_base.parent.resolve())).as_posix() for p in pngs}

    def see(*stems) -> list[str]:
        """A line linking the figures of the section above (those drawn)."""
        got = [f"[{s}]({links[s]})" for s in stems if s in links]
        return [f"Figure{'s' if len(got) > 1 else ''}: " + ", ".join(got) + ".", ""] if got else []

    metrics = [m for m in fits.get("metrics", []) if f"isoflop_{m}" in links]
    lines += ["## Findings", ""] + [f"- {s}" for s in findings(df, fits)] + [""]
    lines += see("loss_vs_compute", "metrics_vs_compute")
    cmp = compare_section(fits)
    lines += cmp + (see("arms_compared", "loss_vs_compute", *[f"isoflop_{m}" for m in metrics]) if cmp else [])
    lines += _laws_section(fits) + see("parametric_contours", "loss_vs_compute")
    lines += _exponents_section(fits) + see("compute_optimal", "metric_compute_optimal")
    lines += _extrapolation_section(fits)
    lines += _isoflop_section(fits) + see("isoflop")
    lines += _envelope_section(fits) + see("metrics_vs_compute", *[f"isoflop_{m}" for m in metrics])
    if pngs:
        lines += ["## Figures", ""]
        for p in pngs:
            rel = os.path.relpath(p.resolve(), link_base.parent.resolve())
            pdf = Path(rel).with_suffix(".pdf")
            lines += [f"### {p.stem}", "", f"![{p.stem}]({Path(rel).as_posix()})", "",
                      f"(vector version: [{pdf.as_posix()}]({pdf.as_posix()}))", ""]
    return write_text(out_path, "\n".join(lines) + "\n")
