"""Metric figures of SIMS: isoFLOP curves of each benchmark (accuracy vs N at fixed compute, per
arm, 95% binomial intervals where the table has item counts ``<bench>_n``), and the
compute-optimal N and D each metric picks (its best point per budget) beside the loss law's."""
from __future__ import annotations

import numpy as np

from scaling.datadir import BENCHMARKS

from .fits.parametric import ParametricFit
from .paperstyle import OKABE_ITO, arm_style, finish_opt_panels, merged_legend_items, readable_log_axis
from .study import arm_rows, budget_of, direction_of

#: z of a two-sided 95% normal interval (binomial error bars: normal approximation).
Z95 = 1.959964


def binomial_halfwidth(acc, n):
    """Half-width of the 95% normal-approximation interval of an accuracy over n items (NaN without n)."""
    acc, n = np.asarray(acc, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, Z95 * np.sqrt(np.clip(acc * (1 - acc), 0, None) / n), np.nan)


def metric_optima(rows, metric: str, hib: bool) -> list[tuple[float, float, float, float]]:
    """(C, N, D, value) of the best point per budget (argmax, or argmin for a lower-is-better column)."""
    v = rows[metric].to_numpy(dtype=float)
    C = budget_of(rows)
    N, D = rows["params"].to_numpy(dtype=float), rows["tokens"].to_numpy(dtype=float)
    out = []
    for c in sorted(set(C[np.isfinite(C) & np.isfinite(v)])):
        idx = np.flatnonzero((C == c) & np.isfinite(v))
        if idx.size < 2:  # one size is no choice of size
            continue
        j = idx[np.argmax(v[idx]) if hib else np.argmin(v[idx])]
        out.append((float(c), float(N[j]), float(D[j]), float(v[j])))
    return out


def _colours(budgets):
    return {b: OKABE_ITO[i % len(OKABE_ITO)] for i, b in enumerate(budgets)}


def draw_metric_isoflop(plt, df, fits, metric: str):
    """One panel per arm: ``metric`` against N, one curve per budget, error bars when item counts
    are known, the best size per budget starred."""
    arms = list(fits["arms"])
    hib = direction_of(metric)
    fig, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms) + 1.4, 3.4), squeeze=False, sharey=True)
    budgets = sorted({b for arm in arms for b in budget_of(arm_rows(df, arm)) if np.isfinite(b)})
    colour = _colours(budgets)
    ncol = f"{metric}_n"
    for ax, arm in zip(axes[0], arms):
        rows = arm_rows(df, arm)
        if metric not in rows.columns:
            ax.text(0.5, 0.5, f"no {metric}", transform=ax.transAxes, ha="center")
            continue
        rows = rows[np.isfinite(rows[metric].to_numpy(dtype=float))]
        C = budget_of(rows)
        for b in sorted(set(C[np.isfinite(C)])):
            sel = rows[C == b].sort_values("params")
            v = sel[metric].to_numpy(dtype=float)
            err = binomial_halfwidth(v, sel[ncol]) if ncol in sel.columns else None
            ax.errorbar(sel["params"], v, yerr=err, color=colour[b], marker="o", ms=3.5, lw=1.0, capsize=2,
                        label=f"C = {b:.2g}")
        for c, n, _, val in metric_optima(rows, metric, hib):
            ax.scatter([n], [val], marker="*", s=90, color=colour[c], edgecolor="black", linewidth=0.5, zorder=4)
        readable_log_axis(ax, "x")
        ax.set_xlabel("parameters N")
        ax.set_title(arm)
    axes[0][0].set_ylabel(BENCHMARKS[metric].label if metric in BENCHMARKS else metric)
    handles, labels = merged_legend_items(axes[0])
    if handles:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], marker="*", color="grey", markeredgecolor="black", ls="", markersize=9))
        labels.append("best size per budget")
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
                   title="budget" + (" (95% binomial bars)" if ncol in df.columns else ""))
    fig.tight_layout()
    return fig


def draw_metric_optima(plt, df, fits):
    """Two panels (N_opt, D_opt vs C): each metric's best point per budget (one marker per metric,
    one colour per arm) and the parametric loss law's frontier with its bootstrap band."""
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.8))
    markers = "os^Dv<>P"
    metrics = [m for m in fits.get("metrics", []) if m in df.columns]
    f = df["flops"].to_numpy(dtype=float)
    f = f[np.isfinite(f) & (f > 0)]
    cs = np.geomspace(f.min() / 1.5, f.max() * 1.5, 100) if f.size else np.geomspace(1e15, 1e20, 100)
    for i, arm in enumerate(fits["arms"]):
        colour, _ = arm_style(arm, i)
        rows = arm_rows(df, arm)
        for k, m in enumerate(metrics):
            pts = metric_optima(rows, m, direction_of(m))
            if not pts:
                continue
            c, n, d, _ = zip(*pts)
            axes[0].scatter(c, n, marker=markers[k % len(markers)], color=colour, s=22, alpha=0.8, label=f"{arm}: {m}")
            axes[1].scatter(c, d, marker=markers[k % len(markers)], color=colour, s=22, alpha=0.8)
        p = fits["arms"][arm].get("parametric")
        if p and "error" not in p:
            par = ParametricFit.from_dict(p)
            band = par.bootstrap.get("band")
            for ax, q in zip(axes, ("n_opt", "d_opt")):
                ax.plot(cs, getattr(par, q)(cs), color=colour, lw=1.4,
                        label=f"{arm}: loss law" + (" (ill-conditioned)" if par.ill_conditioned else "") if q == "n_opt" else None)
                if band and not par.ill_conditioned:
                    ax.fill_between(band["C"], band[q][0], band[q][1], color=colour, alpha=0.15, lw=0,
                                    label=f"{arm}: loss law 95% band" if q == "n_opt" else None)
    for ax in axes:
        ax.set_xlim(cs[0], cs[-1])
    return finish_opt_panels(fig, axes, ncol=3, bottom=0.22)


def draw_arms_compared(plt, df, fits):
    """Speech-loss difference of the arms on the fitted frontier at each shared budget, with its
    bootstrap interval; zero dashed. Drawn only when fits.json holds a comparison."""
    cmp = fits.get("compare") or {}
    pairs = [p for p in cmp.get("pairs", []) if "error" not in p.get("frontier", {"error": 1})]
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    drawn = 0
    for i, pair in enumerate(pairs):
        colour, marker = arm_style(pair["arms"][1], i + 1)
        # budgets where a law has no frontier (difference NaN: report says "undefined") are left out
        rows = [r for r in pair["frontier"]["budgets"] if np.isfinite(r["difference"])]
        if not rows:
            continue
        c = np.array([r["budget"] for r in rows])
        d = np.array([r["difference"] for r in rows])
        lo = np.array([r["ci"][0] if r["ci"] else np.nan for r in rows])
        hi = np.array([r["ci"][1] if r["ci"] else np.nan for r in rows])
        yerr = np.vstack([d - lo, hi - d]) if np.isfinite(lo).all() else None
        ax.errorbar(c, d, yerr=yerr, marker=marker, color=colour, capsize=3, lw=1.2,
                    label=f"{pair['arms'][0]} − {pair['arms'][1]}")
        drawn += 1
    ax.axhline(0.0, color="black", lw=0.8, ls="--")
    if drawn:
        readable_log_axis(ax, "x")
        ax.legend(frameon=False, loc="best")
    else:
        ax.text(0.5, 0.6, "no difference to draw:\nan arm's law has no compute-optimal frontier", ha="center",
                va="center", transform=ax.transAxes, fontsize=8, color="grey")
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel(f"Δ {cmp.get('loss_col', 'loss')} on $L_{{opt}}(C)$ (95% interval)")
    fig.tight_layout()
    return fig
