"""The run registry: which worker trains which run, safe for many workers on one shared folder.

A worker claims a run by creating ``runs/<id>/lease.<n>`` with O_CREAT|O_EXCL, n being one more
than the latest lease: whatever the number of workers (processes, nodes), exactly one creates
lease n. While it trains, a thread refreshes the lease's mtime (the heartbeat). When the run
ends the worker rewrites the lease with its outcome (done or failed). A lease that is neither
finished nor refreshed within ``lease_timeout`` seconds belongs to a dead worker: the run is
claimable again, through lease n+1. The lease files are the attempt history: attempts = n,
and a run whose ``max_attempts`` leases all failed (or died) stays failed.

The run directory's result.json is the record; a run is done when state.json says done and
result.json exists, whoever wrote it.
"""
from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from scaling import atomic
from scaling.rundir import RunDir
from scaling.spec import RunSpec

LEASE_RE = re.compile(r"^lease\.(\d+)$")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Lease:
    run: RunDir
    number: int
    worker: str
    heartbeat: float
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def path(self) -> Path:
        return self.run.path / f"lease.{self.number}"

    def start_heartbeat(self) -> "Lease":
        def beat():
            while not self._stop.wait(self.heartbeat):
                try:
                    os.utime(self.path)
                except FileNotFoundError:
                    return

        self._thread = threading.Thread(target=beat, name=f"heartbeat-{self.run.run_id}", daemon=True)
        self._thread.start()
        return self

    def finish(self, outcome: str, **extra) -> None:
        """Stop the heartbeat and record how the attempt ended ('done' or 'failed')."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        body = _read_lease(self.path) or {}
        body.update(outcome=outcome, finished_at=time.time(), **extra)
        atomic.write_json(self.path, body)


def _read_lease(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class Registry:
    """The run states of one sweep's ``runs/`` folder, as seen from the lease files."""

    def __init__(self, runs_dir: str | Path, *, lease_timeout: float = 120.0, heartbeat: float = 10.0,
                 max_attempts: int = 2):
        if heartbeat >= lease_timeout:
            raise ValueError("heartbeat must be shorter than lease_timeout")
        self.runs_dir = Path(runs_dir)
        self.lease_timeout, self.heartbeat, self.max_attempts = lease_timeout, heartbeat, max_attempts

    def run(self, run_id: str) -> RunDir:
        return RunDir(self.runs_dir / run_id)

    def leases(self, run_id: str) -> list[tuple[int, Path]]:
        d = self.runs_dir / run_id
        if not d.is_dir():
            return []
        out = [(int(m.group(1)), d / m.group(0)) for m in (LEASE_RE.match(p.name) for p in d.iterdir()) if m]
        return sorted(out)

    def attempts(self, run_id: str) -> int:
        ls = self.leases(run_id)
        return ls[-1][0] if ls else 0

    def is_done(self, run_id: str) -> bool:
        run = self.run(run_id)
        return run.result_path.exists() and run.status == "done"

    def _live(self, path: Path) -> bool:
        """A lease is live while unfinished and its heartbeat is fresh."""
        body = _read_lease(path)
        if body is not None and body.get("outcome"):
            return False
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return False
        # A lease created but not yet written (body None) is young: its mtime says so.
        return age <= self.lease_timeout

    def state(self, run_id: str) -> str:
        """pending | running | done | failed (failed = every allowed attempt failed or died)."""
        if self.is_done(run_id):
            return "done"
        ls = self.leases(run_id)
        if ls and self._live(ls[-1][1]):
            return "running"
        return "failed" if len(ls) >= self.max_attempts else "pending"

    def effective_state(self, spec: RunSpec) -> str:
        """As state(), but a run whose initialisation run failed is failed too."""
        st = self.state(spec.run_id)
        if st == "pending" and spec.init.startswith("run:") and self.state(spec.init[4:]) == "failed":
            return "failed"
        return st

    def claim(self, spec: RunSpec, worker: str) -> Lease | None:
        """Take the run if nobody holds a live lease on it and attempts are left; else None."""
        run_id = spec.run_id
        if self.is_done(run_id):
            return None
        ls = self.leases(run_id)
        if ls and self._live(ls[-1][1]):
            return None
        n = (ls[-1][0] if ls else 0) + 1
        if n > self.max_attempts:
            return None
        run = self.run(run_id)
        run.path.mkdir(parents=True, exist_ok=True)
        path = run.path / f"lease.{n}"
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None  # another worker got there first
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"worker": worker, "pid": os.getpid(), "host": socket.gethostname(), "claimed_at": time.time()}, fh)
        if self.is_done(run_id):  # finished between our check and our claim
            Lease(run, n, worker, self.heartbeat).finish("released")
            return None
        run.create(spec)
        return Lease(run, n, worker, self.heartbeat).start_heartbeat()
