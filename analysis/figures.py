"""Paper-style figures drawn from a results table and an already computed ``fits.json`` dict.

Plotting never refits: curves come from the fit dictionaries produced by
:func:`analysis.study.fit_study`. Every file is written atomically (temporary name, then rename).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaling.atomic import write_with

from .fits.envelope import EnvelopeFit
from .fits.isoflop import IsoflopFit
from .fits.parametric import ParametricFit
from .study import arm_rows, budget_of

#: Okabe-Ito palette (colour-blind safe), black dropped so fit lines stay distinguishable.
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442"]
ARM_STYLE = {"interleaved": ("#0072B2", "o"), "textless": ("#D55E00", "s"), "all": ("#0072B2", "o")}
FIGURES = ("isoflop", "loss_vs_compute", "metrics_vs_compute")
METRIC_LABELS = {"swuggy": "sWUGGY", "sblimp": "sBLIMP", "ssc": "sStoryCloze", "tsc": "tStoryCloze",
                 "ssc_s2t": "StoryCloze S→T", "ssc_t2s": "StoryCloze T→S", "ssc_t2t": "StoryCloze T→T"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
        "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False,
        "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.5, "lines.linewidth": 1.4,
        "savefig.dpi": 200, "pdf.fonttype": 42,
    })
    return plt


def _arm_style(arm: str, i: int):
    return ARM_STYLE.get(arm, (OKABE_ITO[(i + 2) % len(OKABE_ITO)], "^D v<>"[i % 6]))


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


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    paths = []
    for fmt in ("png", "pdf"):
        paths.append(write_with(out_dir / f"{name}.{fmt}",
                                lambda p, fmt=fmt: fig.savefig(p, format=fmt, bbox_inches="tight")))
    return paths


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
    for ax, arm in zip(axes[0], arms):
        rows = arm_rows(df, arm)
        rows = rows[np.isfinite(rows[loss_col].to_numpy(dtype=float))]
        C = budget_of(rows)
        budgets = sorted(set(C[np.isfinite(C)]))
        iso = _fit_obj(fits["arms"][arm].get("isoflop"), IsoflopFit)
        minima = {m.budget: m for m in iso.minima} if iso else {}
        for b in budgets:
            sel = C == b
            ax.scatter(rows["params"][sel], rows[loss_col][sel], s=16, color=colours[b], zorder=3,
                       label=f"C = {_sci(b)}")
            m = minima.get(b)
            if m is not None:
                lo, hi = min(m.n_min, m.n_opt) / 1.3, max(m.n_max, m.n_opt) * 1.3
                ns = np.geomspace(lo, hi, 100)
                ax.plot(ns, m.curve(ns), color=colours[b], lw=1.0, alpha=0.8)
                ax.scatter([m.n_opt], [m.loss_min], marker="*", s=90, color=colours[b],
                           edgecolor="black", linewidth=0.5, zorder=4)
        ax.set_xscale("log")
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
    if handles:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], marker="*", color="grey", markeredgecolor="black", ls="", markersize=9))
        labels.append("parabola minimum")
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title="budget")
    fig.tight_layout()
    return fig


def _draw_loss_vs_compute(plt, df, fits, loss_col):
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for i, arm in enumerate(fits["arms"]):
        colour, marker = _arm_style(arm, i)
        rows = arm_rows(df, arm)
        rows = rows[np.isfinite(rows[loss_col].to_numpy(dtype=float))]
        if rows.empty:
            continue
        flops = rows["flops"].to_numpy(dtype=float)
        ax.scatter(flops, rows[loss_col], s=14, marker=marker, color=colour, alpha=0.55, zorder=3,
                   label=f"{arm} runs")
        cs = np.geomspace(flops.min() / 1.5, flops.max() * 3, 200)
        par = _fit_obj(fits["arms"][arm].get("parametric"), ParametricFit)
        if par is not None:
            ax.plot(cs, par.loss_opt(cs), color=colour, lw=1.6,
                    label=rf"{arm} $L(N_{{opt}}, D_{{opt}})$, $N_{{opt}} \propto C^{{{par.a:.2f}}}$")
        env = _fit_obj(fits["arms"][arm].get("loss_envelope"), EnvelopeFit)
        if env is not None:
            ax.plot(cs, env.predict(cs), color=colour, ls="--", lw=1.1,
                    label=rf"{arm} envelope $\propto C^{{{env.gamma:.3f}}}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C = 6ND (FLOPs)")
    ax.set_ylabel(loss_col)
    from matplotlib.ticker import LogLocator, ScalarFormatter

    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.yaxis.set_minor_locator(LogLocator(subs=(1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)))
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
                ax.plot(cs, env.predict(cs), color=colour, lw=1.3, label=f"{arm} envelope fit")
                ax.text(0.03, 0.95 - 0.1 * i, rf"$\gamma$ = {env.gamma:.3f}", color=colour, transform=ax.transAxes,
                        va="top", fontsize=7)
        ax.set_xscale("log")
        ax.set_title(METRIC_LABELS.get(metric, metric))
        if k % ncols == 0:
            ax.set_ylabel("accuracy")
        if k // ncols == nrows - 1:
            ax.set_xlabel("compute (FLOPs)")
    for k in range(len(metrics), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    handles, labels = [], []
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(handles)), frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
    return fig


def draw_figures(df: pd.DataFrame, fits: dict, out_dir) -> list[Path]:
    """Write isoflop, loss_vs_compute and metrics_vs_compute as PNG and PDF; returns the paths."""
    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loss_col = fits.get("loss_col", "val_loss_speech")
    paths: list[Path] = []
    for name, draw in (("isoflop", lambda: _draw_isoflop(plt, df, fits, loss_col)),
                       ("loss_vs_compute", lambda: _draw_loss_vs_compute(plt, df, fits, loss_col)),
                       ("metrics_vs_compute", lambda: _draw_metrics(plt, df, fits))):
        fig = draw()
        try:
            paths += _save(fig, out_dir, name)
        finally:
            plt.close(fig)
    return paths
