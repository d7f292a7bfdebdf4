"""Chinchilla approach 3: fit L(N, D) = E + A/N^alpha + B/D^beta to final losses.

The fit follows Hoffmann et al. (2022) as replicated by Besiroglu et al. (2024): minimise the
Huber loss (delta = 1e-3) of log-loss residuals

    r_i = LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i,   A = e^a, B = e^b, E = e^e

summed over points (``reduce="mean"`` averages instead, which reproduces Hoffmann's published
exponents and serves as a negative control), from a grid of 4,500 L-BFGS starts.

The objective is evaluated at all starts in one vectorised pass, and only a screened subset (by
default 256: the 128 lowest objectives plus the best few of every (alpha, beta) cell of the grid,
round-robin) is optimised. Those starts are optimised together: the objective is a sum of
independent per-start objectives, so one batched L-BFGS run with a vectorised analytic gradient
solves them at once; the best few distinct end points are then taken to convergence, and the
search widens when they do not agree (see :func:`fit_parametric`).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from scaling.errors import ConfigError

#: Parameter order used throughout: (a, b, e, alpha, beta).
PARAM_NAMES = ("a", "b", "e", "alpha", "beta")

#: Beyond this a fitted log-coefficient is a divergence, not a law (exp overflows near 709).
_MAX_LOG = 700.0
_RUNAWAY_LOG = 300.0  # log A or log B below this: the coefficient ran off towards 0 (see fit_parametric)
_NEGLIGIBLE = 1e-12  # a term below this share of the loss at every point is not identified by the data


def _term_share(log_coef: float, exponent: float, X: np.ndarray, L: np.ndarray) -> float:
    """The largest share of the loss one term coef / X^exponent takes over the points (in logs: no overflow)."""
    with np.errstate(over="ignore", invalid="ignore"):
        logs = log_coef - exponent * np.log(X) - np.log(L)
    m = float(np.nanmax(logs)) if logs.size else 0.0
    return math.exp(min(m, 0.0))


def default_grid() -> np.ndarray:
    """The published starting grid: 5 x 5 x 5 x 6 x 6 = 4,500 starts as rows of (a, b, e, alpha, beta)."""
    alphas = np.arange(0.0, 2.0 + 1e-9, 0.5)
    betas = np.arange(0.0, 2.0 + 1e-9, 0.5)
    es = np.arange(-1.0, 1.0 + 1e-9, 0.5)
    as_ = np.arange(0.0, 25.0 + 1e-9, 5.0)
    bs = np.arange(0.0, 25.0 + 1e-9, 5.0)
    rows = [(a, b, e, al, be) for al, be, e, a, b in itertools.product(alphas, betas, es, as_, bs)]
    return np.asarray(rows, dtype=float)


class _Objective:
    """Huber objective on log-loss residuals for a batch of parameter vectors, with its gradient.

    Written for speed: Huber's derivative is ``clip(r, -delta, delta)`` and its value
    ``dr * (r - dr / 2)``; batches are processed in chunks of :attr:`CHUNK` rows whose work arrays
    are allocated once and reused by every call (chunks of 64-256 rows timed the same); the clip of
    the exponent arguments at +-700 is skipped when no row of the chunk can reach it; and the
    screening pass computes each distinct A / N^alpha and B / D^beta row once (the start grid
    holds 30 of each for 4,500 starts). None of this changes a bit of the results (see
    :meth:`_chunk`). The work arrays make an instance unsafe to call from two threads at once.
    """

    CHUNK = 128

    def __init__(self, log_n, log_d, log_l, delta: float, reduce: str, weights=None, penalty: float = 1.0):
        n = log_n.size
        # Asymmetric loss: a residual where the law over-predicts (r > 0) costs ``penalty`` times
        # more (value and gradient). 1 is the symmetric Huber loss, computed without the extra step.
        self.penalty = float(penalty)
        # Optional (R, n) per-problem point weights (bootstrap counts) and per-problem log losses
        # (residual bootstrap); row r of a batch uses row rows[r] of each.
        self.weights = None if weights is None else np.asarray(weights, dtype=float)
        self.log_n = np.asarray(log_n, dtype=float)[None, :]
        self.log_d = np.asarray(log_d, dtype=float)[None, :]
        self.log_l = np.asarray(log_l, dtype=float)
        self.per_row_l = self.log_l.ndim == 2
        self.delta = float(delta)
        self.scale = 1.0 / n if reduce == "mean" else 1.0
        self.n_evals = 0  # parameter vectors evaluated, for diagnostics
        # a - alpha log N_i is monotone in log N_i, and so is its rounded value (rounding is
        # monotone): over a row it is extreme at the smallest and largest log N.
        self._n_ends = np.array([[self.log_n.min(), self.log_n.max()]])
        self._d_ends = np.array([[self.log_d.min(), self.log_d.max()]])
        self._work = np.empty((6, self.CHUNK, n))  # u1, u2, s, r, dr, tmp of one chunk

    def values(self, theta: np.ndarray) -> np.ndarray:
        """Objective only (no gradient), for screening starts; the same numbers as ``self(theta)[0]``."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        if self.weights is not None or self.per_row_l:
            return self(theta)[0]
        self.n_evals += theta.shape[0]
        # The exponent terms depend on (a, alpha) and (b, beta) only: compute each distinct one once.
        # Rows are compared bit for bit (but for the sign of a zero, which changes no term), so each
        # row gets exactly the numbers it would compute itself.
        pa, _, ia = _distinct_rows(theta[:, (0, 3)])
        pb, _, ib = _distinct_rows(theta[:, (1, 4)])
        with np.errstate(all="ignore"):
            t1 = self._power_term(pa[:, :1], pa[:, 1:], self.log_n, self._n_ends, np.empty((len(pa), self.log_n.size)))
            t2 = self._power_term(pb[:, :1], pb[:, 1:], self.log_d, self._d_ends, np.empty((len(pb), self.log_d.size)))
            c = self.CHUNK
            out = np.empty(theta.shape[0])
            for i in range(0, theta.shape[0], c):
                k = min(c, theta.shape[0] - i)
                u1, u2 = self._work[0, :k], self._work[1, :k]
                np.take(t1, ia[i:i + k], axis=0, out=u1)
                np.take(t2, ib[i:i + k], axis=0, out=u2)
                out[i:i + k] = self._chunk(theta[i:i + k], None, grad=False, terms=(u1, u2))
        return out

    def __call__(self, theta: np.ndarray, rows=None) -> tuple[np.ndarray, np.ndarray]:
        theta = np.atleast_2d(theta)
        self.n_evals += theta.shape[0]
        per_row = self.weights is not None or self.per_row_l
        if per_row and rows is None:
            rows = np.arange(theta.shape[0])
        c = self.CHUNK
        with np.errstate(all="ignore"):
            if theta.shape[0] <= c:
                return self._chunk(theta, rows)
            f = np.empty(theta.shape[0])
            g = np.empty((theta.shape[0], 5))
            for i in range(0, theta.shape[0], c):
                f[i:i + c], g[i:i + c] = self._chunk(theta[i:i + c], None if rows is None else rows[i:i + c])
        return f, g

    @staticmethod
    def _power_term(coef, expo, log_x, ends, out):
        """exp(clip(coef - expo log x, -700, 700)) per row, into ``out`` (A / N^alpha or B / D^beta)."""
        np.multiply(expo, log_x, out=out)
        np.subtract(coef, out, out=out)
        # exp arguments are capped at +-700: no overflow, and a start that far out is hopeless anyway.
        # The cap changes nothing (not a bit) when every row's extremes lie inside it; NaN fails the test.
        lim = coef - expo * ends
        if not ((lim >= -700.0) & (lim <= 700.0)).all():
            np.clip(out, -700.0, 700.0, out=out)
        return np.exp(out, out=out)

    def _chunk(self, theta, rows=None, grad: bool = True, terms=None):
        # Element-wise arithmetic and per-row sums only (no matrix products): a row's value and
        # gradient are then bitwise the same whatever else is in the batch, so the optimum found
        # does not depend on which or how many starts are refined together. The operations and
        # their order are those of the plain formulas; work arrays only avoid allocations.
        k = theta.shape[0]
        u1, u2, s, r, dr, tmp = (w[:k] for w in self._work)
        if terms is None:
            a, b, al, be = theta[:, 0:1], theta[:, 1:2], theta[:, 3:4], theta[:, 4:5]
            self._power_term(a, al, self.log_n, self._n_ends, u1)  # A / N^alpha
            self._power_term(b, be, self.log_d, self._d_ends, u2)  # B / D^beta
        else:  # computed by the caller (the screening pass)
            u1, u2 = terms
        u3 = np.exp(np.clip(theta[:, 2:3], -700.0, 700.0))  # E
        np.add(u1, u2, out=s)
        s += u3
        np.log(s, out=r)
        r -= self.log_l[rows] if self.per_row_l else self.log_l
        np.clip(r, -self.delta, self.delta, out=dr)  # Huber derivative
        np.multiply(dr, 0.5, out=tmp)
        r -= tmp
        r *= dr  # Huber value
        if self.penalty != 1.0:  # over-predictions (r > 0, so dr > 0) cost `penalty` times more
            np.copyto(tmp, 1.0)
            tmp[dr > 0] = self.penalty
            r *= tmp
            dr *= tmp
        if self.weights is not None:
            w = self.weights[rows]
            r *= w
            dr *= w
        f = r.sum(axis=1) * self.scale
        if not grad:
            return f
        dr /= s
        if self.scale != 1.0:
            dr *= self.scale
        u1 *= dr
        u2 *= dr
        g = np.empty((k, 5))
        g[:, 0] = u1.sum(axis=1)
        g[:, 3] = -np.multiply(u1, self.log_n, out=tmp).sum(axis=1)
        g[:, 1] = u2.sum(axis=1)
        g[:, 4] = -np.multiply(u2, self.log_d, out=tmp).sum(axis=1)
        g[:, 2] = u3[:, 0] * dr.sum(axis=1)
        return f, g


def _distinct_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct rows of ``x``, index of the first of each, index of each row among them).

    Rows are compared bit for bit, except that -0.0 equals 0.0 (as in a comparison of values)."""
    x = np.ascontiguousarray(x, dtype=float) + 0.0  # + 0.0 turns -0.0 into 0.0
    keys = x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return x[first], first, inverse.ravel()


def objective_and_grad(theta, log_n, log_d, log_l, delta: float, reduce: str = "sum", penalty: float = 1.0):
    """Per-start objectives (S,) and gradients (S, 5) for ``theta`` of shape (S, 5) = (a, b, e, alpha, beta);
    ``penalty``: the weight of over-predicting residuals (see :func:`fit_parametric`)."""
    obj = _Objective(np.ravel(log_n), np.ravel(log_d), np.ravel(log_l), delta, reduce, penalty=penalty)
    return obj(np.asarray(theta, dtype=float))


def batched_lbfgs(fun, x0: np.ndarray, *, m: int = 10, maxiter: int = 1000, gtol: float = 1e-5,
                  ftol: float = 2.220446049250313e-9, c1: float = 1e-4, max_ls: int = 30,
                  pass_rows: bool = False):
    """Minimise many independent smooth problems at once with L-BFGS.

    ``fun(X)`` maps an (S, P) batch to ((S,) values, (S, P) gradients). Each row keeps its own
    curvature history, Armijo backtracking step and stopping test (scipy's: max |g| <= gtol or a
    relative decrease <= ftol), and leaves the batch once it has converged, so the work shrinks
    as starts finish. Returns (x, f, converged, n_iter) with per-row arrays. With ``pass_rows``
    ``fun`` is called as ``fun(X, rows)``, ``rows`` the batch rows being evaluated (for problems
    that differ per row, such as bootstrap resamples).

    Implementation: the state of the rows still running is kept compacted (contiguous arrays,
    shrunk only on iterations where some row leaves), and the curvature pairs live in a ring
    buffer shared by all rows: every running row stores exactly one pair per iteration (an
    empty one, rho = 0, when the curvature test fails), so slot ``t % m`` is the newest for all.
    """
    x = np.array(x0, dtype=float)
    S, P = x.shape
    call = fun if pass_rows else (lambda X, _rows: fun(X))
    f, g = call(x, np.arange(S))
    f = np.where(np.isfinite(f), f, np.inf)
    g = np.array(g, dtype=float)
    done = ~np.isfinite(f) | (np.abs(g).max(axis=1) <= gtol)
    converged = done & np.isfinite(f)
    n_iter = np.zeros(S, dtype=int)
    act = np.flatnonzero(~done)  # original rows still running
    xa, fa, ga = x[act], f[act], g[act]
    hs = np.zeros((m, act.size, P))  # ring buffers of the (s, y) pairs
    hy = np.zeros((m, act.size, P))
    rho = np.zeros((m, act.size))  # 0 marks an empty / rejected pair: a no-op in the two-loop recursion
    gamma = np.ones(act.size)
    alph = np.empty((m, act.size))
    for t in range(maxiter):
        n = act.size
        if n == 0:
            break
        # Two-loop recursion over the stored pairs, newest first.
        slots = [(t - 1 - k) % m for k in range(min(t, m))]
        q = ga.copy()
        for k, j in enumerate(slots):
            alph[k] = rho[j] * np.einsum("ij,ij->i", hs[j], q)
            q -= alph[k][:, None] * hy[j]
        r = q
        r *= gamma[:, None]
        for k in range(len(slots) - 1, -1, -1):
            j = slots[k]
            bet = rho[j] * np.einsum("ij,ij->i", hy[j], r)
            r += hs[j] * (alph[k] - bet)[:, None]
        d = np.negative(r, out=r)
        gd = np.einsum("ij,ij->i", ga, d)
        bad_dir = ~(gd < 0)
        if bad_dir.any():  # fall back to steepest descent and forget the history
            d[bad_dir] = -ga[bad_dir]
            gd[bad_dir] = -np.einsum("ij,ij->i", ga[bad_dir], ga[bad_dir])
            rho[:, bad_dir] = 0.0
        if t == 0:
            step = 1.0 / np.maximum(np.linalg.norm(ga, axis=1), 1e-12)
        else:
            step = np.ones(n)
        xn = xa + step[:, None] * d
        fn, gn = call(xn, act)
        fn = np.array(fn, dtype=float)
        gn = np.array(gn, dtype=float)
        for _ls in range(max_ls):
            ok = np.isfinite(fn) & (fn <= fa + c1 * step * gd)
            if ok.all():
                break
            b = np.flatnonzero(~ok)
            # Quadratic interpolation of the step, safeguarded to [0.1, 0.5] of the current one.
            denom = 2.0 * (fn[b] - fa[b] - gd[b] * step[b])
            with np.errstate(all="ignore"):
                trial = -gd[b] * step[b] ** 2 / denom
            trial = np.where(np.isfinite(trial), trial, 0.5 * step[b])
            step[b] = np.clip(trial, 0.1 * step[b], 0.5 * step[b])
            xn[b] = xa[b] + step[b, None] * d[b]
            fn[b], gn[b] = call(xn[b], act[b])
        ok = np.isfinite(fn) & (fn <= fa + c1 * step * gd)
        n_iter[act] += 1
        # Rows whose line search failed stop where they are (scipy reports ABNORMAL_TERMINATION).
        with np.errstate(all="ignore"):
            sv, yv = xn - xa, gn - ga
            sy = np.einsum("ij,ij->i", sv, yv)
            yy = np.einsum("ij,ij->i", yv, yv)
            keep = ok & np.isfinite(sy) & (yy > 1e-200) & (sy > 1e-10 * yy)  # curvature condition
            j = t % m
            hs[j], hy[j] = sv, yv
            rho[j] = np.where(keep, 1.0 / np.where(keep, sy, 1.0), 0.0)
            gamma = np.where(keep, sy / np.where(keep, yy, 1.0), gamma)
            stop = ok & ((np.abs(gn).max(axis=1) <= gtol)
                         | ((fa - fn) <= ftol * np.maximum(np.maximum(np.abs(fa), np.abs(fn)), 1.0)))
        if ok.all():
            xa, fa, ga = xn, fn, gn
        else:
            xa = np.where(ok[:, None], xn, xa)
            fa = np.where(ok, fn, fa)
            ga = np.where(ok[:, None], gn, ga)
        converged[act[stop]] = True
        leave = stop | ~ok
        if leave.any():
            out = act[leave]
            x[out], f[out], g[out] = xa[leave], fa[leave], ga[leave]
            stay = ~leave
            act, xa, fa, ga = act[stay], xa[stay], fa[stay], ga[stay]
            hs, hy, rho, gamma = hs[:, stay], hy[:, stay], rho[:, stay], gamma[stay]
            alph = alph[:, :act.size]
    x[act], f[act], g[act] = xa, fa, ga
    return x, f, converged, n_iter


@dataclass
class ParametricFit:
    """Result of :func:`fit_parametric`: L(N, D) = E + A / N^alpha + B / D^beta."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float
    n_points: int
    n_starts: int
    converged: bool
    huber_delta: float
    reduce: str = "sum"
    message: str = ""
    extra: dict = field(default_factory=dict)
    #: 95% bootstrap intervals, name -> [low, high] (see :mod:`analysis.fits.bootstrap`); empty when not run.
    ci: dict = field(default_factory=dict)
    bootstrap: dict = field(default_factory=dict)  # n_resamples, n_failed, level, seed, ...
    #: Weight of residuals where the law over-predicts the observed loss (1: the symmetric Huber fit).
    overestimate_penalty: float = 1.0
    #: Laplace (sandwich covariance) intervals, name -> [low, high], and how they were made
    #: (:mod:`analysis.fits.laplace`); empty when not computed.
    ci_laplace: dict = field(default_factory=dict)
    laplace: dict = field(default_factory=dict)

    # Compute-optimal allocation (Hoffmann et al. eq. 4).
    @property
    def a(self) -> float:
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        """Compute-optimal coefficient; NaN where the fitted exponents admit no optimum (a non-positive
        base or exponent sum, e.g. a negative alpha from an ill-conditioned fit)."""
        base = self.alpha * self.A / (self.beta * self.B) if self.beta * self.B != 0 else float("nan")
        total = self.alpha + self.beta
        if not (base > 0 and total > 0):
            return float("nan")
        return float(base ** (1.0 / total))

    def predict(self, N, D):
        """Predicted loss for parameter count(s) N and token count(s) D (inf, or the other terms, where a
        power runs out of float range: an ill-conditioned law asked far outside its data)."""
        N = np.asarray(N, dtype=float)
        D = np.asarray(D, dtype=float)
        with np.errstate(over="ignore", divide="ignore"):  # N ** alpha overflowing to inf or underflowing to 0
            return self.E + self.A / N ** self.alpha + self.B / D ** self.beta

    def n_opt(self, C):
        """Compute-optimal parameter count for FLOP budget C (C = 6 N D)."""
        return self.G * (np.asarray(C, dtype=float) / 6.0) ** self.a

    def d_opt(self, C):
        """Compute-optimal token count for FLOP budget C."""
        return (1.0 / self.G) * (np.asarray(C, dtype=float) / 6.0) ** self.b

    def loss_opt(self, C):
        """Loss on the compute-optimal frontier, L(N_opt(C), D_opt(C))."""
        return self.predict(self.n_opt(C), self.d_opt(C))

    def diagnostics(self) -> list[str]:
        """Reasons to distrust this fit (empty when none): parameters far outside the start grid,
        exponents above 3, an irreducible loss pinned at 0, too few points, wide bootstrap intervals."""
        out = []
        la, lb = math.log(self.A) if self.A > 0 else -math.inf, math.log(self.B) if self.B > 0 else -math.inf
        if not (-5.0 <= la <= 35.0) or not (-5.0 <= lb <= 35.0):
            out.append(f"log A = {la:.3g} or log B = {lb:.3g} is far outside the start grid [0, 25]")
        for name in ("alpha", "beta"):
            v = getattr(self, name)
            if v > 3.0 or v <= 0.0:
                out.append(f"{name} = {v:.3g} is outside (0, 3]: the data do not constrain it")
        lmin = self.extra.get("loss_min")
        if self.E < 0.05 * (lmin if lmin else 1.0):
            out.append(f"E = {self.E:.3g} is pinned near 0")
        if self.n_points < 10:
            out.append(f"only {self.n_points} points for 5 parameters")
        for name in ("alpha", "beta", "a"):
            lo_hi = self.ci.get(name)
            if lo_hi and np.all(np.isfinite(lo_hi)) and (lo_hi[1] - lo_hi[0]) > max(0.5 * abs(getattr(self, name)), 0.1):
                out.append(f"bootstrap 95% interval of {name} is wide: [{lo_hi[0]:.3g}, {lo_hi[1]:.3g}]")
        bad = self.bootstrap.get("n_unconverged", 0) + self.bootstrap.get("n_failed", 0)
        if self.bootstrap and bad > 0.01 * self.bootstrap.get("n_resamples", 1):
            out.append(f"{bad} of {self.bootstrap['n_resamples']} bootstrap resamples did not converge: the intervals "
                       "may be too narrow")
        if not self.converged:
            out.append("optimiser did not report convergence")
        if self.extra.get("method") == "batched" and self.reduce == "sum" and self.extra.get("n_at_best", 2) < 2:
            out.append("the best minimum was reached from a single start, even after widening the search to "
                       f"{self.extra.get('n_refined')} starts")
        return out

    @property
    def ill_conditioned(self) -> bool:
        return bool(self.diagnostics())

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(a=self.a, b=self.b, G=self.G, diagnostics=self.diagnostics())
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ParametricFit":
        keys = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in keys}
        kw["ci"] = {k: list(v) for k, v in kw.get("ci", {}).items()}
        kw["ci_laplace"] = {k: list(v) for k, v in kw.get("ci_laplace", {}).items()}
        return cls(**kw)

    def summary(self) -> str:
        rows = [
            ("E", self.E), ("A", self.A), ("B", self.B), ("alpha", self.alpha), ("beta", self.beta),
            ("a = beta/(alpha+beta)", self.a), ("b = alpha/(alpha+beta)", self.b), ("G", self.G),
            ("objective", self.objective), ("n_points", self.n_points), ("starts", self._starts_line()),
            ("huber_delta", self.huber_delta), ("reduce", self.reduce), ("converged", self.converged),
        ]
        if self.overestimate_penalty != 1.0:
            rows.insert(-1, ("overestimate_penalty", self.overestimate_penalty))
        width = max(len(k) for k, _ in rows)
        level = self.bootstrap.get("level", 0.95)
        lines = ["Parametric fit  L(N,D) = E + A/N^alpha + B/D^beta", "-" * (width + 20)]
        for k, v in rows:
            vs = f"{v:.6g}" if isinstance(v, float) else str(v)
            ci = self.ci.get(k.split(" ")[0])
            lap = self.ci_laplace.get(k.split(" ")[0])
            if ci or lap:
                vs = f"{vs:<12}"
            if ci:
                vs += f"  [{ci[0]:.4g}, {ci[1]:.4g}]" + (" bootstrap" if lap else "")
            if lap:
                vs += f"  [{lap[0]:.4g}, {lap[1]:.4g}] Laplace"
            lines.append(f"{k:<{width}}  {vs}")
        if self.ci:
            lines.append(f"(intervals: {level:.0%} bootstrap, {self.bootstrap.get('n_resamples')} resamples)")
        if self.ci_laplace:
            lines.append(f"(Laplace intervals: {self.laplace.get('level', 0.95):.0%}, {self.laplace.get('method')})")
        for w in self.diagnostics():
            lines.append(f"CAUTION: {w}")
        return "\n".join(lines)

    def _starts_line(self) -> str:
        x = self.extra
        if "n_refined" not in x:
            return str(self.n_starts)
        if x.get("method") == "loop":
            return f"{self.n_starts} optimised one by one, {x.get('n_at_best')} at the best"
        return (f"{self.n_starts} evaluated, {x['n_refined']} refined, {x.get('n_polished', 0)} polished, "
                f"{x.get('n_at_best', 0)} of them at the best" + (" (search widened)" if x.get("widened") else ""))

    def __str__(self) -> str:
        return self.summary()


def _validate(params, tokens, loss):
    arrays = []
    for name, x in (("params", params), ("tokens", tokens), ("loss", loss)):
        x = np.asarray(x, dtype=float).ravel()
        if not np.all(np.isfinite(x)) or np.any(x <= 0):
            bad = x[~np.isfinite(x) | (x <= 0)][0]
            raise ConfigError("values must be finite and positive", field=name, value=float(bad))
        arrays.append(x)
    n = {a.size for a in arrays}
    if len(n) != 1:
        raise ConfigError(f"params, tokens and loss must have the same length (got {[a.size for a in arrays]})")
    return arrays


#: scipy's own L-BFGS-B defaults, used by the published fits. With reduce="mean" the objective is
#: n_points times smaller, so these absolute tolerances stop the optimiser early: that is the
#: mechanism behind Hoffmann et al.'s exponents (Besiroglu et al. 2024) and why "mean" is the
#: negative control rather than an equivalent objective.
SCIPY_GTOL = 1e-5
SCIPY_FTOL = 2.220446049250313e-09


#: Box for the optional bounded variant, in (a, b, e, alpha, beta): A, B in [1, e^40], E in
#: [0.05, 20], exponents in [0.01, 2.5]. Off by default: the published fits are unbounded.
DEFAULT_BOUNDS = ((0.0, 40.0), (0.0, 40.0), (-3.0, 3.0), (0.01, 2.5), (0.01, 2.5))


#: Starts optimised by the batched fit after screening all of them (see :func:`screen_starts`).
DEFAULT_SCREEN = 256


def screen_starts(starts: np.ndarray, f0: np.ndarray, k: int | None) -> np.ndarray:
    """Indices of at most ``k`` distinct starts worth optimising, given their objectives ``f0``.

    Half of them are the lowest objectives; the rest go round-robin over the (alpha, beta) cells
    of the grid (the best remaining start of every cell, then the second best, ...), so a basin
    reached only from unusual exponents is not screened out by a poor starting value. Duplicate
    starts and non-finite objectives are dropped. ``k=None`` keeps every distinct finite start.
    """
    starts = np.asarray(starts, dtype=float)
    order = _distinct_by_objective(starts, f0)
    if k is None or k >= order.size:
        return np.sort(order)
    return _screen_pick(starts, np.where(np.isfinite(f0), f0, np.inf), order, k)


def _distinct_by_objective(starts: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """Indices of the distinct starts (to 12 decimals; the first of equal ones) with a finite
    objective, lowest objective first (ties in index order)."""
    f0 = np.where(np.isfinite(f0), f0, np.inf)
    _, first, _ = _distinct_rows(np.round(starts, 12))
    order = np.sort(first)
    order = order[np.isfinite(f0[order])]
    return order[np.argsort(f0[order], kind="stable")]


def _screen_pick(starts: np.ndarray, f0: np.ndarray, order: np.ndarray, k: int) -> np.ndarray:
    """:func:`screen_starts`' pick of ``k`` from ``order`` (distinct finite starts, best first)."""
    n_top = k // 2
    rest = order[n_top:]
    _, _, cell = _distinct_rows(np.round(starts[rest, 3:5], 9))
    # rank of each remaining start within its cell (rest is already sorted by objective)
    by_cell = np.argsort(cell, kind="stable")
    sorted_cell = cell[by_cell]
    group_start = np.flatnonzero(np.r_[True, sorted_cell[1:] != sorted_cell[:-1]])
    sizes = np.diff(np.r_[group_start, rest.size])
    rank = np.empty(rest.size, dtype=int)
    rank[by_cell] = np.arange(rest.size) - np.repeat(group_start, sizes)
    pick = np.lexsort((f0[rest], rank))[: k - n_top]
    return np.sort(np.concatenate([order[:n_top], rest[pick]]))


#: Iterations of the batched refinement: enough to rank the starts' basins; the polish converges.
BATCHED_MAXITER = 100

#: Relative objective gap under which two polished candidates count as the same optimum.
AGREE_RTOL = 1e-9


def _screen_order(starts: np.ndarray, f0: np.ndarray, k: int | None) -> np.ndarray:
    """Every distinct finite start in refinement order: the :func:`screen_starts` pick of ``k``
    first, then the rest by objective (the order in which the search widens)."""
    every = _distinct_by_objective(starts, f0)  # best first
    if k is None or k >= every.size:
        return every
    first = _screen_pick(starts, np.where(np.isfinite(f0), f0, np.inf), every, k)
    rest = every[~np.isin(every, first)]
    return np.concatenate([first[np.argsort(f0[first], kind="stable")], rest])


def polish_tight(obj, x0: np.ndarray, *, maxiter: int = 15000, bounds=None, tolerances=None):
    """Take each row of ``x0`` to its minimum; returns (f, x, converged) per row (unscaled objective).

    scipy's default tolerances are absolute (ftol compares the decrease with max(|f|, 1)), and a
    Huber objective with delta 1e-3 is ~1e-4: the published loop stops 1e-5 to 1e-2 (relative)
    above the minimum it is heading for. Here each row's objective is divided by its starting
    value, so the stopping test is relative (decrease <= 1e-14 f, or max |gradient| <= 1e-10 f),
    and candidates are compared at their minima. The rows run together in :func:`batched_lbfgs`;
    with ``bounds``, one bounded scipy L-BFGS-B per row instead. ``tolerances=(gtol, ftol)``
    instead runs scipy's L-BFGS-B on the unscaled objective with those (absolute) tolerances.
    """
    x0 = np.atleast_2d(np.asarray(x0, dtype=float))
    f_start = obj(x0)[0]
    scale = np.where(np.isfinite(f_start) & (f_start > 0), 1.0 / np.where(f_start > 0, f_start, 1.0), 1.0)
    gtol, ftol = 1e-10, 1e-14
    if tolerances is not None:
        scale, (gtol, ftol) = np.ones_like(scale), tolerances
    if bounds is None and tolerances is None:
        def fun(X, rows):
            f, g = obj(X)
            return f * scale[rows], g * scale[rows][:, None]

        x, _, conv, _ = batched_lbfgs(fun, x0, m=20, gtol=1e-10, ftol=1e-14, maxiter=maxiter, pass_rows=True)
    else:
        # scipy only here and in the loop: the default path needs no scipy (a faster `scaling fit`)
        from scipy.optimize import minimize

        xs, conv = [], []
        for i, x_start in enumerate(x0):
            def single(x, s=scale[i]):
                f, g = obj(x[None, :])
                return (f[0] * s, g[0] * s) if np.isfinite(f[0]) else (np.inf, np.zeros(5))

            r = minimize(single, x_start, jac=True, method="L-BFGS-B", bounds=bounds,
                         options={"gtol": gtol, "ftol": ftol, "maxiter": maxiter})
            xs.append(r.x)
            conv.append(bool(r.success))
        x, conv = np.asarray(xs), np.asarray(conv)
    f = obj(x)[0]
    return np.where(np.isfinite(f), f, np.inf), x, conv


def check_penalty(value) -> float:
    """``value`` as an ``overestimate_penalty``: a finite number >= 1, else a ConfigError."""
    try:
        penalty = float(value)
    except (TypeError, ValueError):
        penalty = math.nan
    if not 1.0 <= penalty < math.inf:  # nan fails too
        raise ConfigError("overestimate_penalty must be a finite number >= 1 (1: the symmetric fit)",
                          field="overestimate_penalty", value=value)
    return penalty


def fit_parametric(params, tokens, loss, *, huber_delta: float = 1e-3, reduce: str = "sum",
                   grid=None, method: str = "batched", polish: int = 8, gtol: float = SCIPY_GTOL,
                   ftol: float = SCIPY_FTOL, maxiter: int = 15000, bounds=None,
                   screen: int | None = DEFAULT_SCREEN, overestimate_penalty: float = 1.0) -> ParametricFit:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta by Huber regression on log-loss (Chinchilla approach 3).

    ``grid``: (S, 5) starts in the order (a, b, e, alpha, beta); default the published 4,500.
    ``method="loop"`` is the published procedure and the reference: one scipy L-BFGS-B call per
    start (scipy's default tolerances), the lowest objective kept.

    ``method="batched"`` (default) finds a minimum at least as low as the loop's:

    1. the objective is evaluated at every start in one vectorised pass;
    2. ``screen`` distinct starts (default :data:`DEFAULT_SCREEN` = 256: half the lowest
       objectives, the rest the best of each (alpha, beta) cell of the grid in turn, see
       :func:`screen_starts`) are refined together by :func:`batched_lbfgs` with scipy's tolerances;
    3. the ``polish`` best distinct end points are taken to convergence one by one
       (:func:`polish_tight`: scipy's absolute tolerances stop 1e-5 to 1e-2 above the minimum on
       a Huber objective of ~1e-4, which is how the loop itself can miss the optimum; with
       ``reduce="mean"``, the negative control, scipy's own tolerances are kept, since their early
       stop is the effect it reproduces);
    4. the search widens (4x the starts, then all of them) when the polished candidates disagree:
       when fewer than two of them reach the best objective (to :data:`AGREE_RTOL`), the best
       minimum was found from a single start and others may be out there (not with
       ``reduce="mean"``, whose candidates stop early by design and never agree).

    The result says what was done: ``n_starts`` (evaluated), ``extra["n_refined"]``,
    ``extra["n_polished"]``, ``extra["n_at_best"]`` (polished candidates at the best objective) and
    ``extra["widened"]``. ``screen=None`` (or at least the number of starts) refines every start.

    ``bounds`` (off by default; ``True`` means :data:`DEFAULT_BOUNDS`, or give five (low, high)
    pairs) is a guard for small, ill-conditioned sweeps: the objective is unchanged, but the
    optimum is searched inside the box (the batched end points are clipped into it and polished by
    bounded L-BFGS-B). Use it only when :meth:`ParametricFit.diagnostics` flags the unbounded
    fit, and say so.

    ``overestimate_penalty`` K >= 1 (default 1: the symmetric fit, unchanged to the bit) makes the
    loss asymmetric, as OLMo-core's ladder fits do for ladders whose smallest rungs are under-tuned:
    a residual where the law over-predicts the observed loss (predicted > observed) costs K times
    the Huber loss of the same residual below the law. The law then follows the lower envelope of
    the points, and an under-trained rung lying above it pulls it less.
    """
    if bounds is True:
        bounds = DEFAULT_BOUNDS
    if bounds is not None:
        bounds = tuple((float(lo), float(hi)) for lo, hi in bounds)
        if len(bounds) != 5 or any(not lo < hi for lo, hi in bounds):
            raise ConfigError("bounds must be five (low, high) pairs with low < high", field="bounds", value=bounds)
    if reduce not in ("sum", "mean"):
        raise ConfigError("reduce must be 'sum' or 'mean'", field="reduce", value=reduce)
    if screen is not None and (int(screen) != screen or screen < 1):
        raise ConfigError("screen must be a positive integer or None", field="screen", value=screen)
    if method not in ("batched", "loop"):
        raise ConfigError("method must be 'batched' or 'loop'", field="method", value=method)
    if not huber_delta > 0:
        raise ConfigError("huber_delta must be positive", field="huber_delta", value=huber_delta)
    penalty = check_penalty(overestimate_penalty)
    N, D, L = _validate(params, tokens, loss)
    if N.size < 5:
        raise ConfigError(f"parametric fit has 5 parameters and needs at least 5 points, got {N.size}",
                          field="n_points", value=int(N.size))
    obj = _Objective(np.log(N), np.log(D), np.log(L), huber_delta, reduce, penalty=penalty)
    starts = default_grid() if grid is None else np.atleast_2d(np.asarray(grid, dtype=float))
    if starts.ndim != 2 or starts.shape[1] != 5:
        raise ConfigError("grid must have 5 columns (a, b, e, alpha, beta)", field="grid", value=starts.shape)
    S = starts.shape[0]
    lo = hi = None
    if bounds is not None:
        lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
        starts = np.clip(starts, lo, hi)
    extra: dict = {"method": method}
    if method == "loop":
        def single(x):
            f, g = obj(x[None, :])
            return (f[0], g[0]) if np.isfinite(f[0]) else (np.inf, np.zeros(5))

        from scipy.optimize import minimize

        opts = {"gtol": gtol, "ftol": ftol, "maxiter": maxiter}
        cands = []
        for x0 in starts:
            r = minimize(single, x0, jac=True, method="L-BFGS-B", options=opts, bounds=bounds)
            cands.append((float(r.fun), r.x, bool(r.success), str(r.message)))
        best_f, best_x, best_ok, best_msg = min(cands, key=lambda c: c[0] if np.isfinite(c[0]) else np.inf)
        extra.update(n_refined=S, n_polished=0, n_at_best=int(sum(
            c[0] <= best_f * (1 + 1e-6) for c in cands if np.isfinite(c[0]))), widened=False)
    else:
        best_f, best_x, best_ok, best_msg, info = _batched_search(obj, starts, screen, polish, gtol, ftol,
                                                                  maxiter, bounds, lo, hi, tight=reduce == "sum")
        extra.update(info)
    if not np.isfinite(best_f):
        raise ConfigError("parametric fit failed: no start reached a finite objective")
    a, b, e, alpha, beta = (float(v) for v in best_x)
    if max(a, b, e) > _MAX_LOG:
        # the objective keeps falling as a coefficient grows without bound: the data do not pin the law down
        raise ConfigError(f"the parametric fit diverged (log A = {a:.0f}, log B = {b:.0f}, log E = {e:.0f}, alpha = "
                          f"{alpha:.3g}, beta = {beta:.3g}): {len(L)} runs do not constrain L(N, D); add sizes or budgets, "
                          "or use --bounded and read the isoFLOP and envelope fits")
    # a term's coefficient falls towards 0 while its exponent runs off (alpha = -897 with log A = -900 on the quick
    # demo's 9 points; scipy 1.17 stops at alpha = -55, log A = -670: a wall at the largest size): the term is not
    # identified, and a vanishing A cannot be reported or resampled. A coefficient below e^-300 is such a run-off
    # whatever the optimizer's stopping point; so is a term below 1e-12 of the loss at every point
    negligible = max(_term_share(a, alpha, N, L), _term_share(b, beta, D, L)) < _NEGLIGIBLE
    if min(a, b) < -_RUNAWAY_LOG or negligible:
        raise ConfigError(f"the parametric fit is degenerate (log A = {a:.0f}, log B = {b:.0f}, alpha = {alpha:.3g}, "
                          f"beta = {beta:.3g}): a coefficient underflows to 0, so {len(L)} runs do not identify that "
                          "term; add sizes or budgets, or use --bounded and read the isoFLOP and envelope fits")
    extra.update({"n_evals": int(obj.n_evals),
                  "screen": None if method == "loop" or screen is None else int(screen),
                  "bounds": None if bounds is None else [list(b) for b in bounds],
                  "loss_min": float(L.min()), "n_range": [float(N.min()), float(N.max())],
                  "d_range": [float(D.min()), float(D.max())],
                  # the scatter of the points about the law (the noise a power analysis of a next grid assumes)
                  "log_residual_rms": float(np.sqrt(np.mean((np.log(L) - np.log(
                      math.exp(e) + math.exp(a) / N ** alpha + math.exp(b) / D ** beta)) ** 2)))})
    return ParametricFit(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=alpha, beta=beta,
                         objective=best_f, n_points=int(N.size), n_starts=int(S), converged=best_ok,
                         huber_delta=float(huber_delta), reduce=reduce, message=best_msg, extra=extra,
                         overestimate_penalty=penalty)


def _distinct_best(xs: np.ndarray, fs: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` lowest finite objectives whose end points differ (max |dx| >= 1e-6)."""
    out: list[int] = []
    for i in np.argsort(fs, kind="stable"):
        if len(out) >= k or not np.isfinite(fs[i]):
            break
        if all(np.max(np.abs(xs[i] - xs[j])) >= 1e-6 for j in out):
            out.append(int(i))
    return out


def _batched_search(obj, starts, screen, polish, gtol, ftol, maxiter, bounds, lo, hi, tight=True):
    """Steps 2-4 of :func:`fit_parametric`'s batched method; returns (f, x, ok, message, info)."""
    f0 = obj.values(starts)
    order = _screen_order(starts, f0, screen)
    if order.size == 0:
        raise ConfigError("parametric fit failed: no start reached a finite objective")
    first = order.size if screen is None else min(int(screen), order.size)
    stages = [first]
    while stages[-1] < order.size:
        stages.append(min(4 * stages[-1], order.size))
    xs = np.empty((0, 5))
    fs = np.empty(0)
    conv = np.empty(0, dtype=bool)
    polished: dict[int, tuple] = {}  # index into xs -> (f, x, ok, message)
    n_done = 0
    for k in stages:
        new = starts[order[n_done:k]]
        n_done = k
        x, f, c, _ = batched_lbfgs(obj, new, gtol=gtol, ftol=ftol, maxiter=min(maxiter, BATCHED_MAXITER))
        if bounds is not None:  # clip into the box and re-score; the grid starts compete too
            x = np.concatenate([np.clip(x, lo, hi), new])
            f = obj(x)[0]
            c = np.zeros(x.shape[0], dtype=bool)
        xs, fs = np.concatenate([xs, x]), np.concatenate([fs, np.where(np.isfinite(f), f, np.inf)])
        conv = np.concatenate([conv, c])
        todo = [i for i in _distinct_best(xs, fs, max(1, polish)) if i not in polished]
        if todo:
            pf, px, pc = polish_tight(obj, xs[todo], maxiter=maxiter, bounds=bounds,
                                      tolerances=None if tight else (gtol, ftol))
            for j, i in enumerate(todo):
                polished[i] = (float(pf[j]), px[j], bool(pc[j]), "converged" if pc[j] else "stopped")
        # Candidates: every batched end point and every polished one.
        cands = [(fs[i], xs[i], bool(conv[i]), "batched L-BFGS") for i in range(xs.shape[0])]
        cands += [(p[0], p[1], p[2], "polished: " + p[3]) for p in polished.values()]
        best = min(cands, key=lambda c_: c_[0] if np.isfinite(c_[0]) else np.inf)
        pol_f = np.array([p[0] for p in polished.values()])
        n_at_best = int(np.sum(pol_f <= best[0] * (1 + AGREE_RTOL) + 1e-300))
        # Two distinct end points polished to the same minimum: stop. Without the tight polish
        # (the "mean" negative control) candidates stop early and never agree: no widening.
        if n_at_best >= 2 or not tight:
            break
    info = {"n_refined": int(n_done), "n_polished": len(polished), "n_at_best": n_at_best,
            "widened": len(stages) > 1 and n_done > stages[0]}
    return float(best[0]), best[1], best[2], best[3], info
