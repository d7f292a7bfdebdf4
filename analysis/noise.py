"""Run-level noise: the scatter of a study's log losses about its law, split into what a run shares
and what each point has of its own.

A wsd run gives several points (its end and its cooldown branches), and they share the run's
deviation from the law: its initialisation, data order and learning-curve slope. Modelled here, per
point i of run r, as

    log L_i = log L(N_i, D_i) + u_r + s_r (log D_i - c_r) + e_i,
    u_r ~ N(0, run_sd^2),  s_r ~ N(0, slope_sd^2),  e_i ~ N(0, point_sd^2)

with c_r the mean log D of the run's points. A cosine grid has one point per run: u and e cannot be
told apart there, and all of the scatter is reported as ``point_sd``.

The three variances are estimated by the method of moments on the residuals about the fitted law,
with the fit's own absorption of the noise taken into account (the law, linearised at the fit,
projects part of every run's deviation away: with 7 runs and 5 parameters, much of it). For a
residual vector r = M eps (M = I - J (J'J)^-1 J', J the Jacobian of the log law in its five
parameters), E[r' Q r] = sum_k var_k tr(Q M Z_k Z_k' M) + point_var tr(Q M) for any Q; three
quadratic forms (the total, within-run and within-run-after-a-line sums of squares) give a 3x3
linear system, solved with non-negative variances.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from scaling.errors import ConfigError


@dataclass(frozen=True)
class NoiseModel:
    """Standard deviations of the log loss: per run (an offset), per run and unit of log D (a slope about
    the run's mean log D) and per point; ``n_runs``/``n_points`` of the study they were estimated on."""

    run_sd: float = 0.0
    point_sd: float = 0.0
    slope_sd: float = 0.0
    n_runs: int = 0
    n_points: int = 0

    def __post_init__(self):
        for k in ("run_sd", "point_sd", "slope_sd"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ConfigError("must be a finite number >= 0", field=k, value=v)
        if self.run_sd == 0 and self.point_sd == 0 and self.slope_sd == 0:
            raise ConfigError("a noise model needs some noise (run_sd, point_sd or slope_sd > 0)", field="noise")

    @property
    def total_sd(self) -> float:
        """The sd of one point's log loss (the slope's part at one sd of a run's log D span is not included)."""
        return math.hypot(self.run_sd, self.point_sd)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, *, source=None, field: str = "noise") -> "NoiseModel":
        if not isinstance(d, dict):
            raise ConfigError("must be a mapping {run_sd, point_sd, slope_sd, ...}", source=source, field=field, value=d)
        try:
            return cls(**{k: d[k] for k in ("run_sd", "point_sd", "slope_sd", "n_runs", "n_points") if k in d})
        except ConfigError as e:
            raise ConfigError(e.reason, source=source, field=f"{field}.{e.field}", value=e.value) from None


def log_law(law, N, D) -> tuple[np.ndarray, np.ndarray]:
    """(J, f) of anything with the five attributes E, A, B, alpha, beta (a Law, a ParametricFit): d log L /
    d (log A, log B, log E, alpha, beta) at the points (n x 5), in the parameter order of
    :mod:`analysis.fits.parametric`, and the law's log losses there (:func:`analysis.fits.laplace.jacobian`;
    E = 0 gives a zero log E column)."""
    from .fits.laplace import jacobian

    with np.errstate(divide="ignore"):
        theta = np.array([np.log(law.A), np.log(law.B), np.log(law.E), law.alpha, law.beta], dtype=float)
    return jacobian(theta, np.log(np.asarray(N, dtype=float)), np.log(np.asarray(D, dtype=float)))


def log_jacobian(law, N, D) -> np.ndarray:
    """d log L / d (log A, log B, log E, alpha, beta) at the points (n x 5): the linearised law."""
    return log_law(law, N, D)[0]


def run_design(runs, D) -> tuple[np.ndarray, np.ndarray]:
    """Indicator (n x runs) and slope (n x runs: log D about the run's mean) matrices of the run effects."""
    runs = np.asarray(runs)
    _, idx = np.unique(runs, return_inverse=True)
    Z = np.zeros((idx.size, idx.max() + 1))
    Z[np.arange(idx.size), idx] = 1.0
    x = np.log(np.asarray(D, dtype=float))
    centred = x - (Z @ (Z.T @ x / Z.sum(0)))
    return Z, Z * centred[:, None]


def covariance(noise: NoiseModel, runs, D) -> np.ndarray:
    """The covariance of the points' log losses under ``noise`` (n x n)."""
    Z, S = run_design(runs, D)
    return noise.run_sd ** 2 * Z @ Z.T + noise.slope_sd ** 2 * S @ S.T + noise.point_sd ** 2 * np.eye(len(Z))


def _residual_maker(J: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(J / np.linalg.norm(J, axis=0))
    return np.eye(len(J)) - q @ q.T


def _within(Z: np.ndarray, X: np.ndarray | None = None) -> np.ndarray:
    """Projection onto what is left within runs after each run's mean (and, with X, its line)."""
    cols = [Z] if X is None else [Z, X]
    B = np.hstack(cols)
    keep = np.linalg.norm(B, axis=0) > 1e-12
    q, r = np.linalg.qr(B[:, keep])
    rank = int((np.abs(np.diag(r)) > 1e-9 * np.abs(np.diag(r)).max()).sum()) if r.size else 0
    q = q[:, :rank]
    return np.eye(len(Z)) - q @ q.T


def _nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min |Ax - b| over x >= 0 for a few columns, by trying every support (numpy only: `scaling fit` does
    not import scipy's optimisers)."""
    import itertools

    k = A.shape[1]
    best, best_r = np.zeros(k), float(b @ b)
    for r in range(1, k + 1):
        for cols in itertools.combinations(range(k), r):
            x, *_ = np.linalg.lstsq(A[:, cols], b, rcond=None)
            if (x >= 0).all():
                full = np.zeros(k)
                full[list(cols)] = x
                res = float(np.sum((A @ full - b) ** 2))
                if res < best_r - 1e-30:
                    best, best_r = full, res
    return best


def estimate_noise(law, N, D, L, runs) -> NoiseModel:
    """The noise model of a study from its log residuals about ``law`` (its fitted parametric law);
    ``runs`` names the run each point belongs to (results.csv's run_id: a run's end and its branches)."""
    N, D, L = (np.asarray(v, dtype=float) for v in (N, D, L))
    runs = np.asarray(runs).astype(str)
    if not (N.size == D.size == L.size == runs.size) or N.size < 7:
        raise ConfigError("needs at least 7 points with a run each", field="points", value=int(N.size))
    with np.errstate(all="ignore"):
        J, f = log_law(law, N, D)
        r = np.log(L) - f
    if not (np.isfinite(r).all() and np.isfinite(J).all()) or (np.linalg.norm(J, axis=0) == 0).any():
        raise ConfigError("the law's residuals or slopes are not finite at these points (a degenerate fit)",
                          field="parametric")
    M = _residual_maker(J)
    Z, S = run_design(runs, D)
    n_runs = Z.shape[1]
    comps = {"run": Z @ Z.T, "slope": S @ S.T, "point": np.eye(N.size)}
    forms = {"total": np.eye(N.size), "within": _within(Z), "line": _within(Z, S)}
    # identifiable components: a run effect needs runs with several points, a slope needs runs with 3+ points
    sizes = Z.sum(0)
    active = ["point"] + (["run"] if (sizes >= 2).any() and n_runs >= 2 else []) + (
        ["slope"] if (sizes >= 3).any() and n_runs >= 2 else [])
    use = {"point": ["total"], "run": ["total", "within"], "slope": ["total", "within", "line"]}[active[-1]]
    Mc = {k: M @ v @ M for k, v in comps.items()}
    A = np.array([[np.trace(forms[q] @ Mc[c]) for c in active] for q in use])
    b = np.array([r @ forms[q] @ r for q in use])
    try:
        got = dict(zip(active, _nnls(A, b)))
    except np.linalg.LinAlgError as e:
        raise ConfigError(f"the variance split has no solution ({e})", field="parametric") from None
    return NoiseModel(run_sd=float(math.sqrt(got.get("run", 0.0))), point_sd=float(math.sqrt(got.get("point", 0.0))),
                      slope_sd=float(math.sqrt(got.get("slope", 0.0))), n_runs=int(n_runs), n_points=int(N.size))


def draw(noise: NoiseModel, runs, D, rng: np.random.Generator) -> np.ndarray:
    """One study's log-loss deviations: a shared offset and slope per run plus each point's own."""
    Z, S = run_design(runs, D)
    g = Z.shape[1]
    return (Z @ rng.normal(0.0, noise.run_sd, g) + S @ rng.normal(0.0, noise.slope_sd, g)
            + rng.normal(0.0, noise.point_sd, Z.shape[0]))


def noise_record(par: dict, N, D, L, runs) -> dict:
    """``extra.noise`` of an arm's parametric fit in fits.json: the noise model of its points about the
    fitted law (:func:`estimate_noise`), or ``{"error": why}``."""
    from types import SimpleNamespace

    try:
        law = SimpleNamespace(**{k: float(par[k]) for k in ("E", "A", "B", "alpha", "beta")})
        return estimate_noise(law, N, D, L, runs).to_dict()
    except ConfigError as e:
        return {"error": str(e)}


def point_runs(rows) -> np.ndarray:
    """The run of every row of a results table (``run_id``: a run's end and its branches share it);
    a row without one is a run of its own."""
    n = len(rows)
    if "run_id" not in rows.columns:
        return np.array([f"row {i}" for i in range(n)])
    ids = np.asarray(rows["run_id"], dtype=object)
    return np.array([str(v) if isinstance(v, str) and v else f"row {i}" for i, v in enumerate(ids)])
