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

A lease file that cannot be read as a lease record (not UTF-8 JSON, not an object, neither a worker nor
an outcome; a disk that filled up, a hand edit) has no live holder: nobody can heartbeat through a record
nobody can read, and waiting for it to go stale could only delay the run. It counts as an attempt that
died (its outcome is unknown; counting it keeps a run from being retried without end), `scaling status`
and `scaling run` say which file it is, and the next claim takes lease n+1. An empty lease is not corrupt:
it is a claim between its creation and its first write, judged by its age like any other.

The run directory's result.json is the record; a run is done when ``RunDir.status`` says so (state.json
says done and result.json parses and holds this run's id), whoever wrote it. A lease whose outcome is
``resource`` (the machine stopped the attempt: a full disk, no permission) is not an attempt either.
"""
from __future__ import annotations

import json
import math
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
from scaling.textio import parse_json
from scaling.initref import InitRef
from scaling.rundir import RunDir
from scaling.spec import RunSpec

# lease outcomes that do not use up an attempt: preempted or stopped, or stopped by the machine (a full disk,
# no permission: scaling.rundir.ResourceError), which another attempt would meet again
NOT_ATTEMPTS = ("preempted", "released", "resource")

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


class CorruptLease(dict):
    """The record of a lease file that is not a lease record: empty (no worker, no outcome), with ``why``.
    A dict, so that every reader's ``.get`` works on it; ``_live`` takes it for a lease without a holder."""

    def __init__(self, why: str):
        super().__init__()
        self.why = why


def _read_lease(path: Path) -> dict | None:
    """The lease's record; None when the file is gone or still empty (a claim being written); a
    :class:`CorruptLease` when it cannot be a lease record."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:  # a folder where a lease should be, no permission
        return CorruptLease(f"cannot be read ({e.strerror})")
    if not data.strip():
        return None
    body, why = parse_json(data, obj=True)
    if why is not None:
        return CorruptLease(f"is {why}")
    if "worker" not in body and "outcome" not in body:
        return CorruptLease("has neither a worker nor an outcome")
    if not isinstance(body.get("outcome", ""), (str, type(None))):
        return CorruptLease(f"has an outcome that is not a string ({body['outcome']!r:.40})")
    return body


#: --heartbeat's floor: the heartbeat thread touches the lease file this often at most.
MIN_HEARTBEAT = 0.01
#: --lease-timeout's ceiling: a week without a heartbeat (a larger value never takes a dead worker's run over).
MAX_LEASE_TIMEOUT = 7 * 24 * 3600.0


def check_lease_times(lease_timeout, heartbeat, max_attempts) -> None:
    """The registry's settings (`--lease-timeout`, `--heartbeat`, `--max-attempts`), as a ConfigError naming
    the option: finite seconds, heartbeat shorter than the timeout. With NaN every lease looked dead (two
    workers trained one run); with a heartbeat of 0 the heartbeat thread spun on the file."""
    for flag, v in (("--lease-timeout", lease_timeout), ("--heartbeat", heartbeat)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ConfigError("must be a finite number of seconds above 0", field=flag, value=v)
    if heartbeat < MIN_HEARTBEAT:
        raise ConfigError(f"must be at least {MIN_HEARTBEAT} s", field="--heartbeat", value=heartbeat)
    if lease_timeout > MAX_LEASE_TIMEOUT:
        raise ConfigError(f"must be at most {MAX_LEASE_TIMEOUT:.0f} s (a week)", field="--lease-timeout",
                          value=lease_timeout)
    if heartbeat >= lease_timeout:
        raise ConfigError(f"must be shorter than --lease-timeout ({lease_timeout:g})", field="--heartbeat",
                          value=heartbeat)
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ConfigError("must be at least 1", field="--max-attempts", value=max_attempts)


def _pid_alive(pid) -> bool | None:
    """Whether process ``pid`` of this host runs (None: cannot tell)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return None
    return True


class Registry:
    """The run states of one sweep's ``runs/`` folder, as seen from the lease files."""

    def __init__(self, runs_dir: str | Path, *, lease_timeout: float = 120.0, heartbeat: float = 10.0,
                 max_attempts: int = 2):
        check_lease_times(lease_timeout, heartbeat, max_attempts)
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

    def corrupt_leases(self, run_id: str) -> list[tuple[Path, str]]:
        """(path, why) of the run's lease files that are not lease records (taken as dead attempts)."""
        out = []
        for _, p in self.leases(run_id):
            body = _read_lease(p)
            if isinstance(body, CorruptLease):
                out.append((p, body.why))
        return out

    def waiting_note(self, run_id: str) -> tuple[Path, str] | None:
        """(lease path, one line) for a worker about to wait on another's lease that looks dead (its process
        is gone from this host, or it missed three heartbeats) but is not yet ``lease_timeout`` old: whose it
        is, and when it will be taken over. None when the run's last lease is not live or its holder looks
        alive."""
        ls = self.leases(run_id)
        if not ls or not self._live(ls[-1][1]):
            return None
        n, path = ls[-1]
        body = _read_lease(path) or {}
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None
        age = time.time() - mtime
        alive = _pid_alive(body.get("pid")) if body.get("host") == socket.gethostname() else None
        if alive is True or (alive is None and age < 3 * self.heartbeat):
            return None
        why = (f"its worker (pid {body.get('pid')} on this host) is gone" if alive is False
               else f"no heartbeat for {age:.0f} s")
        until = time.strftime("%H:%M:%S", time.localtime(mtime + self.lease_timeout))
        return path, (f"waiting for run {run_id}: {why}, but its lease {path} counts as held until {until} "
                      f"(--lease-timeout {self.lease_timeout:g} s after its last heartbeat); then this worker takes "
                      "it over")

    def _live(self, path: Path) -> bool:
        """A lease is live while unfinished and its heartbeat is fresh; a corrupt lease has no live holder."""
        body = _read_lease(path)
        if isinstance(body, CorruptLease) or (body is not None and body.get("outcome")):
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
