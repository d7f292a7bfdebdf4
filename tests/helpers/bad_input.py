"""The bad-input suite's runner: one row per class of bad input, run against the CLI as a user runs it
(a subprocess), asserting the exit status, the named file / field / value, no Python traceback, and that
nothing was written (or that named files are byte-for-byte unchanged)."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Case:
    """One row. ``argv`` and ``names`` may hold ``{tmp}``, replaced by the case's folder; ``setup(tmp)``
    writes the bad input there first."""

    id: str
    argv: list[str]
    setup: Callable[[Path], None] = lambda tmp: None
    exit: int = 2
    names: tuple[str, ...] = ()  # substrings stderr must hold (the file, the field, the value)
    absent: tuple[str, ...] = ()  # paths (relative to tmp) that must not exist afterwards
    unchanged: tuple[str, ...] = ()  # paths (relative to tmp) whose bytes must be the same afterwards
    env: dict = field(default_factory=dict)
    timeout: float = 120.0


def run_case(case: Case, tmp: Path) -> subprocess.CompletedProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    case.setup(tmp)
    before = {p: (tmp / p).read_bytes() for p in case.unchanged if (tmp / p).is_file()}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **case.env}
    argv = [a.replace("{tmp}", str(tmp)) for a in case.argv]
    proc = subprocess.run([sys.executable, "-m", "scaling.cli", *argv], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=case.timeout)
    out = proc.stdout + proc.stderr
    assert "Traceback (most recent call last)" not in out, f"{case.id}: traceback\n{out[-3000:]}"
    assert proc.returncode == case.exit, f"{case.id}: exit {proc.returncode}, expected {case.exit}\n{out[-3000:]}"
    for name in case.names:
        want = name.replace("{tmp}", str(tmp))
        assert want in proc.stderr, f"{case.id}: stderr does not name {want!r}\n{proc.stderr[-3000:]}"
    for p in case.absent:
        assert not (tmp / p).exists(), f"{case.id}: {p} was written"
    for p, data in before.items():
        assert (tmp / p).read_bytes() == data, f"{case.id}: {p} changed"
    return proc
