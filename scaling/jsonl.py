"""Reading user-supplied JSON-lines files with errors that name the file, the line and the field."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from scaling.errors import ConfigError
from scaling.textio import iter_lines


def iter_jsonl(path: str | Path, *, what: str = "file", required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; ConfigError for a missing file, a line that is
    not a JSON object, or an object without one of the ``required`` keys."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found", source=str(path))
    for i, line in iter_lines(path):  # a line that is not UTF-8: the file, line and byte offset named
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"line {i} is not valid JSON ({e.msg})", source=str(path)) from None
        if not isinstance(row, dict):
            raise ConfigError(f"line {i} is not a JSON object", source=str(path))
        for k in required:
            if k not in row:
                raise ConfigError(f"line {i} has no '{k}'", source=str(path), field=k)
        yield i, row
