"""Measurements as records: one dated JSON file per benchmark run under ``benchmarks/results/``.

A benchmark script ends with one call::

    from benchmarks.record import write_record
    write_record("fit_cli", {"wall_median_s": 0.59, ...}, units={"wall_median_s": "s"})

which writes ``benchmarks/results/<YYYY-MM-DD>_<benchmark>[_<n>].json`` atomically::

    {"benchmark": "fit_cli", "date": "2026-12-08", "time": "14:02:11",
     "machine": {"cpu": "...", "cores": 2, "gpu": null, "load_average": [..]},
     "commit": "dc3119b...", "dirty": true, "command": "python benchmarks/bench_fit_cli.py --repeat 7",
     "title": "what was measured", "summary": "one line the docs table shows", "figures": {...},
     "units": {...}, "note": "..."}

The docs render the newest record of each benchmark into docs/reference/measurements.md
(``python docs/gen_reference.py``); older records stay in the folder as the history. Nothing here
imports torch: the GPU name is read from ``nvidia-smi`` when there is one.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

from scaling import atomic

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
#: A benchmark name becomes part of a file name: a plain name.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [g.strip() for g in out.stdout.splitlines() if g.strip()] if out.returncode == 0 else []


def machine() -> dict:
    """What ran the benchmark: CPU model, the cores this process may use, GPUs, load average, Python."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu": _cpu_model(), "cores": cores, "gpu": _gpus() or None, "load_average": load,
            "python": platform.python_version(), "platform": platform.platform(terse=True)}


def git_commit(repo: Path = REPO) -> tuple[str | None, bool | None]:
    """(commit hash, whether the work tree has uncommitted changes), or (None, None) outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=30)
        return head.stdout.strip(), bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def write_record(benchmark: str, figures: dict, *, summary: str | None = None, title: str | None = None,
                 units: dict | None = None,
                 command: str | list[str] | None = None, note: str | None = None, out_dir: str | Path | None = None,
                 when: _dt.datetime | None = None, machine_info: dict | None = None,
                 commit: str | None = None) -> Path:
    """Write one dated record of ``benchmark`` and return its path.

    ``figures``: the measured values (JSON-serialisable; numbers in the units of ``units``).
    ``summary``: the one line the docs' "current measurements" table shows (default: the figures);
    ``title``: what was measured, as that table names it (default: the benchmark name).
    ``command``: the command line that reproduces it (default: this process's ``sys.argv``).
    ``note``: conditions worth knowing (a shared machine, a load average). ``out_dir``: default
    ``benchmarks/results``. ``when``, ``machine_info``, ``commit``: default now, :func:`machine`, HEAD.
    The file is ``<date>_<benchmark>.json`` (``_2``, ``_3``... when that day already has one), written
    atomically; an existing record is never overwritten."""
    if not isinstance(benchmark, str) or not _NAME.match(benchmark):
        raise ValueError(f"benchmark must be a plain name (letters, digits, '_', '.', '-'), got {benchmark!r}")
    if not isinstance(figures, dict):
        raise TypeError(f"figures must be a dict, got {type(figures).__name__}")
    when = when or _dt.datetime.now()
    if command is None:
        command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    elif not isinstance(command, str):
        command = " ".join(shlex.quote(str(a)) for a in command)
    dirty = None
    if commit is None:
        commit, dirty = git_commit()
    rec = {"benchmark": benchmark, "date": when.strftime("%Y-%m-%d"), "time": when.strftime("%H:%M:%S"),
           "machine": machine() if machine_info is None else machine_info, "commit": commit, "dirty": dirty,
           "command": command, "title": title, "summary": summary, "figures": figures, "units": units or {},
           "note": note}
    json.dumps(rec, allow_nan=False)  # a figure that cannot be a JSON record fails here, before any file
    folder = Path(out_dir) if out_dir is not None else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{rec['date']}_{benchmark}"
    path, n = folder / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}_{n}.json"
    atomic.write_text(path, json.dumps(rec, indent=1, ensure_ascii=False) + "\n")
    return path


def read_records(folder: str | Path | None = None) -> list[dict]:
    """Every record in ``folder`` (default ``benchmarks/results``), oldest first; each with ``path``."""
    folder = Path(folder) if folder is not None else RESULTS
    out = []
    for f in sorted(folder.glob("*.json")):
        rec = json.loads(f.read_text(encoding="utf-8"))
        if isinstance(rec, dict) and "benchmark" in rec and "date" in rec:
            rec["path"] = f.relative_to(folder.parent.parent).as_posix() if folder == RESULTS else f.name
            out.append(rec)
    return sorted(out, key=lambda r: (r["date"], r.get("time") or "", r["path"]))


def current(records: list[dict]) -> dict[str, dict]:
    """The newest record of each benchmark."""
    latest = {}
    for r in records:  # oldest first: the last one wins
        latest[r["benchmark"]] = r
    return latest
