"""One paper style for every figure: rcParams, the Okabe-Ito palette, readable log axes, saving.

Log axes label decades only; when an axis spans less than about a decade and a half (narrow
panels of a small sweep) the 2x and 5x minor ticks are labelled too, in a compact ``2e11`` form,
so labels never collide. Every file is written atomically (temporary name, then rename).
"""
from __future__ import annotations

import math
from pathlib import Path

from scaling.atomic import write_with

#: Okabe-Ito palette (colour-blind safe), black dropped so fit lines stay distinguishable.
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442"]
ARM_STYLE = {"interleaved": ("#0072B2", "o"), "textless": ("#D55E00", "s"), "all": ("#0072B2", "o")}
#: Reference laws are grey and dashed so they never read as one of our arms.
REFERENCE_COLOURS = {"cuervo_speech": "#555555", "cuervo_text": "#999999", "hoffmann": "#777777",
                     "epoch": "#BBBBBB"}


def pyplot():
    """matplotlib.pyplot with the Agg backend and the paper rcParams applied."""
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


def arm_style(arm: str, i: int):
    """(colour, marker) of an arm: fixed for the two SIMS arms, palette order otherwise."""
    return ARM_STYLE.get(arm, (OKABE_ITO[(i + 2) % len(OKABE_ITO)], "^D v<>"[i % 6]))


def compact_sci(x: float) -> str:
    """``2e11``-style label (mantissa kept only when it is not 1)."""
    if not (x > 0 and math.isfinite(x)):
        return ""
    e = math.floor(math.log10(x) + 1e-9)
    m = x / 10 ** e
    ms = f"{m:.2g}"
    return f"1e{e}" if ms == "1" else f"{ms}e{e}"


def _log_formatters(span_decades: float):
    from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation, NullFormatter

    if span_decades >= 1.5:
        return LogFormatterSciNotation(labelOnlyBase=True), NullFormatter()

    def minor(x, _pos):
        e = math.floor(math.log10(x) + 1e-9)
        m = round(x / 10 ** e, 6)
        return compact_sci(x) if m in (2.0, 5.0) else ""

    return FuncFormatter(lambda x, _p: compact_sci(x)), FuncFormatter(minor)


def readable_log_axis(ax, which: str = "x") -> None:
    """Log scale with labels that do not overlap; call after the data (and limits) are in place."""
    from matplotlib.ticker import LogLocator

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    lo, hi = (ax.get_xlim() if which == "x" else ax.get_ylim())
    span = math.log10(hi / lo) if lo > 0 and hi > lo else 0.0
    axis.set_major_locator(LogLocator(base=10.0, numticks=12))
    axis.set_minor_locator(LogLocator(base=10.0, subs=tuple(range(2, 10)), numticks=12))
    if span > 6:  # very wide: every other decade
        axis.set_major_locator(LogLocator(base=100.0, numticks=12))
    major, minor = _log_formatters(span)
    axis.set_major_formatter(major)
    axis.set_minor_formatter(minor)


def merged_legend_items(axes):
    """Unique (handles, labels) over several axes, in first-seen order."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    return handles, labels


def save_figure(fig, out_dir: Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.pdf`` atomically; returns both paths."""
    paths = []
    for fmt in ("png", "pdf"):
        paths.append(write_with(Path(out_dir) / f"{name}.{fmt}",
                                lambda p, fmt=fmt: fig.savefig(p, format=fmt, bbox_inches="tight")))
    return paths


def finish_opt_panels(fig, axes, *, ncol: int, bottom: float):
    """The two compute-optimal panels (N_opt and D_opt against C): log axes, labels, one legend below."""
    for ax, label in zip(axes, ("$N_{opt}$ (parameters)", "$D_{opt}$ (tokens)")):
        readable_log_axis(ax, "x")
        readable_log_axis(ax, "y")
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_ylabel(label)
    handles, labels = merged_legend_items(axes)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False, bbox_to_anchor=(0.5, 0.0), fontsize=7)
    return fig
