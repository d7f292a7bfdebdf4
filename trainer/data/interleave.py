"""Word-level speech-text interleaving as in SIMS (REFERENCE section 1).

Speech spans have Poisson(lambda) word lengths, never overlap or touch, and cover exactly
round(ratio x words) words: unlike the public code, the last span is truncated, so short
utterances get 30% too. A marker opens the sequence and every modality switch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scaling.datadir import FRAME_S



@dataclass(frozen=True)
class Span:
    modality: str  # "speech" | "text"
    start: int  # first word index
    end: int  # one past the last word index


def _poisson_lengths(rng: np.random.Generator, target: int, lam: float) -> list[int]:
    lengths, total = [], 0
    while total < target:
        n = max(1, int(rng.poisson(lam)))
        n = min(n, target - total)  # truncate the last span: the ratio must hold exactly
        lengths.append(n)
        total += n
    return lengths


def plan_spans(n_words: int, rng: np.random.Generator, ratio: float = 0.3, lam: float = 10.0) -> list[Span]:
    """Split ``n_words`` into alternating text/speech spans with ``round(ratio*n)`` speech words."""
    if n_words <= 0:
        return []
    target = int(math.floor(ratio * n_words + 0.5))
    if target == 0:
        return [Span("text", 0, n_words)]
    lengths = _poisson_lengths(rng, target, lam)
    n_text = n_words - target
    # Spans must not touch: m spans need m-1 separating text words. Merge spans until they fit.
    while len(lengths) > 1 and len(lengths) - 1 > n_text:
        lengths[-2] += lengths.pop()
    m = len(lengths)
    rng.shuffle(lengths)
    # Distribute the text words over m+1 gaps, inner gaps >= 1 (random composition).
    free = n_text - (m - 1)
    cuts = np.sort(rng.integers(0, free + 1, size=m))
    gaps = np.diff(np.concatenate([[0], cuts, [free]])).tolist()
    for i in range(1, m):
        gaps[i] += 1
    spans, pos = [], 0
    for i in range(m):
        if gaps[i]:
            spans.append(Span("text", pos, pos + gaps[i]))
            pos += gaps[i]
        spans.append(Span("speech", pos, pos + lengths[i]))
        pos += lengths[i]
    if gaps[m]:
        spans.append(Span("text", pos, pos + gaps[m]))
    return spans


def unit_times(durations) -> tuple[np.ndarray, np.ndarray]:
    """Start and end time (seconds) of each deduplicated unit, from its run length in 25 Hz frames."""
    d = np.asarray(durations, dtype=np.int64)
    ends = np.cumsum(d) * FRAME_S
    return ends - d * FRAME_S, ends


def units_overlapping(times: tuple[np.ndarray, np.ndarray], t0: float, t1: float) -> tuple[int, int]:
    """Indices [i, j) of the units (``times`` = :func:`unit_times`) whose time interval overlaps [t0, t1)."""
    starts, ends = times
    eps = 1e-9
    i = int(np.searchsorted(ends, t0 + eps, side="right"))
    j = int(np.searchsorted(starts, t1 - eps, side="left"))
    return i, max(i, j)


def unit_range(durations, t0: float, t1: float) -> tuple[int, int]:
    """Indices [i, j) of the deduplicated units whose time interval overlaps [t0, t1)."""
    return units_overlapping(unit_times(durations), t0, t1)
