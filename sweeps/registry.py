"""The run registry: which worker trains which run, safe for many workers on one shared folder.

A worker claims a run by creating ``runs/<id>/lease.<n>`` with O_CREAT|O_EXCL, n being one more
than the latest lease: whatever the number of workers (processes, nodes), exactly one creates
lease n. While it trains, a thread refreshes the lease's mtime (the heartbeat). When the run
ends the worker rewrites the lease with its outcome (done or failed). A lease that is neither
finished nor refreshed within ``lease_timeout`` seconds belongs to a dead worker: the run is
claimable again, through lease n+1. The lease files are the attempt history: attempts = leases
that failed, died or are running, and a run whose ``max_attempts`` attempts all failed (or died)
stays failed. A lease whose outcome is ``preempted`` (SLURM took the node back and requeued the
job) or ``released`` is not an attempt: a run may be preempted any number of times.

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
from scaling.errors import ConfigError
from scaling.initref import InitRef
from scaling.rundir import RunDir
from scaling.spec import RunSpec

NOT_ATTEMPTS = ("preempted", "released")  # lease outcomes that do not use up an attempt

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
        """The run's folder, proven to lie directly under ``runs_dir`` (a run id is a plain name)."""
        root = self.runs_dir.resolve()
        path = (root / run_id).resolve()
        if path.parent != root or not run_id or run_id != path.name:
            raise ConfigError(f"run folder {path} would lie outside {root}", field="run_id", value=run_id)
        return RunDir(self.runs_dir / run_id)

    def leases(self, run_id: str) -> list[tuple[int, Path]]:
        d = self.runs_dir / run_id
        if not d.is_dir():
            return []
        out = [(int(m.group(1)), d / m.group(0)) for m in (LEASE_RE.match(p.name) for p in d.iterdir()) if m]
        return sorted(out)

    def attempts(self, run_id: str) -> int:
        """Attempts used: leases that are not preempted or released."""
        return sum((_read_lease(p) or {}).get("outcome") not in NOT_ATTEMPTS for _, p in self.leases(run_id))

    def failure(self, run_id: str) -> str:
        """Why a run failed, as its last attempt or state.json recorded it."""
        for _, p in reversed(self.leases(run_id)):
            body = _read_lease(p) or {}
            if body.get("error"):
                return body["error"]
            if body.get("outcome") not in NOT_ATTEMPTS:
                break
        err = self.run(run_id).state().get("error")
        return err or f"{self.attempts(run_id)} attempts ended without a result (worker killed or lost)"

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
        return "failed" if self.attempts(run_id) >= self.max_attempts else "pending"

    def effective_state(self, spec: RunSpec) -> str:
        """As state(), but a run whose initialisation run failed is failed too."""
        st = self.state(spec.run_id)
        dep = InitRef.parse(spec.init).run_id
        if st == "pending" and dep and self.state(dep) == "failed":
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
        if self.attempts(run_id) >= self.max_attempts:
            return None
        n = (ls[-1][0] if ls else 0) + 1
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
