"""Crash-safe file writes: every file is written under a temporary name, then renamed.

A reader (or a resumed run) therefore sees either the old complete file or the new
complete file, never a torn one.

Every command checks where it will write before it does any work: :func:`check_out_dir` for an
output folder (``--out``), :func:`check_out_file` for an output file (``--json``). A path that cannot
be written (a file where a folder is meant, a folder where a file is meant, a file in the middle of
the path, a folder without write permission) is a :class:`ConfigError` naming the option and the path.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from scaling.errors import ConfigError

_UMASK = os.umask(0)
os.umask(_UMASK)


def _tmp_path(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the final file normal permissions
    return Path(tmp)


def _isdir(p: Path) -> bool:
    return os.path.isdir(p)  # False (not an error) where a part of the path is a file or unreadable


def _existing_folder(path: Path, field: str) -> Path:
    """The nearest folder above ``path`` that exists (where writing it starts); a file on the way is refused."""
    for parent in path.absolute().parents:
        if os.path.lexists(parent):
            if not _isdir(parent):
                raise ConfigError(f"cannot be written: {parent} is a file, not a folder", source=str(path), field=field)
            return parent
    return Path(path.absolute().anchor)


def _writable(folder: Path, path: Path, field: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        where = "the folder is" if folder == path else f"the folder {folder} is"
        raise ConfigError(f"cannot be written: {where} not writable", source=str(path), field=field)


def check_out_dir(path: str | os.PathLike, field: str, *, beside: bool = False) -> Path:
    """Refuse, before any work, an output folder that cannot be written: ``path`` exists and is a file,
    a part of it is a file, or the folder (where it does not exist yet: the nearest one above it) is not
    writable. ``beside``: the command also builds next to ``path`` (a staging or work folder in its
    parent, renamed into place), so the parent must be writable too. ``field``: the option, e.g. "--out"."""
    path = Path(path)
    if os.path.lexists(path):
        if not _isdir(path):
            raise ConfigError("exists and is a file, not a folder", source=str(path), field=field)
        _writable(path, path, field)
        if beside:
            _writable(_existing_folder(path, field), path, field)
    else:
        _writable(_existing_folder(path, field), path, field)
    return path


def check_out_file(path: str | os.PathLike, field: str) -> Path:
    """Refuse, before any work, an output file that cannot be written: ``path`` is a folder, a part of it
    is a file, or the folder it goes in (the nearest existing one) is not writable. An existing file is
    replaced (by a rename: its own permissions do not matter)."""
    path = Path(path)
    if _isdir(path):
        raise ConfigError("is a folder, not a file", source=str(path), field=field)
    _writable(_existing_folder(path, field), path, field)
    return path


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` then atomically rename the result onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = _tmp_path(path)
    except OSError as e:  # the folder is not writable: name the file, not the temporary name tried
        raise OSError(e.errno, e.strerror, str(path)) from e
    try:
        writer(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.filename is not None and os.fsdecode(e.filename) == str(tmp):
            # a full disk or a lost permission while writing: name the file being written, not its temporary
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_with(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_yaml(path: str | os.PathLike, obj: Any) -> Path:
    import yaml  # here, not at module level: `scaling fit` writes JSON only and starts faster without yaml

    return write_text(path, yaml.safe_dump(obj, sort_keys=False))


def write_jsonl(path: str | os.PathLike, rows) -> Path:
    def _w(p: Path) -> None:
        with open(p, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, default=_json_default) + "\n")

    return write_with(path, _w)


def replace_dir(tmp_dir: str | os.PathLike, final_dir: str | os.PathLike) -> Path:
    """Move a fully written directory into place, replacing any previous one."""
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final_dir, old)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_dir, final_dir)
    return final_dir


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one line and flush it: a kill loses at most the line being written."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, default=_json_default) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read JSON lines, tolerating a torn last line left by a kill (cut inside a character too); an
    earlier line that is not UTF-8 is a ConfigError naming the file and the line."""
    from scaling.textio import decode

    rows = []
    with open(path, "rb") as fh:
        lines = fh.read().splitlines()
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        last = i == len(lines) - 1
        try:
            rows.append(json.loads(decode(raw, path, where=f"line {i + 1}")))
        except (json.JSONDecodeError, ConfigError):
            if last:
                break
            raise
    return rows


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 4 MiB blocks (checkpoints and cached text LMs record it)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
