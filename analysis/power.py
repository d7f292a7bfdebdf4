"""Will a grid pin down its law? A power analysis of the parametric fit before anything trains.

A grid's (N, D) points decide how well L(N, D) = E + A/N^alpha + B/D^beta can be identified: with a
short span of sizes and budgets the irreducible loss E trades off against A/N^alpha, and the
exponents' intervals stay wide however carefully each run is trained. This module draws
``replicates`` synthetic studies at a grid's planned points from an assumed law (a pilot study's
fit, or given constants), with log-normal noise of the size a pilot measured, fits each exactly as
``scaling fit`` does (Huber fit, percentile pairs bootstrap) and reports what the study would see:
the width of each exponent's 95% interval, how often the fit would be flagged ill-conditioned
(:meth:`analysis.fits.parametric.ParametricFit.diagnostics`), how often the intervals cover the
assumed truth, and the error of the law fitted without the largest budget on that budget.

Used by ``scaling power PLAN_JSON --law FITS_OR_LAW`` (the plan from ``scaling plan SWEEP --json``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from scaling.errors import ConfigError
from scaling.textio import read_text

from .fits.synthetic import Law
from .noise import NoiseModel, draw

EXPONENTS = ("alpha", "beta", "a")
LAW_KEYS = ("E", "A", "B", "alpha", "beta")


def parse_law(text: str, *, field: str = "--law") -> Law:
    """``E=1.69,A=406.4,B=410.7,alpha=0.34,beta=0.28`` (all five, positive; E may be 0)."""
    vals = {}
    for part in text.split(","):
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep or key not in LAW_KEYS:
            raise ConfigError(f"expected {','.join(k + '=...' for k in LAW_KEYS)}", field=field, value=text)
        try:
            vals[key] = float(val)
        except ValueError:
            raise ConfigError(f"'{key}' is not a number", field=field, value=text) from None
    missing = [k for k in LAW_KEYS if k not in vals]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}", field=field, value=text)
    return _checked(vals, source=None, field=field)


def laws_from_fits(path: str | Path) -> dict[str, tuple[Law, NoiseModel | None]]:
    """Each arm's parametric law in a fits.json (``scaling fit --json`` or ``scaling report``), with its
    noise model: the run-level one where the file records it (``extra.noise``, :mod:`analysis.noise`),
    else iid noise of the rms of its log residuals (``extra.log_residual_rms``), else None."""
    p = Path(path)
    try:
        doc = json.loads(read_text(p, field="--law"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"cannot read a fits.json: {exc}", source=str(p)) from None
    arms = doc.get("arms") if isinstance(doc, dict) else None
    if not isinstance(arms, dict) or not arms:
        raise ConfigError("has no 'arms' (expected the fits.json of scaling fit --json or scaling report)", source=str(p),
                          field="arms")
    out = {}
    for arm, entry in arms.items():
        par = entry.get("parametric") if isinstance(entry, dict) else None
        if not isinstance(par, dict) or "error" in par or any(k not in par for k in LAW_KEYS):
            continue
        law = _checked({k: par[k] for k in LAW_KEYS}, source=str(p), field=f"arms.{arm}.parametric")
        out[arm] = (law, _noise_of(par, source=str(p), field=f"arms.{arm}.parametric.extra.noise"))
    if not out:
        raise ConfigError("has no arm with a parametric law", source=str(p), field="arms")
    return out


def _checked(vals: dict, *, source, field) -> Law:
    for k in LAW_KEYS:
        v = vals[k]
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (v == 0 and k != "E"):
            raise ConfigError(f"'{k}' must be a finite number > 0 (E >= 0)", source=source, field=field, value=v)
    return Law(**{k: float(vals[k]) for k in LAW_KEYS})


def _noise_of(par: dict, *, source, field) -> NoiseModel | None:
    extra = par.get("extra") or {}
    if isinstance(extra.get("noise"), dict) and "error" not in extra["noise"]:
        return NoiseModel.from_dict(extra["noise"], source=source, field=field)
    v = extra.get("log_residual_rms")
    return NoiseModel(point_sd=float(v)) if isinstance(v, (int, float)) and math.isfinite(v) and v > 0 else None


def load_plan_points(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`plan_points` of a plan JSON (``scaling plan SWEEP --json PATH``), checked entry by entry."""
    p = Path(path)
    try:
        rows = json.loads(read_text(p, field="plan"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"cannot read a plan JSON: {exc}", source=str(p)) from None
    if not isinstance(rows, list) or not rows:
        raise ConfigError("is not a plan (a non-empty JSON list of runs, as scaling plan --json writes)", source=str(p))
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise ConfigError("is not a run", source=str(p), field=f"[{i}]", value=r)
        for key in ("arm", "params", "tokens"):
            if key not in r:
                raise ConfigError("is missing", source=str(p), field=f"[{i}].{key}")
        for key in ("params", "tokens"):
            v = r[key]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise ConfigError("must be a positive number", source=str(p), field=f"[{i}].{key}", value=v)
        cds = r.get("cooldowns") or []
        if not isinstance(cds, list) or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0
                                                for c in cds):
            raise ConfigError("must be a list of positive token counts", source=str(p), field=f"[{i}].cooldowns", value=cds)
    points = plan_points(rows)
    if not points:
        raise ConfigError("has no speech runs (text pre-training runs are not points)", source=str(p))
    return points


def plan_points(rows: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(params, tokens, budget, run) of every point of a plan (``sweeps.plan.plan_rows``) per arm: each
    run's end and its cooldown branches, ``run`` the index of the run a point belongs to (a run's end and
    its branches share the run's deviation: :mod:`analysis.noise`); text pre-training runs are not points."""
    out: dict[str, list] = {}
    for i, r in enumerate(rows):
        if r["arm"] == "textlm":
            continue
        ends = [(t, None) for t in r.get("cooldowns") or []] + [(r["tokens"], r.get("budget"))]
        for tokens, budget in ends:
            out.setdefault(r["arm"], []).append((r["params"], tokens, budget or 6.0 * r["params"] * tokens, i))
    return {arm: tuple(np.asarray(c, dtype=float) for c in zip(*pts)) for arm, pts in out.items()}


def as_noise(noise) -> NoiseModel:
    """A :class:`NoiseModel`; a number is the old iid noise (every point its own deviation)."""
    if isinstance(noise, NoiseModel):
        return noise
    if not isinstance(noise, (int, float)) or not noise > 0:
        raise ConfigError("must be > 0", field="--noise", value=noise)
    return NoiseModel(point_sd=float(noise))


def simulate(N, D, law: Law, *, noise, runs=None, replicates: int = 20, resamples: int = 200, seed: int = 0,
             budgets=None, huber_delta: float = 1e-3) -> dict:
    """``replicates`` studies at the points (N, D) drawn from ``law`` with log-normal ``noise`` (a
    :class:`analysis.noise.NoiseModel`: an offset and a slope shared by the points of one run, ``runs``
    naming each point's run, plus each point's own; a number is iid noise of that sd), each fitted and
    bootstrapped as ``scaling fit --bootstrap`` does. ``budgets`` (one per point; default 6ND) group
    the points for the held-out check (fit without the largest budget, error on it). Besides the
    median bootstrap widths (what the fit's verdict reads), ``spread`` is the width of the central 95%
    of the estimates across the studies (the true sampling spread, as 2 x 1.96 sd)."""
    from .fits.bootstrap import bootstrap_parametric
    from .fits.parametric import fit_parametric

    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    if N.size < 6:
        raise ConfigError(f"{N.size} points: a 5-parameter law needs more", field="points", value=int(N.size))
    noise = as_noise(noise)
    runs = np.arange(N.size) if runs is None else np.asarray(runs)
    C = np.asarray(budgets, dtype=float) if budgets is not None else 6.0 * N * D
    top = np.isclose(C, C.max(), rtol=1e-6)
    rng = np.random.default_rng(seed)
    truth = law.truth()
    widths = {k: [] for k in EXPONENTS}
    ratio = {k: [] for k in EXPONENTS}
    estimates = {k: [] for k in EXPONENTS}
    covered = {k: 0 for k in EXPONENTS}
    flagged, reasons, held = 0, {}, []
    for r in range(replicates):
        L = law.loss(N, D) * np.exp(draw(noise, runs, D, rng))
        try:
            fit = bootstrap_parametric(fit_parametric(N, D, L, huber_delta=huber_delta), N, D, L, n_resamples=resamples,
                                       seed=seed + r)
        except ConfigError:  # the fit diverged or degenerated: `scaling fit` would have refused this study
            flagged += 1
            reasons["no fit (diverged or degenerate)"] = reasons.get("no fit (diverged or degenerate)", 0) + 1
            continue
        for k in EXPONENTS:
            estimates[k].append(getattr(fit, k))
            lo, hi = fit.ci.get(k, (math.nan, math.nan))
            if math.isfinite(lo) and math.isfinite(hi):
                widths[k].append(hi - lo)
                ratio[k].append((hi - lo) / max(0.5 * abs(getattr(fit, k)), 0.1))  # > 1: the diagnostic's "wide"
                covered[k] += bool(lo <= truth[k] <= hi)
        diags = fit.diagnostics()
        flagged += bool(diags)
        for d in diags:
            key = _reason(d)
            reasons[key] = reasons.get(key, 0) + 1
        if (~top).sum() >= 6 and len(np.unique(C[~top])) >= 2:
            try:
                sub = fit_parametric(N[~top], D[~top], L[~top], huber_delta=huber_delta)
            except ConfigError:
                continue
            held.append(float(np.mean(np.abs(sub.predict(N[top], D[top]) - L[top]) / L[top])))
    return {
        "law": {k: getattr(law, k) for k in LAW_KEYS}, "a_true": law.a, "noise": noise.to_dict(),
        "replicates": int(replicates), "resamples": int(resamples), "n_points": int(N.size),
        "n_runs": int(np.unique(runs).size),
        "n_span": float(N.max() / N.min()), "c_span": float(C.max() / C.min()),
        "width": {k: float(np.median(v)) if v else math.nan for k, v in widths.items()},
        "width_ratio": {k: float(np.median(v)) if v else math.nan for k, v in ratio.items()},
        "spread": {k: 2 * 1.959964 * float(np.std(v, ddof=1)) if len(v) >= 2 else math.nan
                   for k, v in estimates.items()},
        "coverage": {k: covered[k] / replicates for k in EXPONENTS},
        "flagged": flagged / replicates, "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "held_out_error": float(np.median(held)) if held else None,
    }


def _reason(diagnostic: str) -> str:
    """A diagnostic without its numbers, so that the studies' reasons can be counted."""
    import re

    if "interval of" in diagnostic:
        return "wide interval of " + diagnostic.split("interval of ")[1].split(" ")[0]
    if "pinned near 0" in diagnostic:
        return "E pinned near 0"
    if "did not converge" in diagnostic:
        return "bootstrap resamples did not converge"
    return re.sub(r"-?[0-9][0-9.e+-]*", "#", diagnostic.split(":")[0])


def format_power(arm: str, res: dict) -> str:
    law = res["law"]
    lines = [f"power of the parametric fit, arm '{arm}': {res['replicates']} simulated studies of its "
             f"{res['n_points']} points from {res['n_runs']} runs (N span {res['n_span']:.3g}x, compute span {res['c_span']:.3g}x), "
             f"L = {law['E']:.4g} + {law['A']:.4g}/N^{law['alpha']:.3g} + {law['B']:.4g}/D^{law['beta']:.3g}, "
             f"log-loss noise {format_noise(res['noise'])}, {res['resamples']} bootstrap resamples each",
             "  exponent   true      median 95% width   width / 'wide' limit   coverage   spread of estimates"]
    true = {"alpha": law["alpha"], "beta": law["beta"], "a": res["a_true"]}
    for k in EXPONENTS:
        cov = f"{100 * res['coverage'][k]:.0f}%"
        lines.append(f"  {k:<9}  {true[k]:<8.3g}  {res['width'][k]:<17.3g}  {res['width_ratio'][k]:<21.2f}  "
                     f"{cov:<9}  {res['spread'][k]:.3g}")
    verdict = ("well conditioned" if res["flagged"] <= 0.1 else
               "ill-conditioned in most studies" if res["flagged"] > 0.5 else "often ill-conditioned")
    lines.append(f"  flagged ill-conditioned (CAUTION) in {100 * res['flagged']:.0f}% of the studies: {verdict}"
                 + (f"; most often: {', '.join(list(res['reasons'])[:3])}" if res["reasons"] else ""))
    if res["held_out_error"] is not None:
        lines.append(f"  largest budget held out: median mean error {100 * res['held_out_error']:.2f}%")
    return "\n".join(lines)


def format_noise(noise: dict) -> str:
    """``run 0.6%, slope 1%/e, point 0.3%`` of a noise model dict (only its non-zero parts)."""
    parts = [f"{name} {100 * noise[k]:.2g}%" + ("/e-fold of D" if k == "slope_sd" else "")
             for k, name in (("run_sd", "per run"), ("slope_sd", "run slope"), ("point_sd", "per point"))
             if noise.get(k)]
    return ", ".join(parts) or "none"


def resolve_noise(measured: NoiseModel | None, args) -> tuple[NoiseModel, str]:
    """The noise a command assumes, and where it came from: ``--noise`` (iid, the old model), else the
    pilot's noise model with any of ``--run-sd`` / ``--slope-sd`` / ``--point-sd`` replacing its part."""
    parts = {k: getattr(args, k, None) for k in ("run_sd", "slope_sd", "point_sd")}
    given = {k: v for k, v in parts.items() if v is not None}
    if getattr(args, "noise", None) is not None:
        if given:
            raise ConfigError("gives iid noise: leave out --run-sd/--slope-sd/--point-sd, or use them instead",
                              field="--noise", value=args.noise)
        return NoiseModel(point_sd=float(args.noise)), "--noise, iid over points"
    if measured is None and not given:
        raise ConfigError("is needed (or --run-sd/--point-sd): the law given records no scatter to assume (a "
                          "fits.json written by this version records its noise model)", field="--noise")
    base = measured.to_dict() if measured is not None else {"run_sd": 0.0, "slope_sd": 0.0, "point_sd": 0.0}
    try:
        noise = NoiseModel(**{**{k: base[k] for k in parts}, **given})
    except ConfigError as e:
        raise ConfigError(e.reason, field="--point-sd", value=e.value) from None
    if measured is None:
        return noise, "--run-sd/--slope-sd/--point-sd"
    src = "the pilot fits.json's run-level noise model" if measured.n_runs else "the pilot fit's log-residual rms, iid"
    return noise, src + (" with " + ", ".join(f"--{k.replace('_', '-')}" for k in given) if given else "")
