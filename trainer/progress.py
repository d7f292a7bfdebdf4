"""What `scaling train` prints while it runs: one line every N optimiser steps (rank 0 only).

    step   120/500 | tokens   61,440/256,000 (24.0%) | loss 3.2140 | 12.3k tok/s | elapsed 0:05 | ETA 0:16

Plain lines rather than a redrawn bar, so SLURM and sweep logs stay readable.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressLine:
    """``update`` prints a line at every ``every``-th step and at the last one; silent when not ``enabled``."""

    def __init__(self, total_steps: int, total_tokens: int, *, enabled: bool, every: int | None = None,
                 stream: TextIO | None = None, clock=time.monotonic):
        self.total_steps, self.total_tokens, self.enabled = total_steps, total_tokens, enabled
        self.every = every or max(1, total_steps // 20)
        self.stream = stream or sys.stdout
        self.clock = clock
        self.t0, self.tokens0 = clock(), 0

    def start(self, tokens: int) -> None:
        """Called when training (re)starts: the rate counts tokens from here, so a resumed run's ETA holds."""
        self.t0, self.tokens0 = self.clock(), tokens

    def update(self, step: int, tokens: int, loss: float) -> str | None:
        if not self.enabled or (step % self.every and step != self.total_steps):
            return None
        elapsed = self.clock() - self.t0
        rate = (tokens - self.tokens0) / elapsed if elapsed > 0 else 0.0
        eta = (self.total_tokens - tokens) / rate if rate > 0 else float("nan")
        w = len(str(self.total_steps))
        line = (f"step {step:>{w}}/{self.total_steps} | tokens {tokens:>{len(f'{self.total_tokens:,}')},}/{self.total_tokens:,} "
                f"({tokens / self.total_tokens:.1%}) | loss {loss:.4f} | {rate / 1e3:.1f}k tok/s | "
                f"elapsed {_clock(elapsed)} | ETA {_clock(eta) if eta == eta else '?'}")
        print(line, file=self.stream, flush=True)
        return line
