"""Candidate grids for ``scaling design``: which sizes, which budgets, which tokens-per-parameter band,
how many seeds of each size.

A candidate is an isoFLOP grid as a sweep file states it (``models``, ``budgets``, ``constraints``'
tokens-per-parameter band), turned into points the way ``sweeps.grid.resolve`` does: D = C / (6 N)
rounded to whole sequences, points outside the band or under ``min_steps`` dropped; under ``wsd`` one
run per size to its largest kept budget with a cooldown branch at each smaller one, under ``cosine``
one run per point; a size with k seeds has k such runs (the sweep's ``replicates``). Its compute is counted as ``sweeps.plan.plan_totals`` counts it (6 N D of each run,
plus under wsd the decay tokens of every branch, ``cooldown_frac`` of the branch's length), and its
time on a given machine as compute / speed + a cost per run + a cost per point (evaluation),
spread over ``workers`` (no less than its longest run).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from scaling.flops import wsd_branch_tokens


@dataclass(frozen=True)
class Setting:
    """What the sweep template fixes: the schedule, token rounding and the per-run constraints."""

    schedule: str = "wsd"
    seq_len: int = 256
    tokens_per_step: int = 2048
    min_steps: int = 1
    cooldown_frac: float = 0.1
    flops_per_second: float = 0.0  # 0: no time model
    run_seconds: float = 0.0
    point_seconds: float = 0.0
    workers: int = 1

    def run_seconds_of(self, flops: float, n_points: int) -> float:
        """Time of one run in the time model: its compute at the speed, its fixed cost, its evaluations."""
        return flops / self.flops_per_second + self.run_seconds + self.point_seconds * n_points

    def grid_seconds(self, run_secs: list[float]) -> float:
        """Time of a grid's runs on ``workers`` workers (no less than its longest run)."""
        return max(sum(run_secs) / max(self.workers, 1), max(run_secs))


@dataclass
class Grid:
    models: tuple[str, ...]
    budgets: tuple[float, ...]
    band: tuple[float | None, float | None]  # min / max tokens per parameter
    seeds: dict = field(default_factory=dict)  # model -> runs per grid point (the sweep's replicates; absent: 1)
    N: np.ndarray = field(default=None, repr=False)
    D: np.ndarray = field(default=None, repr=False)
    C: np.ndarray = field(default=None, repr=False)
    runs: np.ndarray = field(default=None, repr=False)
    flops: float = math.nan
    seconds: float = math.nan
    valid: bool = True
    why: str = ""
    widths: dict = field(default_factory=dict)

    @property
    def n_points(self) -> int:
        return 0 if self.N is None else int(self.N.size)

    @property
    def n_runs(self) -> int:
        return 0 if self.runs is None else int(np.unique(self.runs).size)


def build(models, budgets, band, params: dict[str, float], s: Setting, seeds: dict | None = None) -> Grid:
    """The points, compute and time of a candidate (``valid`` False, with ``why``, when the sweep would
    refuse it or it leaves a model without points); ``seeds``: model -> runs per grid point (default 1)."""
    g = Grid(tuple(models), tuple(float(c) for c in budgets), tuple(band), dict(seeds or {}))
    lo, hi = band
    N, D, C, R = [], [], [], []
    flops = 0.0
    run_secs = []
    for m in models:
        n = float(params[m])
        kept = []
        for c in budgets:
            d = int(round(c / (6.0 * n) / s.seq_len)) * s.seq_len
            if d < s.tokens_per_step:
                continue
            steps = -(-d // s.tokens_per_step)
            if steps < s.min_steps or (lo is not None and d / n < lo) or (hi is not None and d / n > hi):
                continue
            if any(d == k[0] for k in kept):
                g.valid, g.why = False, f"two budgets give {m} the same token count"
                return g
            kept.append((d, c))
        if not kept:
            continue
        kept.sort()
        if s.schedule == "wsd":
            runs = [kept]
            trunk = kept[-1][0]
            tokens = trunk + wsd_branch_tokens([d for d, _ in kept[:-1]], s.cooldown_frac)
            run_flops = [6.0 * n * tokens]
        else:
            runs = [[k] for k in kept]
            run_flops = [6.0 * n * d for d, _ in kept]
        k = int(g.seeds.get(m, 1))
        for run, f in zip(runs * k, run_flops * k):
            rid = len(set(R))
            for d, c in run:
                N.append(n)
                D.append(float(d))
                C.append(c)
                R.append(rid)
            flops += f
            if s.flops_per_second > 0:
                run_secs.append(s.run_seconds_of(f, len(run)))
    if len(set(float(x) for x in N)) < 3 or len(N) < 8:
        g.valid, g.why = False, "fewer than 3 sizes or 8 points"
        return g
    g.N, g.D, g.C, g.runs = (np.asarray(v, dtype=float) for v in (N, D, C, R))
    g.flops = flops
    if run_secs:
        g.seconds = s.grid_seconds(run_secs)
    return g


def log_budgets(lo: float, hi: float, num: int) -> list[float]:
    """``num`` log-spaced budgets from lo to hi, to 4 significant digits (as a sweep file states them)."""
    if num == 1:
        return [float(f"{hi:.4g}")]
    return [float(f"{lo * (hi / lo) ** (i / (num - 1)):.4g}") for i in range(num)]


def seed_patterns(models, counts=(1,)) -> list[dict]:
    """Seeds per size of the search: every count in ``counts`` for all sizes, and for each count k > 1 also
    k seeds of the larger half of the sizes only (run-to-run scatter hurts the exponents most where the
    fewest points are: the largest sizes, which a diagonal band leaves few budgets). ``models`` are in
    ladder order, smallest first (as sweep files list them)."""
    out = []
    for k in sorted(set(int(c) for c in counts)):
        out.append({m: k for m in models} if k > 1 else {})
        if k > 1 and len(models) > 1:
            out.append({m: k for m in models[len(models) // 2:]})
    return out


def candidates(ladder: list[str], c_max: float, band: tuple, *, min_sizes: int = 3,
               top_factors=(0.5, 0.71, 1.0, 1.41), spans=(5.0, 10.0, 20.0), nums=(5, 7, 9, 11),
               lows=None, highs=None, seeds=(1,)):
    """(models, budgets, band, seeds) of the search: every subset of the ladder with at least ``min_sizes``
    sizes (contiguous runs and runs with gaps; for ladders over 10 sizes only contiguous ones), budgets
    log-spaced from c_top / span to c_top (c_top = c_max x each factor, ``nums`` of them), bands
    from ``lows`` x ``highs`` (default: the template's band and a few around it) and the seeds per
    size of :func:`seed_patterns` for the counts ``seeds``."""
    lo0, hi0 = band
    # an open bound of the template stays a candidate (None: no bound), beside a few bounds around it
    lows = lows or ([None] if lo0 is None else []) + sorted({float(x) for x in (lo0, 2.5, 5.0) if x is not None})
    highs = highs or ([None] if hi0 is None else []) + sorted({float(x) for x in (hi0, 400.0, 1600.0) if x is not None})
    k = len(ladder)
    if k <= 10:
        subsets = [c for r in range(min_sizes, k + 1) for c in itertools.combinations(ladder, r)]
    else:
        subsets = [tuple(ladder[i:j]) for i in range(k) for j in range(i + min_sizes, k + 1)]
    budget_sets = [log_budgets(c_max * f / span, c_max * f, num) for f in top_factors for span in spans for num in nums]
    bands = [(lo, hi) for lo in lows for hi in highs if lo is None or hi is None or lo < hi]
    for models in subsets:
        patterns = seed_patterns(models, seeds)
        for budgets in budget_sets:
            for b in bands:
                for p in patterns:
                    yield models, budgets, b, p
