"""argparse hooks for ``scaling fit``, ``scaling figures`` and ``scaling report``.

Only argparse is imported at module level so that ``scaling --help`` stays fast; scipy and
matplotlib are imported inside the ``run_*`` functions, and pandas only by figures and report:
``scaling fit`` works on numpy columns (analysis.table.Table) to finish in under a second. Bad input raises
:class:`scaling.errors.ConfigError`, which the ``scaling`` entry point turns into a clean exit.
"""
from __future__ import annotations

import argparse
import sys

LAWS = ("parametric", "isoflop", "envelope", "all")


def _bounded_number(text: str, low: float, strict: bool) -> float:
    """``text`` as a finite float above ``low`` (``strict``) or at least ``low``; else argparse's error."""
    op = ">" if strict else ">="
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number {op} {low:g} (got {text!r})") from None
    if not ((v > low if strict else v >= low) and v != float("inf")):  # nan fails both comparisons
        raise argparse.ArgumentTypeError(f"must be a finite number {op} {low:g} (got {text!r})")
    return v


def positive_number(text: str) -> float:
    """argparse type of a scale such as --huber-delta: a finite number > 0 (0, a negative, nan and inf are
    refused while parsing, exit 2, before any work)."""
    return _bounded_number(text, 0.0, strict=True)


def non_negative_number(text: str) -> float:
    """argparse type of a noise sd such as --run-sd: a finite number >= 0."""
    return _bounded_number(text, 0.0, strict=False)


def penalty_factor(text: str) -> float:
    """argparse type of --overestimate-penalty: a finite number >= 1 (1 is the symmetric fit)."""
    return _bounded_number(text, 1.0, strict=False)


def resamples(text: str) -> int:
    """argparse type of --bootstrap: 0 (off) or at least 2 resamples (one cannot make an interval)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
    if v < 0 or v == 1:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or at least 2 resamples (got {text!r})")
    return v


def seed(text: str) -> int:
    """argparse type of --seed: a whole number >= 0 (numpy's generators take no negative seed)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (got {text!r})")
    return v


def add_fit_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = (
        "Fit scaling laws to a results table. RESULTS is a CSV, a directory holding results.csv, "
        "or a directory holding runs/*/result.json. Only runs with status 'done' are used and "
        "'textlm' runs are never part of speech fits. A bare CSV without an 'arm' column is one arm "
        "named 'all'. --law all (default) writes the full fits.json structure (every arm, every law); "
        "a single law writes that fit's dict when one arm is fitted, else a dict keyed by arm.")
    parser.add_argument("results", metavar="CSV_OR_RESULTS_DIR", help="results.csv, its directory, or a directory with runs/*/result.json")
    parser.add_argument("--law", choices=LAWS, default="all", help="which law to fit (default: all)")
    parser.add_argument("--loss-col", default=None,
                        help="loss column (default: val_loss_speech if present, else loss)")
    parser.add_argument("--metric", default=None,
                        help="column for --law envelope (default: the loss column); the best run per budget is the max for "
                             "the registry's benchmarks (scaling.datadir.BENCHMARKS) and the min for losses and perplexities. "
                             "Only with --law envelope (--law all fits every benchmark column's envelope)")
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument("--higher-is-better", dest="higher_is_better", action="store_const", const=True, default=None,
                           help="--metric is better when higher (needed for a column the registry does not know)")
    direction.add_argument("--lower-is-better", dest="higher_is_better", action="store_const", const=False,
                           help="--metric is better when lower")
    parser.add_argument("--huber-delta", type=positive_number, default=1e-3,
                        help="Huber delta on log-loss residuals, > 0 (default 1e-3)")
    parser.add_argument("--reduce", choices=("sum", "mean"), default="sum",
                        help="sum the Huber loss over points (default) or average it (Hoffmann's negative control)")
    parser.add_argument("--arm", default=None, help="fit only this arm (e.g. interleaved, textless)")
    parser.add_argument("--bootstrap", type=resamples, default=0, metavar="N",
                        help="bootstrap resamples over points (e.g. 4000); adds 'ci' (95%% intervals of E, A, B, alpha, "
                             "beta, a, b, G, n_opt, d_opt, loss_opt for parametric; a, b for isoflop). Default 0: off")
    parser.add_argument("--seed", type=seed, default=0, help="bootstrap seed (default 0)")
    _add_common(parser)
    parser.add_argument("--isoflop-method", choices=("auto", "parabola", "window", "interp", "powersum"), default="auto",
                        help="isoFLOP minimum per budget (--law isoflop): auto (default: the parabola unless its curvature "
                             "check flags >= 2 budgets, then interp), Hoffmann's parabola in log N over all sizes, the "
                             "parabola over a window around each budget's lowest loss, Porian et al.'s interpolation "
                             "(Akima spline minimum, seed-noise bootstrap), or the joint power-sum fit")
    parser.add_argument("--isoflop-window", type=positive_number, default=2.0, metavar="K",
                        help="--isoflop-method window: sizes within a factor K (> 1) in N of each budget's lowest-loss "
                             "size (default 2)")
    parser.add_argument("--isoflop-min-sizes", type=int, default=3, metavar="M",
                        help="--isoflop-method window: at least M (>= 3) sizes per window, the nearest in log N added "
                             "(default 3)")
    parser.add_argument("--isoflop-noise", type=positive_number, default=None, metavar="SD",
                        help="--isoflop-method interp/auto: seed-to-seed sd of the loss (loss units) for the noise draws "
                             "(default: estimated from the windowed parabolas' residuals)")
    parser.add_argument("--bounded", action="store_true",
                        help="parametric fit inside a box (exponents <= 2.5, E >= 0.05): a guard for ill-conditioned "
                             "small sweeps, off by default; the published fits are unbounded")
    parser.add_argument("--json", dest="json_out", default=None, metavar="OUT",
                        help="write the fit(s) as JSON here (with --law all it also holds the extrapolation check, "
                             "which is run only then: the table does not show it)")
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    """Options shared by fit, figures and report."""
    parser.add_argument("--bootstrap-method", choices=("pairs", "residual", "parametric"), default="pairs",
                        help="parametric-law bootstrap: resample runs (pairs, default, as Epoch), resample the fit's log "
                             "residuals on the same design (residual), or draw Gaussian ones (parametric)")
    parser.add_argument("--keep-extrapolated", action="store_true",
                        help="keep isoFLOP minima outside their budget's sampled sizes in the N_opt fit (default: flagged "
                             "and excluded)")
    parser.add_argument("--drop-top", type=int, default=0, metavar="K",
                        help="drop the K highest-loss runs of each arm first (Epoch's convention on Chinchilla's data: 5)")
    parser.add_argument("--overestimate-penalty", type=penalty_factor, default=1.0, metavar="K",
                        help="parametric fit: a point the law over-predicts (predicted > observed loss) costs K times "
                             "more, K >= 1 (default 1: symmetric). For ladders whose smallest rungs are under-tuned "
                             "(their losses lie above the law): the law follows the better-tuned points (OLMo-core)")


def _prepare(args):
    """Load the table (an analysis.table.Table), drop the top losses if asked; returns (table, loss_col)."""
    from scaling.errors import ConfigError

    from .load import load_table
    from .study import drop_top

    df = load_table(args.results)
    loss_col = _default_loss_col(df, args.loss_col)
    if loss_col not in df.columns:
        raise ConfigError("loss column not in the results table", source=df.attrs.get("source"), field=loss_col)
    k = getattr(args, "drop_top", 0) or 0
    if k < 0:
        raise ConfigError("--drop-top must be >= 0", field="drop_top", value=k)
    return drop_top(df, loss_col, k), loss_col


def _print_notes(fits: dict) -> None:
    for note in fits.get("notes", []):
        print(f"NOTE: {note}")
    for arm, e in fits.get("arms", {}).items():
        d = e.get("dropped")
        if d:
            print(f"NOTE ({arm}): {d['count']} run(s) left out of the loss fits ({d['reason']}): {', '.join(d['runs'][:10])}"
                  + (" ..." if d["count"] > 10 else ""))


def _is_number(v) -> bool:
    if v is None:  # a missing value: NaN
        return True
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _default_loss_col(df, requested):
    if requested:
        return requested
    for c in ("val_loss_speech", "loss"):
        if c in df.columns:
            return c
    from scaling.errors import ConfigError

    raise ConfigError("no loss column: pass --loss-col", source=df.attrs.get("source"), field="loss")


def _selected_arms(df, arm):
    from scaling.errors import ConfigError

    from .study import arms_of

    arms = arms_of(df)
    if arm is None:
        return arms
    if arm not in arms:
        raise ConfigError(f"arm not in the table (arms: {', '.join(arms)})", source=df.attrs.get("source"),
                          field="arm", value=arm)
    return [arm]


def _points_fitted(e: dict) -> int:
    """The points the arm's laws were fitted to, as fits.json records them: the parametric fit's
    ``n_points`` when it was fitted, else ``n_runs_with_loss`` (the points with a usable loss, which every
    loss fit uses); a point left out for its loss (``dropped``) is in the arm's ``n_points`` but not here."""
    p = e.get("parametric")
    if isinstance(p, dict) and "n_points" in p:
        return int(p["n_points"])
    return int(e.get("n_runs_with_loss", e.get("n_points", e.get("n_runs", 0))))


def _check_envelope_options(args, table) -> None:
    """--metric must name a column of the table, and it and the direction flags apply to --law envelope only
    (they were ignored, silently, by the other laws)."""
    from scaling.errors import ConfigError

    source = table.attrs.get("source")
    if args.metric is not None and args.metric not in table.columns:
        cols = [c for c in table.columns if c not in ("point_id", "kind")]  # the loader adds these two
        raise ConfigError(f"column not in the results table (columns: {', '.join(cols)})", source=source,
                          field="--metric", value=args.metric)
    if args.law != "envelope":
        flag = "--metric" if args.metric is not None else (
            None if args.higher_is_better is None else "--higher-is-better" if args.higher_is_better else "--lower-is-better")
        if flag:
            raise ConfigError(f"applies to --law envelope only: --law {args.law} would ignore it"
                              + (" (--law all fits every benchmark column's envelope already; add --law envelope to fit "
                                 "this one)" if args.law == "all" else ""), field=flag,
                              value=args.metric if flag == "--metric" else None)


def _interval_lines(arm: str, p: dict) -> list[str]:
    """The 95% intervals of alpha, beta and a: Laplace (always computed) beside the bootstrap (when run)."""
    lap, boot = p.get("ci_laplace") or {}, p.get("ci") or {}
    if not (lap or boot) or "error" in p:
        return []

    def iv(ci, name):
        return f"[{ci[name][0]:.3f}, {ci[name][1]:.3f}]" if name in ci else "–"

    kinds = ([("Laplace", lap)] if lap else []) + ([("bootstrap", boot)] if boot else [])
    note = (p.get("laplace") or {}).get("note")
    return [f"{arm} 95% intervals ({kind}): " + (f"undefined: {note}" if kind == "Laplace" and note else
                                                 "  ".join(f"{n} {iv(ci, n)}" for n in ("alpha", "beta", "a")))
            for kind, ci in kinds]


def _held_out_lines(arm: str, e: dict) -> list[str]:
    """The held-out checks, when run (with --json, and in scaling report): largest budget, largest size."""
    out = []
    x = e.get("extrapolation")
    if isinstance(x, dict) and "error" not in x:
        out.append(f"{arm} held-out largest budget C = {x['held_out_budget']:.3g}: mean |rel. error| "
                   f"{100 * x['mean_rel_error']:.2f}%" + (f", bias {100 * x['mean_signed_rel_error']:+.2f}%"
                                                          if "mean_signed_rel_error" in x else ""))
    r = e.get("rollout")
    if isinstance(r, dict):
        out.append(f"{arm} rollout (held-out largest size): " + (r["error"] if "error" in r else
                   f"N = {r['held_out_params']:.3g}, {r['n_test']} point{'s' if r['n_test'] != 1 else ''}: mean |rel. error| "
                   f"{100 * r['mean_abs_rel_error']:.2f}%, bias {100 * r['mean_signed_rel_error']:+.2f}%"))
    return out


def _print_study(fits: dict) -> None:
    from .fits.envelope import EnvelopeFit
    from .fits.isoflop import IsoflopFit
    from .fits.parametric import ParametricFit

    _print_notes(fits)
    boot = f"   bootstrap: {fits['bootstrap']} ({fits.get('bootstrap_method')})" if fits.get("bootstrap") else ""
    pen = fits.get("overestimate_penalty", 1.0)
    boot += f"   overestimate penalty: {pen:g}" if pen != 1.0 else ""
    print(f"loss column: {fits['loss_col']}   huber delta: {fits['huber_delta']}   reduce: {fits['reduce']}{boot}")
    w = max([12] + [len(str(a)) for a in fits["arms"]])  # the arm column fits the longest name
    hdr = f"{'arm':<{w}} {'runs':>5} {'points':>6} {'E':>8} {'A':>10} {'B':>10} {'alpha':>7} {'beta':>7} {'a':>6} {'b':>6} {'a_iso':>6}"
    print(hdr)
    print("-" * len(hdr))
    cautions = []
    for arm, e in fits["arms"].items():
        p = e.get("parametric", {})
        iso = e.get("isoflop", {})
        if "error" in p or not p:
            cols = f"{'(parametric: ' + p.get('error', e.get('error', 'n/a'))[:60] + ')'}"
        else:
            f = ParametricFit.from_dict(p)
            cols = f"{f.E:>8.4g} {f.A:>10.4g} {f.B:>10.4g} {f.alpha:>7.4f} {f.beta:>7.4f} {f.a:>6.3f} {f.b:>6.3f}"
            if f.ill_conditioned:
                cautions.append(f"CAUTION ({arm}): parametric fit ill-conditioned: " + "; ".join(f.diagnostics()[:2]))
        a_iso = f"{IsoflopFit.from_dict(iso).a:>6.3f}" if iso and "error" not in iso else f"{'–':>6}"
        cautions += [f"WARNING ({arm}, isoFLOP): {x}" for x in (iso.get("warnings", []) if iso else [])]
        print(f"{arm:<{w}} {e.get('n_runs', 0):>5} {_points_fitted(e):>6} {cols} {a_iso}")
    for line in cautions:  # below the table, so its columns stay aligned
        print(line)
    for arm, e in fits["arms"].items():
        for line in _interval_lines(arm, e.get("parametric") or {}) + _held_out_lines(arm, e):
            print(line)
    for pair in (fits.get("compare") or {}).get("pairs", []):  # the verdicts; report.md has the numbers
        a0, a1 = pair["arms"]
        fr = pair["frontier"]
        ms = ", ".join(f"{m} {v.get('verdict', 'n/a')}" for m, v in pair["metrics"].items() if not v.get("not_evaluated"))
        print(f"{a0} vs {a1}: frontier loss {fr.get('verdict', fr.get('error'))}; exponent a "
              f"{pair['exponent']['verdict']}" + (f"; {ms}" if ms else ""))
    for arm, e in fits["arms"].items():
        envs = e.get("metric_envelopes", {})
        ok = {m: EnvelopeFit.from_dict(v).gamma for m, v in envs.items() if "error" not in v}
        if ok:
            print(f"{arm} envelope gammas: " + ", ".join(f"{m} {g:.4f}" for m, g in ok.items()))


def run_fit(args: argparse.Namespace) -> int:
    """Fit the requested law(s), print a table, optionally write JSON; returns the exit code."""
    import numpy as np

    from scaling.atomic import check_out_file, write_json
    from scaling.errors import ConfigError

    from .fits.envelope import fit_envelope
    from .fits.isoflop import fit_isoflop
    from .fits.parametric import fit_parametric
    from .study import arm_rows, budget_of, check_fittable, data_notes, direction_of, fit_study, usable_losses

    if args.json_out:
        check_out_file(args.json_out, "--json")
    df, loss_col = _prepare(args)
    _check_envelope_options(args, df)
    arms = _selected_arms(df, args.arm)
    nboot = getattr(args, "bootstrap", 0) or 0
    seed = getattr(args, "seed", 0)
    method = getattr(args, "bootstrap_method", "pairs")
    keep = getattr(args, "keep_extrapolated", False)
    if nboot < 0:
        raise ConfigError("--bootstrap must be >= 0", field="bootstrap", value=nboot)
    source = df.attrs.get("source")
    penalty = getattr(args, "overestimate_penalty", 1.0)
    if penalty != 1.0 and args.law in ("isoflop", "envelope"):
        raise ConfigError(f"applies to the parametric law only: --law {args.law} would ignore it",
                          field="--overestimate-penalty", value=penalty)
    if args.law == "all":
        out = fit_study(df, loss_col=loss_col, huber_delta=args.huber_delta, reduce=args.reduce, arms=arms,
                        bootstrap=nboot, seed=seed, bootstrap_method=method, keep_extrapolated=keep,
                        dropped_top=getattr(args, "drop_top", 0) or 0, require_fit=True, overestimate_penalty=penalty,
                        extrapolation=bool(args.json_out))  # two more full fits (held-out checks): only for --json
        _print_study(out)
    else:
        _print_notes({"notes": data_notes(df, loss_col, dropped_top=getattr(args, "drop_top", 0) or 0)})
        per_arm = {}
        for arm in arms:
            rows = arm_rows(df, arm)
            if args.law == "envelope":
                col = args.metric or loss_col
                if col not in rows.columns:
                    raise ConfigError("column not in the results table", source=source, field=col)
                hib = direction_of(col, None if args.higher_is_better is None else {col: args.higher_is_better})
                try:
                    values = np.asarray(rows[col], dtype=float)
                except (TypeError, ValueError):  # a text column (model names, ...): name its first text
                    raise ConfigError("the column does not hold numbers", source=source, field=col,
                                      value=next(v for v in rows[col] if not _is_number(v))) from None
                fit = fit_envelope(budget_of(rows), values, higher_is_better=hib)
            else:
                rows, dropped = usable_losses(rows, loss_col)
                if dropped:
                    _print_notes({"arms": {arm: {"dropped": dropped}}})
                check_fittable(rows, loss_col, source=source, arm=arm)
                N, D, L = (np.asarray(rows[c], dtype=float) for c in ("params", "tokens", loss_col))
                if args.law == "parametric":
                    fit = fit_parametric(N, D, L, huber_delta=args.huber_delta, reduce=args.reduce,
                                         bounds=True if getattr(args, "bounded", False) else None,
                                         overestimate_penalty=penalty)
                    from .fits.laplace import laplace_intervals

                    laplace_intervals(fit, N, D, L)  # cheap: always, beside any bootstrap
                    if nboot:
                        from .fits.bootstrap import bootstrap_parametric

                        fit = bootstrap_parametric(fit, N, D, L, n_resamples=nboot, seed=seed, method=method)
                else:
                    fit = fit_isoflop(budget_of(rows), N, D, L, method=getattr(args, "isoflop_method", "auto"),
                                      bootstrap=nboot, seed=seed, keep_extrapolated=keep,
                                      window=getattr(args, "isoflop_window", 2.0),
                                      min_sizes=getattr(args, "isoflop_min_sizes", 3),
                                      noise=getattr(args, "isoflop_noise", None))
            print(f"== {arm} ==")
            print(fit.summary() if hasattr(fit, "summary") else str(fit))
            per_arm[arm] = fit.to_dict()
        out = per_arm[arms[0]] if len(arms) == 1 else per_arm
    if args.json_out:
        write_json(args.json_out, out)
        print(f"wrote {args.json_out}")
    return 0


def add_figures_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = (
        "Draw the scaling figures (isoflop, loss_vs_compute, metrics_vs_compute; PNG and PDF) into --out "
        "and write a Markdown report. Fits are read from --fits (a fits.json written by 'scaling fit') "
        "or, without it, computed here and also saved as OUT/fits.json. The report goes to --report, "
        "default: report.md in the parent directory of OUT, with figure links relative to it.")
    parser.add_argument("results", metavar="RESULTS", help="results.csv, its directory, or a directory with runs/*/result.json")
    parser.add_argument("--fits", default=None, metavar="FITS.json", help="fits from 'scaling fit --law all --json'")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the figure files")
    parser.add_argument("--report", default=None, metavar="PATH", help="report path (default: DIR/../report.md)")
    parser.add_argument("--loss-col", default=None, help="loss column when fits are computed here")
    parser.add_argument("--huber-delta", type=positive_number, default=1e-3, help="Huber delta when fits are computed here")
    _add_common(parser)
    return parser


def _publish(stage, out_dir) -> None:
    """Move every file under ``stage`` to the same place under ``out_dir`` (each by an atomic rename)."""
    import os
    from pathlib import Path

    for p in sorted(Path(stage).rglob("*")):
        if p.is_file():
            dest = Path(out_dir) / p.relative_to(stage)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)


def _staging(out_dir):
    """A fresh folder beside ``out_dir`` (same file system) where outputs are built before publishing."""
    import tempfile
    from pathlib import Path

    parent = Path(out_dir).resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{Path(out_dir).name}.partial-", dir=parent))


def run_figures(args: argparse.Namespace) -> int:
    """Draw figures and the report; returns the exit code. Nothing is written unless everything succeeds."""
    import json
    import shutil
    from pathlib import Path

    from scaling.atomic import check_out_dir, check_out_file, write_json, write_text
    from scaling.errors import ConfigError
    from scaling.textio import read_text

    out_dir = check_out_dir(args.out, "--out", beside=True)  # the figures are staged beside it
    report = Path(args.report) if args.report else out_dir.resolve().parent / "report.md"
    check_out_file(report, "--report")

    from .figures import draw_figures
    from .report import write_report
    from .study import fit_study

    table, loss_col = _prepare(args)
    if args.fits:
        try:
            fits = json.loads(read_text(args.fits, field="--fits"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"cannot read fits: {exc}", source=args.fits) from None
        if not isinstance(fits, dict) or "arms" not in fits:
            raise ConfigError("not a fits.json from 'scaling fit --law all' (no 'arms' key)", source=args.fits)
    else:
        fits = fit_study(table, loss_col=loss_col, huber_delta=args.huber_delta, require_fit=True,
                         keep_extrapolated=args.keep_extrapolated, dropped_top=args.drop_top,
                         overestimate_penalty=args.overestimate_penalty)
    df = table.to_pandas()  # the figures and the report draw from pandas
    stage = _staging(out_dir)
    try:
        if not args.fits:
            write_json(stage / "fits.json", fits)
        staged = draw_figures(df, fits, stage)
        paths = [out_dir / Path(p).relative_to(stage) for p in staged]
        text_stage = stage / ".report.md"
        write_report(df, fits, paths, text_stage, link_from=report)
        report_text = text_stage.read_text(encoding="utf-8")
        text_stage.unlink()
        _publish(stage, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    write_text(report, report_text)
    _print_notes(fits)
    for p in paths:
        print(f"wrote {p}")
    print(f"wrote {report}")
    return 0


def add_report_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = (
        "Everything for a sweep in one go: fit every law for every arm (parametric with bootstrap "
        "intervals, isoFLOP parabola and power-sum, envelopes, approach 1 from training curves, the "
        "extrapolation check, two-step metric prediction), then write OUT/fits.json, OUT/figures/*.png|pdf, "
        "OUT/coefficients.tex, OUT/coefficients.md and OUT/report.md.")
    parser.add_argument("results", metavar="RESULTS_DIR", help="sweep directory (runs/*/result.json, or results.csv)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--loss-col", default=None, help="loss column (default: val_loss_speech if present, else loss)")
    parser.add_argument("--huber-delta", type=positive_number, default=1e-3,
                        help="Huber delta, > 0 (default 1e-3; 0.03 as Cuervo & Marxer)")
    parser.add_argument("--bootstrap", type=resamples, default=1000, metavar="N",
                        help="bootstrap resamples (default 1000; 4000 as Epoch; 0 turns intervals off)")
    parser.add_argument("--seed", type=seed, default=0, help="bootstrap seed (default 0)")
    _add_common(parser)
    parser.add_argument("--reference", action="append", default=None, metavar="LAW",
                        help="published law to overlay dashed (cuervo_speech, cuervo_text, hoffmann, epoch); "
                             "repeatable; default cuervo_speech")
    return parser


def run_report(args: argparse.Namespace) -> int:
    """``scaling report``: fits.json, every figure, LaTeX and Markdown tables and report.md under --out.

    Everything is built in a staging folder beside --out and moved in only when all of it succeeded."""
    import shutil

    from scaling.atomic import check_out_dir, write_json, write_text
    from scaling.errors import ConfigError

    out = check_out_dir(args.out, "--out", beside=True)  # everything is staged beside it

    from .curves import load_curves
    from .figures import DEFAULT_REFERENCES, draw_figures
    from .fits.reference import reference_law
    from .report import write_report
    from .study import fit_study, fitted_laws
    from .tables import latex_table, markdown_table

    if args.bootstrap < 0:
        raise ConfigError("--bootstrap must be >= 0", field="bootstrap", value=args.bootstrap)
    refs = tuple(args.reference) if args.reference else DEFAULT_REFERENCES
    for r in refs:
        reference_law(r)  # fail before the slow part on a typo
    table, loss_col = _prepare(args)
    try:
        curves = load_curves(args.results)
    except ConfigError as exc:  # a bare CSV has no training curves: report without approach 1
        print(f"no training curves ({exc}); skipping approach 1 and the training-curves figure")
        curves = None
    fits = fit_study(table, loss_col=loss_col, huber_delta=args.huber_delta, bootstrap=args.bootstrap, seed=args.seed,
                     curves=curves, bootstrap_method=args.bootstrap_method, keep_extrapolated=args.keep_extrapolated,
                     dropped_top=args.drop_top, require_fit=True, require_law=False,
                     overestimate_penalty=args.overestimate_penalty)
    if not fitted_laws(fits):  # the report still documents the runs (observed losses, envelopes, metrics)
        print("warning: no scaling law could be fitted (parametric, isoFLOP): the report shows the runs, "
              "their envelopes and metrics only; see fits.json for each law's reason", file=sys.stderr)
    df = table.to_pandas()  # the figures and the report draw from pandas
    stage = _staging(out)
    try:
        write_json(stage / "fits.json", fits)
        draw_figures(df, fits, stage / "figures", curves=curves, references=refs)
        par = {arm: e.get("parametric") for arm, e in fits["arms"].items()}
        write_text(stage / "coefficients.tex", latex_table(par))
        write_text(stage / "coefficients.md", markdown_table(par))
        figs = sorted(p for p in (stage / "figures").rglob("*") if p.is_file())
        write_report(df, fits, figs, stage / "report.md")
        written = [out / p.relative_to(stage) for p in sorted(stage.rglob("*")) if p.is_file()]
        _publish(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    _print_study(fits)
    for p in written:
        print(f"wrote {p}")
    return 0


def add_power_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = (
        "Power analysis of a grid before it trains: simulated studies at its planned points (each run's end "
        "and cooldown branches, from `scaling plan SWEEP --json PLAN`) under an assumed law, each fitted and "
        "bootstrapped as `scaling fit` does. Prints per arm the median 95%% interval widths of alpha, beta and "
        "a against the report's 'wide' limit, how often the fit would be flagged ill-conditioned and why, the "
        "intervals' coverage of the law and the held-out largest budget's error.")
    parser.add_argument("plan", metavar="PLAN_JSON", help="the plan of the grid (scaling plan SWEEP --json PLAN_JSON; "
                                                          "a demo writes it as plan.json)")
    parser.add_argument("--law", required=True, metavar="FITS_JSON_OR_LAW",
                        help="a pilot study's fits.json (each arm its own law, and its log-residual scatter as the "
                             "noise) or E=..,A=..,B=..,alpha=..,beta=.. for every arm")
    parser.add_argument("--noise", type=positive_number, help="sd of the log losses about the law, iid over points (the "
                                                    "old model; default: the pilot fits.json's noise model)")
    add_noise_arguments(parser)
    parser.add_argument("--replicates", type=int, default=20, help="simulated studies per arm (default 20)")
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples per study (default 200)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the simulated noise (default 0)")
    return parser


def add_noise_arguments(parser: argparse.ArgumentParser) -> None:
    """--run-sd / --slope-sd / --point-sd: the parts of the run-level noise model (analysis.noise)."""
    parser.add_argument("--run-sd", type=non_negative_number, help="sd of a run's log-loss offset, shared by its end and "
                                                                   "its cooldown branches (default: the pilot fits.json's)")
    parser.add_argument("--slope-sd", type=non_negative_number,
                        help="sd of a run's learning-curve slope about the law, per e-fold of tokens, shared by its "
                             "branches (default: the pilot fits.json's)")
    parser.add_argument("--point-sd", type=non_negative_number, help="sd of each point's own log-loss deviation "
                                                                     "(default: the pilot fits.json's)")
    parser.add_argument("--huber-delta", type=positive_number, default=None,
                        help="Huber delta of the simulated (and predicted) fits (default: the pilot fits.json's, "
                             "else 1e-3, `scaling fit`'s); the demo's reports fit at 0.03")


def huber_delta_of(args) -> float:
    """``--huber-delta`` of scaling power / design: as given, else the pilot fits.json's, else 1e-3."""
    import json
    from pathlib import Path

    if args.huber_delta is not None:
        return float(args.huber_delta)
    if Path(args.law).is_file():
        try:
            v = json.loads(Path(args.law).read_text(encoding="utf-8")).get("huber_delta")
        except (OSError, ValueError, AttributeError):
            v = None
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return float(v)
    return 1e-3


def check_simulation_sizes(args) -> None:
    """``--replicates`` and ``--resamples`` of simulated studies (scaling power, scaling design --confirm):
    at least 2 studies and 20 resamples make an interval; a ConfigError naming the flag otherwise."""
    from scaling.errors import ConfigError

    if args.replicates < 2 or args.resamples < 20:
        bad = ("--replicates", args.replicates) if args.replicates < 2 else ("--resamples", args.resamples)
        raise ConfigError("too few for an interval (at least 2 replicates and 20 resamples)", field=bad[0], value=bad[1])


def run_power(args) -> int:
    from pathlib import Path

    from scaling.errors import ConfigError

    from .power import format_power, laws_from_fits, load_plan_points, parse_law, resolve_noise, simulate

    check_simulation_sizes(args)
    points = load_plan_points(args.plan)
    if Path(args.law).is_file():
        laws = laws_from_fits(args.law)
        if len(laws) == 1:  # one pilot law serves every arm of the plan
            laws = {arm: next(iter(laws.values())) for arm in points}
        missing = [arm for arm in points if arm not in laws]
        if missing:
            raise ConfigError(f"has no parametric law for arm(s) {', '.join(missing)} of the plan (it has "
                              f"{', '.join(laws)})", source=args.law, field="arms")
    else:
        law = parse_law(args.law)
        laws = {arm: (law, None) for arm in points}
    delta = huber_delta_of(args)
    for i, (arm, (N, D, C, runs)) in enumerate(points.items()):
        law, measured = laws[arm]
        noise, told = resolve_noise(measured, args)
        res = simulate(N, D, law, noise=noise, runs=runs, replicates=args.replicates, resamples=args.resamples,
                       seed=args.seed, budgets=C, huber_delta=delta)
        print(("\n" if i else "") + format_power(arm, res) + f"  (noise: {told}; Huber delta {delta:g})")
    return 0


def register(sub) -> None:
    """The analysis subcommands of `scaling`: fit, figures, report, power (nothing heavy imported here)."""
    f = sub.add_parser("fit", help="fit scaling laws to a results table")
    add_fit_arguments(f).set_defaults(func=run_fit)
    g = sub.add_parser("figures", help="draw the figures (and report.md) from a results table")
    add_figures_arguments(g).set_defaults(func=run_figures)
    r = sub.add_parser("report", help="fits, figures, tables and report.md for a sweep in one go")
    add_report_arguments(r).set_defaults(func=run_report)
    w = sub.add_parser("power", help="will a planned grid identify its law? simulated studies under an assumed law")
    add_power_arguments(w).set_defaults(func=run_power)


def main(argv=None) -> int:
    """Standalone entry for development: ``python -m analysis.cli fit|figures|report ...``."""
    parser = argparse.ArgumentParser(prog="analysis")
    register(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
