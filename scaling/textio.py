"""The one checked reader of user text files: a file that is not UTF-8 is a :class:`ConfigError` naming
the file, the line and the byte offset of the first byte that does not decode, never a
``UnicodeDecodeError`` traceback.

- :func:`read_text`: a whole file (results tables, gold.csv, fits and plan JSON, file lists, text.json);
- :func:`iter_lines`: a file line by line, in bounded memory (JSON lines, one-document-per-line text);
- :func:`decode`: bytes already read (a JSON line, a key cut out of one), ``where`` naming their place;
- :func:`parse_json`: a JSON file's bytes, and why they are not UTF-8 JSON when they are not (the readers of
  run records, leases, tokenizer and checkpoint files word their own errors around it).

The message reads as :func:`scaling.yamlio.read_text`'s for YAML files: "is not UTF-8 text: byte 0xff at
line 3 (offset 41); save it as UTF-8".
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from scaling.errors import ConfigError


def not_utf8(exc: UnicodeDecodeError, source, *, where: str | None = None, offset: int | None = None, start: int = 0,
             field: str | None = None) -> ConfigError:
    """The ConfigError for ``exc``, raised decoding bytes of ``source``. ``where`` names the place the bytes
    were cut from ("line 3"), ``start`` their position in it and ``offset`` its position in the file (the
    message then gives the file offset of the bad byte, else its position in ``where``)."""
    bad = exc.object[exc.start] if exc.start < len(exc.object) else None
    byte = f"byte 0x{bad:02x}" if bad is not None else "a truncated character"
    k = start + exc.start
    if where:
        at = f"{where}, offset {offset + k}" if offset is not None else f"{where}, byte {k} of it"
    else:
        at = f"offset {(offset or 0) + k}"
    return ConfigError(f"is not UTF-8 text: {byte} at {at}; save it as UTF-8", source=str(source), field=field)


def decode(data: bytes, source, *, where: str | None = None, offset: int | None = None, start: int = 0,
           field: str | None = None, encoding: str = "utf-8") -> str:
    """``data`` as text; bytes that are not UTF-8 are a ConfigError naming ``source`` and ``where`` (see
    :func:`not_utf8` for ``offset`` and ``start``)."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise not_utf8(e, source, where=where, offset=offset, start=start, field=field) from None


def read_text(path: str | os.PathLike, *, field: str | None = None, what: str = "file", bom: bool = True) -> str:
    """The text of ``path``. Missing, a folder, unreadable or not UTF-8 (a byte-order mark is dropped
    when ``bom``): a ConfigError naming the file (``field``: the option or key that named it)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} not found", source=str(path), field=field) from None
    except IsADirectoryError:
        raise ConfigError(f"is a folder, not a {what}", source=str(path), field=field) from None
    except OSError as e:
        raise ConfigError(f"cannot read the {what} ({e.strerror})", source=str(path), field=field) from None
    try:
        return data.decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as e:  # e.object: the bytes after any byte-order mark
        line = e.object[:e.start].count(b"\n") + 1
        raise not_utf8(e, path, where=f"line {line}", offset=len(data) - len(e.object), field=field) from None


def iter_lines(path: str | os.PathLike, *, field: str | None = None) -> Iterator[tuple[int, str]]:
    """``(line number from 1, text without its line break)`` for every line of ``path``, read in
    binary and decoded line by line: a line that is not UTF-8 is a ConfigError naming the file, the
    line and its byte offset in the file."""
    path = Path(path)
    pos = 0
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            yield i, decode(raw, path, where=f"line {i}", offset=pos, field=field).rstrip("\r\n")
            pos += len(raw)


def parse_json(data: bytes, *, obj: bool = False) -> tuple[object, str | None]:
    """``(value, None)`` for UTF-8 JSON bytes, else ``(None, why)``: "not UTF-8 text (byte 0xff at offset
    3)", "not valid JSON (Expecting value: line 1, column 1)", and with ``obj`` "not a JSON object (a list)"."""
    import json

    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg}: line {e.lineno}, column {e.colno})"
    if obj and not isinstance(value, dict):
        return None, f"not a JSON object (a {type(value).__name__})"
    return value, None
