"""A user cache of finished text-LM runs, keyed by run id (a content hash of the run's spec).

A text LM (arm ``textlm``, ``sweeps.grid.text_lm_spec``) depends only on its spec, never on the sweep
or the folder it runs in, so a second demo (``scaling demo --out other``) or any sweep with the same
text-LM spec copies the finished run instead of training it again::

    ~/.cache/speech-scaling/textlm/<run_id>/   spec.yaml, result.json, metrics.jsonl, model/, cache.json

``SPEECH_SCALING_CACHE`` sets the cache root (``off`` / ``0`` / ``none`` / empty disables it, as
``scaling run --no-cache`` does). ``cache.json`` lists every file with its size and sha256; an entry is
used only when its spec gives the run id asked for and every file matches, else the run is trained
and the damaged entry replaced. Entries are written to a temporary folder and renamed into place,
so a reader never sees half an entry and concurrent writers of one run id are safe (the first rename
wins; the others drop their copy).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from scaling import atomic
from scaling.rundir import RunDir, read_record
from scaling.spec import TEXT_ARM, RunSpec

ENV = "SPEECH_SCALING_CACHE"
OFF = ("off", "0", "none", "false", "no", "")
INDEX = "cache.json"
#: What a cached run holds: enough to be a finished run (and a text-LM init) in any sweep.
FILES = ("spec.yaml", "result.json", "metrics.jsonl")
MODEL = "model"


def cache_root() -> Path | None:
    """The cache folder, or None when caching is disabled."""
    v = os.environ.get(ENV)
    if v is None:
        return Path.home() / ".cache" / "speech-scaling"
    if v.strip().lower() in OFF:
        return None
    return Path(v).expanduser()


def cacheable(spec: RunSpec) -> bool:
    return spec.arm == TEXT_ARM


def entry(spec: RunSpec, root: Path | None = None) -> Path | None:
    root = cache_root() if root is None else root
    return None if root is None else root / TEXT_ARM / spec.run_id


def _files(folder: Path) -> list[Path]:
    out = [folder / f for f in FILES if (folder / f).is_file()]
    out += sorted(p for p in (folder / MODEL).rglob("*") if p.is_file())
    return out


def check_entry(path: Path, run_id: str) -> str | None:
    """Why the entry at ``path`` cannot be used for ``run_id`` (None: it can)."""
    try:
        index = json.loads((path / INDEX).read_text(encoding="utf-8"))
        spec_id = RunSpec.load(path / "spec.yaml").run_id
    except Exception as e:  # noqa: BLE001 - any unreadable entry is a miss, whatever broke it
        return f"unreadable ({type(e).__name__}: {e})"
    if index.get("run_id") != run_id or spec_id != run_id:
        return f"its spec gives run id {spec_id}, its index {index.get('run_id')}, not {run_id}"
    files = index.get("files") or {}
    if "result.json" not in files or not any(f.startswith(MODEL + "/") for f in files):
        return "no result or no model files listed"
    for rel, want in files.items():
        p = path / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != want["size"]:
            return f"{rel} has {p.stat().st_size} bytes, not {want['size']}"
        if atomic.sha256_file(p) != want["sha256"]:
            return f"{rel} does not match its sha256"
    return None


def usable(spec: RunSpec, *, echo=None) -> Path | None:
    """The verified cache entry of ``spec``, or None (no cache, no entry, or a damaged one: said)."""
    src = entry(spec)
    if src is None or not src.is_dir():
        return None
    why = check_entry(src, spec.run_id)
    if why is not None:
        if echo is not None:
            echo(f"text-LM cache entry {src} not used: {why}; training it again")
        return None
    return src


def cached_result(src: Path) -> dict:
    """The entry's result record (through the run folder's checked reader: a damaged one is named)."""
    return read_record(src / "result.json")


def restore(run: RunDir, src: Path, *, echo=None) -> dict:
    """Copy the (verified) cache entry ``src`` into ``run``; returns the run's result."""
    run.path.mkdir(parents=True, exist_ok=True)
    tmp = run.path / f".{MODEL}.cache-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(src / MODEL, tmp)
        atomic.replace_dir(tmp, run.model_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for f in ("metrics.jsonl", "result.json"):  # the result last: a run is finished once it is there
        if (src / f).is_file():
            atomic.write_with(run.path / f, lambda p, f=f: shutil.copyfile(src / f, p))
    if echo is not None:
        echo(f"text LM {run.run_id} taken from the cache ({src}); not trained again")
    return run.result()


def store(run: RunDir, spec: RunSpec, *, echo=None) -> Path | None:
    """Put the finished ``run`` into the cache (unless an entry for it is already there and sound)."""
    dst = entry(spec)
    if dst is None or (dst.is_dir() and check_entry(dst, spec.run_id) is None):
        return None
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".tmp-{spec.run_id}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        for f in FILES:
            if (run.path / f).is_file():
                shutil.copy2(run.path / f, tmp / f)
        shutil.copytree(run.model_path, tmp / MODEL)
        files = {str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": atomic.sha256_file(p)} for p in _files(tmp)}
        atomic.write_json(tmp / INDEX, {"run_id": spec.run_id, "files": files})
        if dst.exists():
            if check_entry(dst, spec.run_id) is None:  # another writer stored it meanwhile: theirs stands
                return dst
            # a damaged entry: move it aside first (a rename onto a non-empty folder fails)
            trash = dst.parent / f".trash-{spec.run_id}-{uuid.uuid4().hex[:8]}"
            try:
                os.replace(dst, trash)
            except OSError:
                pass
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(tmp, dst)
        except OSError:  # another writer stored it first: theirs stands
            return dst
        if echo is not None:
            echo(f"text LM {spec.run_id} stored in the cache: {dst}")
        return dst
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
