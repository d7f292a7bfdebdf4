"""Paper-style figures drawn from a results table and an already computed ``fits.json`` dict.

Plotting never refits: curves come from the fit dictionaries produced by
:func:`analysis.study.fit_study`. Every file is written atomically (temporary name, then rename).
This module draws the per-run views (isoFLOP curves, loss and metrics vs compute);
:mod:`analysis.figures_frontier` the compute-optimal frontier and L(N, D) contours, and
:mod:`analysis.figures_curves` the training curves.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaling.datadir import BENCHMARKS

from .fits.envelope import EnvelopeFit
from .fits.isoflop import IsoflopFit
from .fits.parametric import ParametricFit
from .fits.reference import REFERENCE_LAWS
from .paperstyle import (OKABE_ITO, REFERENCE_COLOURS, arm_style, merged_legend_items, pyplot,
                         readable_log_axis, save_figure)
from .study import arm_rows, budget_of

FIGURES = ("isoflop", "loss_vs_compute", "metrics_vs_compute", "compute_optimal", "parametric_contours",
           "training_curves")
#: Reference laws overlaid on loss vs compute by default: the textless speech law SIMS compares with.
DEFAULT_REFERENCES = ("cuervo_speech",)
#: Axis labels of the benchmark columns, from the registry.
METRIC_LABELS = {name: b.label for name, b in BENCHMARKS.items()}


_plt = pyplot
_arm_style = arm_style


def _budget_colours(budgets):
    if len(budgets) <= len(OKABE_ITO):
        return {b: OKABE_ITO[i] for i, b in enumerate(budgets)}
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]  # perceptually uniform, colour-blind safe
    return {b: cmap(i / max(1, len(budgets) - 1)) for i, b in enumerate(budgets)}


def _sci(x: float) -> str:
    m, e = f"{x:.2e}".split("e")
    m = m.rstrip("0").rstrip(".")
    return f"{m}e{int(e)}"


_save = save_figure


def _fit_obj(entry: dict | None, cls):
    if not entry or "error" in entry:
        return None
    return cls.from_dict(entry)


def _draw_isoflop(plt, df, fits, loss_col):
    arms = list(fits["arms"])
    fig, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms) + 1.4, 3.4), squeeze=False)
    all_budgets: set = set()
    for arm in arms:
        C = budget_of(arm_rows(df, arm))
        all_budgets |= set(C[np.isfinite(C)])
    colours = _budget_colours(sorted(all_budgets))  # one colour per budget across panels: one legend
    outside_any = False
    for ax, arm in zip(axes[0], arms):
        rows = arm_rows(df, arm)
        rows = rows[np.isfinite(rows[loss_col].to_numpy(dtype=float))]
        C = budget_of(rows)
        budgets = sorted(set(C[np.isfinite(C)]))
        iso = _fit_obj(fits["arms"][arm].get("isoflop"), IsoflopFit)
        minima = {m.budget: m for m in iso.minima} if iso else {}
        par = _fit_obj(fits["arms"][arm].get("parametric"), ParametricFit)
        if par is not None and not par.ill_conditioned:  # an ill-conditioned law leaves the data's range
            bands = {round(float(e["budget"]), 6): e for e in par.bootstrap.get("isoflop_band", [])}
            for b in budgets:
                ns = np.geomspace(rows["params"][C == b].min() / 1.3, rows["params"][C == b].max() * 1.3, 60)
                ax.plot(ns, par.predict(ns, b / (6.0 * ns)), color=colours[b], lw=1.0, ls="--", alpha=0.9,
                        label="parametric law L(N, C/6N)")
                band = bands.get(round(float(b), 6))
                if band:
                    ax.fill_between(band["N"], band["lo"], band["hi"], color=colours[b], alpha=0.12, lw=0,
                                    label="law's 95% bootstrap band")
        for b in budgets:
            sel = C == b
            ax.scatter(rows["params"][sel], rows[loss_col][sel], s=16, color=colours[b], zorder=3,
                       label=f"C = {_sci(b)}")
            m = minima.get(b)
            if m is not None:
                # a vertex outside the sampled sizes is not a minimum the data show (it is left out of the
                # N_opt fit): the curve stays over the sampled sizes and no star is drawn, so one runaway
                # vertex (a parabola through nearly flat points) cannot stretch the axis over decades
                inside = m.n_min <= m.n_opt <= m.n_max
                outside_any |= not inside
                lo, hi = (min(m.n_min, m.n_opt), max(m.n_max, m.n_opt)) if inside else (m.n_min, m.n_max)
                ns = np.geomspace(lo / 1.3, hi * 1.3, 100)
                ax.plot(ns, m.curve(ns), color=colours[b], lw=1.0, alpha=0.8, ls="-" if inside else ":")
                if inside:
                    ax.scatter([m.n_opt], [m.loss_min], marker="*", s=90, color=colours[b],
                               edgecolor="black", linewidth=0.5, zorder=4)
        readable_log_axis(ax, "x")
        ax.set_xlabel("parameters N")
        ax.set_ylabel(f"{loss_col}")
        title = arm if iso is None else rf"{arm}: $N_{{opt}} \propto C^{{{iso.a:.2f}}}$"
        ax.set_title(title)
        if not budgets:
            ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center")
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:  # law and band entries last, in grey: their colour is the budget's
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        for lab, grey in (("parametric law L(N, C/6N)", Line2D([], [], color="grey", ls="--")),
                          ("law's 95% bootstrap band", Patch(color="grey", alpha=0.25))):
            if lab in labels:
                i = labels.index(lab)
                del handles[i], labels[i]
                handles.append(grey)
                labels.append(lab)

        handles.append(Line2D([], [], marker="*", color="grey", markeredgecolor="black", ls="", markersize=9))
        labels.append("parabola minimum")
        if outside_any:
            handles.append(Line2D([], [], color="grey", ls=":"))
            labels.append("parabola, vertex outside the sizes")
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title="budget")
    fig.tight_layout()
    return fig


def _draw_loss_vs_compute(plt, df, fits, loss_col, references=DEFAULT_REFERENCES):
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    all_flops = []
    for i, arm in enumerate(fits["arms"]):
        colour, marker = _arm_style(arm, i)
        rows = arm_rows(df, arm)
        rows = rows[np.isfinite(rows[loss_col].to_numpy(dtype=float))]
        if rows.empty:
            continue
        flops = rows["flops"].to_numpy(dtype=float)
        all_flops.append(flops)
        ax.scatter(flops, rows[loss_col], s=14, marker=marker, color=colour, alpha=0.55, zorder=3,
                   label=f"{arm} runs")
        cs = np.geomspace(flops.min() / 1.5, flops.max() * 3, 200)
        par = _fit_obj(fits["arms"][arm].get("parametric"), ParametricFit)
        if par is not None:
            warn = " (ill-conditioned)" if par.ill_conditioned else ""
            ax.plot(cs, par.loss_opt(cs), color=colour, lw=1.6,
                    label=rf"{arm} $L(N_{{opt}}, D_{{opt}})$, $N_{{opt}} \propto C^{{{par.a:.2f}}}$" + warn)
            band = par.bootstrap.get("band")
            if band and not par.ill_conditioned:  # an ill-conditioned band spans decades: it would hide the data
                ax.fill_between(band["C"], band["loss_opt"][0], band["loss_opt"][1], color=colour, alpha=0.15, lw=0,
                                label=f"{arm} {par.bootstrap.get('level', 0.95):.0%} bootstrap band")
        env = _fit_obj(fits["arms"][arm].get("loss_envelope"), EnvelopeFit)
        if env is not None:
            ax.plot(cs, env.predict(cs), color=colour, ls=":", lw=1.3,
                    label=rf"{arm} envelope $\propto C^{{{env.gamma:.3f}}}$")
    if all_flops and references:
        f = np.concatenate(all_flops)
        cs = np.geomspace(np.nanmin(f) / 1.5, np.nanmax(f) * 3, 200)
        ylo, yhi = ax.get_ylim()
        for key in references:
            ref = REFERENCE_LAWS[key]
            # published laws are in their own loss units: draw them, but keep our data's y-range
            ax.plot(cs, ref.loss_opt(cs), color=REFERENCE_COLOURS.get(key, "grey"), ls="--", lw=1.1,
                    label=f"{ref.label} (published)")
        ax.set_ylim(ylo, yhi)
    readable_log_axis(ax, "x")
    ax.set_yscale("log")
    ax.set_xlabel("compute C = 6ND (FLOPs)")
    ax.set_ylabel(loss_col)
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ylo, yhi = ax.get_ylim()
    if yhi / ylo < 30:  # a few plain numbers read better than 10^0 on a narrow loss axis
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    # legend under the axes: it can never cover data points
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def _draw_metrics(plt, df, fits):
    metrics = [m for m in fits.get("metrics", []) if m in df.columns] or ["(none)"]
    ncols = min(4, len(metrics))
    nrows = int(np.ceil(len(metrics) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 2.6 * nrows + 0.5), squeeze=False)
    for k, metric in enumerate(metrics):
        ax = axes[k // ncols][k % ncols]
        gamma_items = []
        for i, arm in enumerate(fits["arms"]):
            colour, marker = _arm_style(arm, i)
            rows = arm_rows(df, arm)
            if metric not in rows.columns:
                continue
            v = rows[metric].to_numpy(dtype=float)
            ok = np.isfinite(v)
            if not ok.any():
                continue
            flops = rows["flops"].to_numpy(dtype=float)[ok]
            ax.scatter(flops, v[ok], s=10, marker=marker, color=colour, alpha=0.5, zorder=3, label=f"{arm} runs")
            env = _fit_obj(fits["arms"][arm].get("metric_envelopes", {}).get(metric), EnvelopeFit)
            if env is not None:
                cs = np.geomspace(flops.min() / 1.5, flops.max() * 1.5, 100)
                # gamma goes into this panel's own small legend (never on top of the data); the
                # shared figure legend keeps only what markers and lines mean
                line, = ax.plot(cs, env.predict(cs), color=colour, lw=1.3)
                gamma_items.append((line, rf"$\gamma$ = {env.gamma:.3f}"))
                ax.plot([], [], color=colour, lw=1.3, label=f"{arm} envelope Q = k C^γ")
        if gamma_items:
            ax.legend(*zip(*gamma_items), loc="best", fontsize=7, frameon=True, framealpha=0.85, handlelength=1.2,
                      borderpad=0.3, labelspacing=0.2)
        readable_log_axis(ax, "x")
        ax.set_title(METRIC_LABELS.get(metric, metric))
        if k % ncols == 0:
            ax.set_ylabel("accuracy")
        if k // ncols == nrows - 1:
            ax.set_xlabel("compute (FLOPs)")
    for k in range(len(metrics), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    handles, labels = merged_legend_items(axes.ravel())
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(handles)), frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
    return fig


def draw_figures(df: pd.DataFrame, fits: dict, out_dir, *, curves: pd.DataFrame | None = None,
                 references=DEFAULT_REFERENCES) -> list[Path]:
    """Write every figure as PNG and PDF; returns the paths.

    Always: isoflop, loss_vs_compute (with the ``references`` laws dashed), metrics_vs_compute,
    compute_optimal (N_opt and D_opt vs C, both laws) and parametric_contours; training_curves
    when ``curves`` (from :func:`analysis.curves.load_curves`) is given; ``isoflop_<metric>`` for
    each metric with values, ``metric_compute_optimal`` and, with a comparison of arms in ``fits``,
    ``arms_compared``.
    """
    from .figures_curves import draw_training_curves
    from .figures_frontier import draw_compute_optimal, draw_parametric_contours
    from .figures_metrics import draw_arms_compared, draw_metric_isoflop, draw_metric_optima

    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loss_col = fits.get("loss_col", "val_loss_speech")
    paths: list[Path] = []
    jobs = [("isoflop", lambda: _draw_isoflop(plt, df, fits, loss_col)),
            ("loss_vs_compute", lambda: _draw_loss_vs_compute(plt, df, fits, loss_col, references)),
            ("metrics_vs_compute", lambda: _draw_metrics(plt, df, fits)),
            ("compute_optimal", lambda: draw_compute_optimal(plt, df, fits)),
            ("parametric_contours", lambda: draw_parametric_contours(plt, df, fits))]
    if curves is not None:
        jobs.append(("training_curves", lambda: draw_training_curves(plt, curves, fits, df)))
    metrics = [m for m in fits.get("metrics", []) if m in df.columns and np.isfinite(df[m].to_numpy(dtype=float)).any()]
    for m in metrics:
        jobs.append((f"isoflop_{m}", lambda m=m: draw_metric_isoflop(plt, df, fits, m)))
    if metrics:
        jobs.append(("metric_compute_optimal", lambda: draw_metric_optima(plt, df, fits)))
    if "pairs" in (fits.get("compare") or {}):
        jobs.append(("arms_compared", lambda: draw_arms_compared(plt, df, fits)))
    for name, draw in jobs:
        fig = draw()
        try:
            paths += _save(fig, out_dir, name)
        finally:
            plt.close(fig)
    return paths
