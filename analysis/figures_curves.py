"""Training curves: loss against tokens per run, with validation / cooldown checkpoints marked."""
from __future__ import annotations

import numpy as np

from .paperstyle import OKABE_ITO, merged_legend_items, readable_log_axis
from .study import arms_of


def draw_training_curves(plt, curves, fits, df=None):
    """One panel per arm: training loss (thin line, one colour per model size) and every
    validation point (markers: the loss column of ``fits``) at its token count."""
    loss_col = fits.get("loss_col", "val_loss_speech")
    arms = [a for a in fits["arms"]] or arms_of(curves)
    fig, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms), 3.4), squeeze=False, sharey=True)
    sizes = sorted(curves["params"].dropna().unique())
    colour = {n: OKABE_ITO[i % len(OKABE_ITO)] for i, n in enumerate(sizes)}
    for ax, arm in zip(axes[0], arms):
        c = curves[curves["arm"] == arm] if "arm" in curves.columns and arm != "all" else curves
        for _, g in c.groupby("curve" if "curve" in c.columns else "run_id"):  # a wsd branch is its own line
            n = g["params"].iloc[0]
            tr = g[(g["kind"] == "train") & np.isfinite(g["loss"].to_numpy(dtype=float))].sort_values("tokens")
            lab = f"N = {n:.3g}"
            if not tr.empty:
                sm = tr["loss"].rolling(5, center=True, min_periods=1).mean()
                ax.plot(tr["tokens"], sm, color=colour[n], lw=0.8, alpha=0.7, label=f"train loss, {lab}")
            va = g[g["kind"] == "val"]
            if loss_col in va.columns and not va.empty:
                ax.scatter(va["tokens"], va[loss_col], color=colour[n], marker="D", s=18, edgecolor="black",
                           linewidth=0.4, zorder=3, label=f"{loss_col} (checkpoint / cooldown)")
        ax.set_title(arm)
        ax.set_xlabel("tokens D")
        if c.empty:
            ax.text(0.5, 0.5, "no curves", transform=ax.transAxes, ha="center")
            continue
        readable_log_axis(ax, "x")
    axes[0][0].set_ylabel("loss")
    lo = np.nanquantile(curves["loss"].to_numpy(dtype=float), 0.01) if "loss" in curves else None
    hi = np.nanquantile(curves["loss"].to_numpy(dtype=float), 0.9) if "loss" in curves else None
    if lo is not None and np.isfinite(lo) and np.isfinite(hi) and hi > lo:
        axes[0][0].set_ylim(lo * 0.95, hi * 1.05)  # the first steps' loss would flatten everything else
    handles, labels = merged_legend_items(axes[0])
    # one marker entry for checkpoints, not one per size
    keep = [(h, lab) for h, lab in zip(handles, labels) if not lab.startswith(loss_col)]
    ck = [(h, lab) for h, lab in zip(handles, labels) if lab.startswith(loss_col)][:1]
    handles, labels = zip(*(keep + ck)) if keep or ck else ((), ())
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(handles)), frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
    return fig
