"""Run-length deduplication of frame-level units (SIMS/SlamKit: repeated units collapsed,
durations kept in frames for word alignment)."""
from __future__ import annotations

import numpy as np


def dedup(units) -> tuple[np.ndarray, np.ndarray]:
    """Collapse consecutive repeats: ``[5,5,7,5] -> ([5,7,5], [2,1,1])`` (durations in frames)."""
    u = np.asarray(units, dtype=np.int64).reshape(-1)
    if u.size == 0:
        return u, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], u[1:] != u[:-1]]))
    durations = np.diff(np.concatenate([starts, [u.size]]))
    return u[starts], durations.astype(np.int64)


def expand(units, durations) -> np.ndarray:
    """Inverse of :func:`dedup`."""
    return np.repeat(np.asarray(units, dtype=np.int64), np.asarray(durations, dtype=np.int64))
