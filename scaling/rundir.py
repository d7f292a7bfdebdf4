"""The run directory: the one contract between training and everything downstream.

    runs/<run_id>/
      spec.yaml       the resolved run spec; run_id = <arm>-<model>-<budget>-<hash of the fields that change
                      results>, so the same grid point has the same id on every machine
      state.json      pending | running | done | failed, timestamps, attempts, error; ``resource_error: true``
                      when the machine stopped the run (a full disk or quota, a read-only file system, no
                      permission: :class:`ResourceError`), which is not an attempt of the run
      metrics.jsonl   one line per logged step (tokens, flops, lr, loss, grad_norm, tokens/s, MFU, peak
                      memory), per validation and per evaluation; appended line by line
      result.json     the final record (flat keys = the results.csv columns, plus details: steps, seconds,
                      tokens and epochs per stream, ``effective`` settings, ``evals``: one entry per
                      evaluated checkpoint, periodic, cooldown and final)
      model/          HF save_pretrained folder with the tokenizer (AutoModelForCausalLM / AutoTokenizer)
      checkpoints/step_<n>/
                      resumable state while the run trains (model, optimizer, data position, RNG,
                      checksums.json; trainer/checkpoint.py), every ``train.checkpoint_every`` steps (default:
                      every 10% of the run), the two newest kept; a damaged one is moved aside as
                      ``.step_<n>.corrupt``; the folder is removed when the run is done unless
                      ``train.keep_checkpoints``
      cooldowns/<tokens>/
                      ``train.schedule: wsd``: one cooldown branch per smaller budget, its model/ and its
                      record.json (the branch's evaluation: tokens, budget, losses, scores)
      init/           a run initialised from a model outside the sweep (a folder or a hub id): its starting
                      point with the grown vocabulary, written once before the first step
      lease.<n>       a sweep worker's claim (sweeps/registry.py), one per attempt, created exclusively; its
                      mtime is the heartbeat, and it is rewritten with the attempt's outcome (done, failed,
                      preempted, released, resource)
      train.lock      held (``flock``) by the process that trains the run (rank 0; trainer/execute.py): a
                      second ``scaling train`` on the folder is refused while it is held
      tracking.json   written by a launcher asked to track (``scaling run --wandb``): the wandb mode, project,
                      group (the sweep) and config (sweep, arm, model, budget, plan row); scaling/tracking.py
      wandb/          a tracked run's wandb files (one wandb run whose id is the run id, offline unless
                      ``--wandb online``; ``wandb sync runs/*/wandb/offline-run-*`` uploads them)
      error.log       the traceback of the last attempt that failed under a local sweep worker
                      (``scaling run``, ``scaling worker``)

Only spec.yaml, state.json, result.json and model/ are always there once a run is done; the others
appear with the feature that writes them. ``scaling train --force`` removes result.json, checkpoints/
and cooldowns/ before training again.

Every file is written atomically, so a kill never leaves a torn record (metrics.jsonl is appended line by
line and a torn last line is ignored on reading). Every JSON record of the folder
(state.json, result.json, a cooldown branch's record.json) is read through :func:`read_record`, the one
checked reader: a record damaged outside the trainer (a disk that filled up, a copy cut short, a hand
edit) is a :class:`ConfigError` naming the file and what to do, never a traceback. A run is done only
when state.json says so and its result.json parses and belongs to the run (:attr:`RunDir.status`).
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from pathlib import Path

from scaling import atomic
from scaling.datadir import BENCHMARK_NAMES
from scaling.errors import ConfigError
from scaling.textio import parse_json
from scaling.spec import RunSpec

STATES = ("pending", "running", "done", "failed")

# Columns of results.csv, in order (the analysis package reads these).
RESULT_COLUMNS = [
    "run_id", "arm", "model", "params", "non_embedding_params", "tokens", "flops", "flops_exact", "budget",
    "val_loss_speech", "val_loss_text", "val_loss_interleaved", *BENCHMARK_NAMES, "epochs", "status",
]

#: A planned run folder's name ends in the run id's hash (``<arm>-<model>-<budget>-<10 hex digits>``).
RUN_ID_TAIL = re.compile(r"-[0-9a-f]{10}$")
_SPEC_RUN_ID = re.compile(r"^run_id:\s*['\"]?([^'\"\s]+)['\"]?\s*$", re.M)

#: What to do about each damaged record (the folder's files are all written atomically, so a damaged
#: one was changed outside the trainer).
_REMEDY = {
    "state.json": "delete it and the run counts as pending (a rerun resumes from its last checkpoint)",
    "result.json": "delete it and the run counts as not done (a rerun trains it again; `scaling train --force` "
                   "does both)",
    "record.json": "delete its cooldowns/<tokens>/ folder and rerun the run with --force to train the branch again",
}


def read_record(path: str | Path, *, what: str | None = None) -> dict | None:
    """The one checked reader of a run folder's JSON records: the object in ``path``, None when the file
    is absent, else a ConfigError naming the file: unreadable, not UTF-8, not JSON, or not a JSON object."""
    path = Path(path)
    what = what or path.name
    remedy = _REMEDY.get(path.name, "restore it or delete it")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot read the run record {what} ({e.strerror})", source=str(path)) from None
    obj, why = parse_json(data, obj=True)
    if why is None:
        return obj
    raise ConfigError(f"the run record {what} is damaged: {why}. Records are written atomically, so it was changed "
                      f"outside the trainer (a full disk, a copy cut short, a hand edit): {remedy}", source=str(path))


# -- errors of the machine, not of the run -----------------------------------------------------------
#: OSError numbers that stop a run because of the machine (a full disk or quota, a read-only file system, no
#: permission), not because of its spec or its code: the run is marked failed at once with the reason, and
#: the attempt does not count against --max-attempts (state.json: ``resource_error: true``).
RESOURCE_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EFBIG")
                            if hasattr(errno, n))
_OS_ERROR_TEXT = re.compile(r"os error (\d+)")  # safetensors' Rust I/O errors: "... (os error 28)"


class ResourceError(ConfigError):
    """The machine stopped a run: ``path`` could not be written (or read) because of ``code`` (ENOSPC, EDQUOT,
    EROFS, EACCES, ...). A ConfigError, so that every command reports it as ``error: <path>: <reason>`` with
    exit status 2 and no traceback; ``resource_error`` tells a sweep runner it is not an attempt of the run."""

    resource_error = True

    def __init__(self, code: int, path, *, doing: str = "writing", note: str | None = None):
        self.errno, self.path, self.doing = code, str(path), doing
        name = errno.errorcode.get(code, str(code))
        super().__init__(f"{doing} it failed: {os.strerror(code)} ({name})" + (f"; {note}" if note else ""),
                         source=str(path))

    def noted(self, note: str) -> "ResourceError":
        """The same error with ``note`` added to its message (what became of the run)."""
        return ResourceError(self.errno, self.path, doing=self.doing, note=note)


def resource_cause(exc: BaseException | None) -> tuple[int, str | None] | None:
    """(errno, file name or None) when ``exc`` is, wraps or was caused by an error of :data:`RESOURCE_ERRNOS`:
    an OSError, torch.distributed.checkpoint's CheckpointException (per-rank ``failures``), a safetensors
    error quoting ``os error N``; else None."""
    stack, seen = [exc], set()
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ResourceError):
            return e.errno, e.path
        if isinstance(e, OSError):
            if e.errno in RESOURCE_ERRNOS:
                return e.errno, None if e.filename is None else os.fsdecode(e.filename)
        else:
            m = _OS_ERROR_TEXT.search(str(e))
            if m and int(m.group(1)) in RESOURCE_ERRNOS:
                return int(m.group(1)), None
        failures = getattr(e, "failures", None)
        if isinstance(failures, dict):
            stack.extend(v[0] if isinstance(v, tuple) and v else v for v in failures.values()
                         if isinstance(v, BaseException) or (isinstance(v, tuple) and v))
        stack += [e.__cause__, None if e.__suppress_context__ else e.__context__]  # `raise ... from None`: not a cause
    return None


def as_resource_error(exc: BaseException, path, *, doing: str = "writing") -> ResourceError | None:
    """``exc`` as a :class:`ResourceError` (naming the file the OSError named, else ``path``), or None."""
    if isinstance(exc, ResourceError):
        return exc
    found = resource_cause(exc)
    if found is None:
        return None
    return ResourceError(found[0], found[1] or path, doing=doing)


@contextlib.contextmanager
def writing(path, *, doing: str = "writing"):
    """Inside the block, an error of the machine (:data:`RESOURCE_ERRNOS`) becomes a :class:`ResourceError`
    naming ``path`` (or the file the OSError names)."""
    try:
        yield
    except BaseException as e:
        res = None if isinstance(e, ResourceError) else as_resource_error(e, path, doing=doing)
        if res is None:
            raise
        raise res from e


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    spec_path = property(lambda self: self.path / "spec.yaml")
    state_path = property(lambda self: self.path / "state.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    result_path = property(lambda self: self.path / "result.json")
    model_path = property(lambda self: self.path / "model")

    @property
    def run_id(self) -> str:
        return self.path.name

    def create(self, spec: RunSpec) -> "RunDir":
        self.path.mkdir(parents=True, exist_ok=True)
        with writing(self.spec_path):
            atomic.write_yaml(self.spec_path, spec.dump())
        if not self.state_path.exists():
            self.set_state("pending")
        return self

    def spec(self) -> RunSpec:
        return RunSpec.load(self.spec_path)

    def state(self) -> dict:
        """state.json, checked (a damaged one is a ConfigError naming it); pending when there is none."""
        st = read_record(self.state_path)
        if st is None:
            return {"status": "pending", "attempts": 0}
        if st.get("status", "pending") not in STATES:
            raise ConfigError(f"the run record is damaged: status must be one of {list(STATES)}; "
                              f"{_REMEDY['state.json']}", source=str(self.state_path), field="status",
                              value=st.get("status"))
        return st

    @property
    def status(self) -> str:
        """pending | running | done | failed. 'done' only when state.json says so and result.json parses and
        belongs to this run (a damaged one is a ConfigError naming it); state.json saying done without a
        result.json is a run to train again: pending."""
        st = self.state().get("status", "pending")
        if st == "done" and self.result() is None:
            return "pending"
        return st

    def set_state(self, status: str, **extra) -> None:
        assert status in STATES, status
        st = self.state() if self.state_path.exists() else {"attempts": 0}
        st["status"] = status
        st[f"{status}_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if status == "running":
            st["attempts"] = st.get("attempts", 0) + 1
            st.pop("resource_error", None)
        st.update(extra)
        with writing(self.state_path):
            atomic.write_json(self.state_path, st)

    def mark_resource_failure(self, err: ResourceError) -> str | None:
        """Record that the machine stopped the run (``err``): failed at once, with the reason and
        ``resource_error: true``, the attempt not counted in ``attempts``. Returns why state.json could not be
        written (a full disk may refuse even that), else None."""
        try:
            st = self.state()
            attempts = st.get("attempts", 0)
            if st.get("status") == "running" and isinstance(attempts, int) and attempts > 0:
                attempts -= 1  # set_state("running") counted it
            self.set_state("failed", error=f"{type(err).__name__}: {err}", resource_error=True, attempts=attempts)
        except (OSError, ConfigError) as e:
            return f"{type(e).__name__}: {e}"
        return None

    def log(self, row: dict) -> None:
        with writing(self.metrics_path):
            atomic.append_jsonl(self.metrics_path, row)

    def metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        try:
            return atomic.read_jsonl(self.metrics_path)
        except ValueError as e:  # a damaged line before the last (a torn last line is ignored)
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"the run record is damaged ({e}); delete it and rerun the run with --force",
                              source=str(self.metrics_path)) from None

    def write_result(self, result: dict) -> None:
        with writing(self.result_path):
            atomic.write_json(self.result_path, result)

    def recorded_run_id(self) -> str | None:
        """The run id this folder holds: its name when it is a planned run folder, else the one spec.yaml
        records (None without either)."""
        if RUN_ID_TAIL.search(self.path.name):
            return self.path.name
        try:
            text = self.spec_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        m = _SPEC_RUN_ID.search(text)
        return m.group(1) if m else None

    def result(self) -> dict | None:
        """result.json, checked: None when absent; a ConfigError naming it when it does not parse, is not a
        JSON object, or records another run than this folder's."""
        rec = read_record(self.result_path)
        if rec is None:
            return None
        want = self.recorded_run_id()
        if want is not None and rec.get("run_id") != want:
            raise ConfigError(f"the run record belongs to run {rec.get('run_id')!r}, not to this folder's run {want}; "
                              f"{_REMEDY['result.json']}", source=str(self.result_path), field="run_id",
                              value=rec.get("run_id"))
        return rec
