"""Compute-optimal frontier figures: N_opt and D_opt vs compute (both laws) and L(N, D) contours."""
from __future__ import annotations

import numpy as np

from scaling.flops import flops_6nd

from .fits.isoflop import IsoflopFit
from .fits.parametric import ParametricFit
from .paperstyle import arm_style, finish_opt_panels, merged_legend_items, readable_log_axis
from .study import arm_rows


def _get(entry, cls):
    return None if not entry or "error" in entry else cls.from_dict(entry)


def _c_range(df, fits):
    f = df["flops"].to_numpy(dtype=float)
    f = f[np.isfinite(f) & (f > 0)]
    return (f.min() / 1.5, f.max() * 10) if f.size else (1e18, 1e22)


def draw_compute_optimal(plt, df, fits):
    """Two panels (N_opt, D_opt vs C): isoFLOP minima (parabola and power-sum) with their power
    law, and the parametric law's frontier with its bootstrap band, per arm."""
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.6))
    cs = np.geomspace(*_c_range(df, fits), 100)
    for i, arm in enumerate(fits["arms"]):
        colour, marker = arm_style(arm, i)
        entry = fits["arms"][arm]
        par = _get(entry.get("parametric"), ParametricFit)
        for j, (ax, q) in enumerate(zip(axes, ("n_opt", "d_opt"))):
            for key, mk, fill in (("isoflop", marker, colour), ("isoflop_powersum", "x", colour)):
                iso = _get(entry.get(key), IsoflopFit)
                if iso is None:
                    continue
                pts = [(m.budget, getattr(m, q)) for m in iso.minima]
                name = iso.method if key == "isoflop" else "power-sum"
                ax.scatter(*zip(*pts), marker=mk, color=fill, s=22, zorder=3, label=f"{arm} isoFLOP minima ({name})")
                if key == "isoflop":
                    exp = iso.a if q == "n_opt" else iso.b
                    ax.plot(cs, getattr(iso, q)(cs), color=colour, ls=":", lw=1.2,
                            label=f"{arm} isoFLOP law (exponent {iso.a:.2f} / {iso.b:.2f})" if j == 0 else None)
                    del exp
            if par is not None:
                ax.plot(cs, getattr(par, q)(cs), color=colour, lw=1.5,
                        label=f"{arm} parametric law (a = {par.a:.2f}, b = {par.b:.2f})"
                        + (" (ill-conditioned)" if par.ill_conditioned else "") if j == 0 else None)
                band = par.bootstrap.get("band")
                if band and not par.ill_conditioned:  # an ill-conditioned band spans decades and hides the rest
                    ax.fill_between(band["C"], band[q][0], band[q][1], color=colour, alpha=0.15, lw=0,
                                    label=f"{arm} {par.bootstrap.get('level', 0.95):.0%} bootstrap band" if j == 0 else None)
            ax.set_xlim(cs[0], cs[-1])
    return finish_opt_panels(fig, axes, ncol=2, bottom=0.24)


def draw_parametric_contours(plt, df, fits):
    """Per arm: contours of the fitted L(N, D), the runs, and the compute-optimal frontier."""
    arms = list(fits["arms"])
    fig, axes = plt.subplots(1, len(arms), figsize=(4.0 * len(arms), 3.6), squeeze=False)
    loss_col = fits.get("loss_col", "val_loss_speech")
    for i, (ax, arm) in enumerate(zip(axes[0], arms)):
        colour, marker = arm_style(arm, i)
        par = _get(fits["arms"][arm].get("parametric"), ParametricFit)
        rows = arm_rows(df, arm)
        rows = rows[np.isfinite(rows[loss_col].to_numpy(dtype=float))] if loss_col in rows else rows.iloc[:0]
        if par is None or rows.empty:
            ax.text(0.5, 0.5, "no parametric fit", transform=ax.transAxes, ha="center")
            ax.set_title(arm)
            continue
        N, D = rows["params"].to_numpy(dtype=float), rows["tokens"].to_numpy(dtype=float)
        ns = np.geomspace(N.min() / 3, N.max() * 3, 120)
        ds = np.geomspace(D.min() / 3, D.max() * 3, 120)
        NN, DD = np.meshgrid(ns, ds)
        Z = par.predict(NN, DD)
        obs = rows[loss_col].to_numpy(dtype=float)
        # contour levels span the observed losses: an ill-conditioned law explodes off the data
        levels = np.unique(np.round(np.geomspace(obs.min() * 0.85, obs.max() * 1.15, 9), 3))
        cs = ax.contour(NN, DD, Z, levels=levels, cmap="viridis", linewidths=0.8)
        ax.clabel(cs, fmt="%.2f", fontsize=6, inline=True)
        ax.scatter(N, D, c=rows[loss_col], cmap="viridis", vmin=levels.min(), vmax=levels.max(), s=22,
                   edgecolor="black", linewidth=0.4, marker=marker, zorder=3, label="runs")
        C = np.geomspace(flops_6nd(ns[0], ds[0]), flops_6nd(ns[-1], ds[-1]), 200)
        fn, fd = par.n_opt(C), par.d_opt(C)
        inside = (fn >= ns[0]) & (fn <= ns[-1]) & (fd >= ds[0]) & (fd <= ds[-1])
        ax.plot(fn[inside], fd[inside], color="black", lw=1.5, label="compute-optimal frontier")
        ax.set_xlim(ns[0], ns[-1])
        ax.set_ylim(ds[0], ds[-1])
        readable_log_axis(ax, "x")
        readable_log_axis(ax, "y")
        ax.set_xlabel("parameters N")
        ax.set_ylabel("tokens D")
        ax.set_title(f"{arm}: L(N, D)" + (" (ill-conditioned)" if par.ill_conditioned else ""))
        ax.grid(False)
    handles, labels = merged_legend_items(axes[0])
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig
