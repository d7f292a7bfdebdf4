"""Token-balanced mixing of packed streams.

Every training sequence is a window of ``seq_len`` tokens cut from one stream's flat token
array. Sequence k goes to the stream with the largest deficit against its target share,
so after any number of sequences each stream's token count is within one sequence of its
share (equal shares = equal token counts, as in SIMS). Within a stream, windows are visited
in a seeded permutation, one fresh permutation per epoch. The whole order is a pure
function of (seed, position), which makes the data position trivially resumable.
"""
from __future__ import annotations

import numpy as np

from scaling.datadir import MIX_STREAMS, shard_name
from scaling.errors import ConfigError


class Mixture:
    def __init__(self, streams: dict[str, np.ndarray], shares: dict[str, float], seq_len: int, seed: int):
        self.names = sorted(shares)
        total = float(sum(shares.values()))
        self.shares = np.array([shares[n] / total for n in self.names])
        self.seq_len = seq_len
        self.seed = seed
        self.arrays = [streams[n] for n in self.names]
        self.n_windows = [len(a) // seq_len for a in self.arrays]
        for n, w in zip(self.names, self.n_windows):
            if w == 0:
                raise ConfigError(f"stream has fewer tokens than one sequence of {seq_len}", field=f"streams.{n}", value=len(streams[n]))
        self._perms: dict[tuple[int, int], np.ndarray] = {}
        self._pos, self._counts = 0, np.zeros(len(self.names), dtype=np.int64)

    def _advance_to(self, n: int) -> None:
        """Move the cached greedy state to position n (replaying from 0 only when going back)."""
        if n < self._pos:
            self._pos, self._counts = 0, np.zeros(len(self.names), dtype=np.int64)
        while self._pos < n:
            self._step()

    def _step(self) -> int:
        self._pos += 1
        s = int(np.argmax(self.shares * self._pos - self._counts))
        self._counts[s] += 1
        return s

    def _window(self, s: int, j: int) -> np.ndarray:
        epoch, pos = divmod(j, self.n_windows[s])
        key = (s, epoch)
        if key not in self._perms:
            rng = np.random.default_rng([self.seed, s, epoch])
            self._perms = {k: v for k, v in self._perms.items() if k[0] != s}
            self._perms[key] = rng.permutation(self.n_windows[s])
        w = int(self._perms[key][pos])
        return np.asarray(self.arrays[s][w * self.seq_len:(w + 1) * self.seq_len], dtype=np.int64)

    def sequences(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Sequences start..start+count-1 as a (count, seq_len) array, and their stream indices."""
        self._advance_to(start)
        rows, streams = [], []
        for _ in range(count):
            s = self._step()
            rows.append(self._window(s, int(self._counts[s]) - 1))
            streams.append(s)
        return np.stack(rows), np.array(streams)

    def tokens_per_stream(self) -> dict[str, int]:
        """Tokens drawn so far from each stream (for the run record)."""
        return {n: int(c) * self.seq_len for n, c in zip(self.names, self._counts)}

    def epochs_per_stream(self) -> dict[str, float]:
        """Passes made so far over each stream: windows drawn / the stream's whole windows (for the run
        record: a scaling study should say how often its runs repeat their data)."""
        return {n: round(int(c) / w, 4) for n, c, w in zip(self.names, self._counts, self.n_windows)}


def mixture_report(counts: dict, split: str = "train") -> dict:
    """Equal-token mixing of text / interleaved / speech from the measured token counts: each stream's share
    of the training tokens (1/3 each, as SIMS), the per-document sampling probabilities that give equal
    expected tokens (SlamKit-style ratios), and the budget each stream covers before repeating."""
    present = [s for s in MIX_STREAMS if shard_name(s, split) in counts]
    if not present:
        return {}
    tok = {s: counts[shard_name(s, split)]["tokens"] for s in present}
    docs = {s: counts[shard_name(s, split)]["documents"] for s in present}
    inv = {s: docs[s] / tok[s] for s in present}  # documents per token
    z = sum(inv.values())
    return {
        "shares": {s: 1.0 / len(present) for s in present},
        "tokens": tok,
        "document_sampling_ratios": {s: round(inv[s] / z, 6) for s in present},
        "tokens_before_repeat": int(len(present) * min(tok.values())),
        "epochs_per_billion_tokens": {s: round(1e9 / len(present) / tok[s], 4) for s in present},
    }
