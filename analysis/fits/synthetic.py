"""Known laws and the noisy isoFLOP grids drawn from them: the ground truth of the fit benchmarks.

A fit (or an interval) can only be checked against a law whose parameters are known. This module
draws realistic laws L(N, D) = E + A/N^alpha + B/D^beta (exponents and loss scales in the range of
the published fits) and isoFLOP grids from them: ``n_budgets`` budgets two orders of magnitude
apart, ``n_sizes`` model sizes per budget spread over a factor ``spread`` around the true
compute-optimal size (or off-centre by ``shift``), losses with log-normal noise. Used by
``benchmarks/bench_coverage.py``, ``benchmarks/bench_parametric.py --laws`` and their tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Law:
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    @property
    def a(self) -> float:
        return self.beta / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def loss(self, N, D):
        return self.E + self.A / np.asarray(N, dtype=float) ** self.alpha + self.B / np.asarray(D, dtype=float) ** self.beta

    def n_opt(self, C):
        return self.G * (np.asarray(C, dtype=float) / 6.0) ** self.a

    def truth(self) -> dict:
        """The values a fit's intervals should cover (names as in :data:`analysis.fits.bootstrap.CI_NAMES`)."""
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta, "a": self.a}


def random_law(rng: np.random.Generator) -> Law:
    """A law in the range of published LM fits: E in [1.5, 2.5], exponents in [0.2, 0.6], and the
    two reducible terms worth 0.2-1.5 nats at N = 1e9, D = 2e10."""
    alpha, beta = rng.uniform(0.2, 0.6, 2)
    E = rng.uniform(1.5, 2.5)
    A = rng.uniform(0.2, 1.5) * 1e9 ** alpha
    B = rng.uniform(0.2, 1.5) * 2e10 ** beta
    return Law(E=float(E), A=float(A), B=float(B), alpha=float(alpha), beta=float(beta))


def isoflop_grid(law: Law, rng: np.random.Generator, *, n_budgets: int = 5, n_sizes: int = 5,
                 c_min: float = 1e18, decades: float = 2.0, spread: float = 10.0, shift: float = 1.0,
                 noise: float = 0.01):
    """(budget, N, D, L) arrays of an isoFLOP grid from ``law``: per budget, ``n_sizes`` sizes
    log-spaced over a factor ``spread`` centred on ``shift`` x the true N_opt, D = C / 6N, and
    L = law(N, D) x exp(noise x standard normal)."""
    budgets = np.geomspace(c_min, c_min * 10 ** decades, n_budgets)
    rows = []
    for C in budgets:
        centre = law.n_opt(C) * shift
        for N in centre * np.geomspace(spread ** -0.5, spread ** 0.5, n_sizes):
            rows.append((C, N, C / (6.0 * N)))
    C, N, D = (np.array(v) for v in zip(*rows))
    L = law.loss(N, D) * np.exp(noise * rng.standard_normal(N.size))
    return C, N, D, L


def optimum_case(seed: int):
    """Case ``seed`` of the global-optimum benchmark (``benchmarks/bench_parametric.py --laws``):
    (law, N, D, L) on a 20-point isoFLOP grid (4 budgets x 5 sizes), centred or off-centre by 3x,
    0.3-2% noise, smallest budget between 1e17 and 1e19."""
    rng = np.random.default_rng(seed)
    law = random_law(rng)
    shift = float(rng.choice([1 / 3, 1.0, 3.0]))
    noise = float(rng.uniform(0.003, 0.02))
    c_min = float(10 ** rng.uniform(17, 19))
    _, N, D, L = isoflop_grid(law, rng, n_budgets=4, n_sizes=5, c_min=c_min, shift=shift, noise=noise)
    return law, N, D, L
