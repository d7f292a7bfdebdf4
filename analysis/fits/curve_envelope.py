"""Chinchilla approach 1: the lower envelope of loss over compute across training curves.

For each of ``n_bins`` log-spaced compute values we take, over all runs whose curve reaches that
compute, the lowest (interpolated in log FLOPs) loss; the run achieving it gives N_opt(C) and
D_opt(C) = its tokens at C. Power laws N_opt = k_n C^a and D_opt = k_d C^b are fitted through
those points. Training-loss curves are noisy on small sweeps, so each curve is smoothed by a
centred running mean (``smooth`` points) before the envelope is taken.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from scaling.errors import ConfigError

from .powerlaw import fit_powerlaw


@dataclass
class CurveEnvelopeFit:
    a: float
    b: float
    k_n: float
    k_d: float
    r2_n: float
    r2_d: float
    loss_col: str
    points: list = field(default_factory=list)  # [C, loss, N, D]

    def n_opt(self, C):
        return self.k_n * np.asarray(C, dtype=float) ** self.a

    def d_opt(self, C):
        return self.k_d * np.asarray(C, dtype=float) ** self.b

    predict = n_opt

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CurveEnvelopeFit":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def __str__(self) -> str:
        return (f"approach 1 ({self.loss_col}): N_opt = {self.k_n:.4g} C^{self.a:.4f}, "
                f"D_opt = {self.k_d:.4g} C^{self.b:.4f} ({len(self.points)} compute values)")


def fit_curve_envelope(curves: pd.DataFrame, *, loss_col: str = "loss", n_bins: int = 30,
                       smooth: int = 5, min_fraction: float = 0.1) -> CurveEnvelopeFit:
    """Approach 1 on a :func:`analysis.curves.load_curves` table (rows with finite ``loss_col``).

    Compute values below ``min_fraction`` of each run's final compute are ignored (warm-up).
    """
    need = {"run_id", "params", "tokens", "flops", loss_col}
    if missing := need - set(curves.columns):
        raise ConfigError(f"training curves lack column(s) {', '.join(sorted(missing))}")
    per_run = []
    key = "curve" if "curve" in curves.columns else "run_id"  # a wsd run's branches are curves of their own
    for _, g in curves[np.isfinite(curves[loss_col].to_numpy(dtype=float))].groupby(key):
        g = g.sort_values("flops")
        f, loss, tok = (g[c].to_numpy(dtype=float) for c in ("flops", loss_col, "tokens"))
        ok = f > min_fraction * f.max()
        if ok.sum() < 2:
            continue
        if smooth > 1:
            loss = pd.Series(loss).rolling(smooth, center=True, min_periods=1).mean().to_numpy()
        per_run.append((np.log(f[ok]), loss[ok], np.log(tok[ok]), float(g["params"].iloc[0])))
    if len(per_run) < 2:
        raise ConfigError(f"approach 1 needs at least two runs with a curve in '{loss_col}', got {len(per_run)}")
    lo = min(r[0][0] for r in per_run)
    hi = max(r[0][-1] for r in per_run)
    pts = []
    for x in np.linspace(lo, hi, n_bins):
        best = None
        for lf, loss, lt, n in per_run:
            if lf[0] <= x <= lf[-1]:
                v = float(np.interp(x, lf, loss))
                if best is None or v < best[1]:
                    best = (float(np.exp(x)), v, n, float(np.exp(np.interp(x, lf, lt))))
        if best:
            pts.append(list(best))
    if len({p[2] for p in pts}) < 2:
        raise ConfigError("approach 1: one model is best at every compute value; N_opt has no trend to fit")
    pn = fit_powerlaw([p[0] for p in pts], [p[2] for p in pts], name="approach 1 N_opt")
    pd_ = fit_powerlaw([p[0] for p in pts], [p[3] for p in pts], name="approach 1 D_opt")
    return CurveEnvelopeFit(a=pn.p, b=pd_.p, k_n=pn.k, k_d=pd_.k, r2_n=pn.r2, r2_d=pd_.r2, loss_col=loss_col, points=pts)
