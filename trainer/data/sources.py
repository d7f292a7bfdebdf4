"""Corpus inputs read as streams of records, never whole: what the streaming preparation iterates.

A source is a speech source (unit records, see :func:`trainer.data.ingest.parse_speech_row`) or a text
source (documents). Its ``spec`` is any of:
  * a ``.jsonl`` file, or a folder of them (read in sorted name order: the shards of a split extraction);
  * text only: a ``.txt`` file (one document per non-empty line), or a folder mixing ``.jsonl``/``.txt``;
  * a ``.parquet`` file or a folder of them (read in row batches through pyarrow);
  * a Hugging Face ``datasets`` folder written by ``save_to_disk`` (memory-mapped Arrow);
  * ``hf:NAME_OR_PATH[#SPLIT]``: ``datasets.load_dataset(NAME_OR_PATH, split=SPLIT, streaming=True)``
    (a hub dataset where the cache or network allows it, or a local folder of data files).
Records come out in one fixed order, so record ``k`` of a source is the same record in every process:
the plan, the chunks, ``--shard i/N`` and a resumed run all agree on it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from scaling.errors import ConfigError
from scaling.textio import decode

BATCH_ROWS = 1024
KEY_RE = {k: re.compile(rb'"' + k.encode() + rb'"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)') for k in ("file_name", "id")}


def stem(file_name: str) -> str:
    """``Path(file_name).stem`` with either slash (string operations: called once per utterance)."""
    name = str(file_name).replace("\\", "/").rstrip("/").rpartition("/")[2]
    i = name.rfind(".")
    return name[:i] if 0 < i < len(name) - 1 else name


def utterance_key(row: dict) -> str | None:
    """An utterance's id: the stem of ``file_name`` (SlamKit), else ``id`` (our schema)."""
    if row.get("file_name") is not None:
        return stem(row["file_name"])
    return None if row.get("id") is None else str(row["id"])


@dataclass(frozen=True)
class Source:
    """One input: ``kind`` "speech" or "text", a ``name`` (reported in data.json) and a sampling ``weight``
    (how many times each training document of the source is used: 2.0 doubles it, 0.5 keeps half)."""

    name: str
    kind: str
    spec: str
    weight: float = 1.0

    # -- which reader -------------------------------------------------------------------------
    @property
    def form(self) -> str:
        if self.spec.startswith("hf:"):
            return "hf-stream"
        p = Path(self.spec)
        if p.is_dir():
            if (p / "state.json").is_file() or (p / "dataset_dict.json").is_file():
                return "hf-disk"
            if any(p.rglob("*.parquet")):
                return "parquet"
            return "files"
        if p.is_file():
            return "parquet" if p.suffix.lower() == ".parquet" else "files"
        raise ConfigError(f"{self.kind} input not found", source=self.spec)

    def files(self) -> list[Path]:
        p = Path(self.spec)
        exts = (".parquet",) if self.form == "parquet" else (".jsonl", ".json", ".txt") if self.kind == "text" else (".jsonl",)
        if p.is_file():
            return [p]
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
        if not files:
            raise ConfigError(f"no {'/'.join(exts)} files in the folder", source=str(p))
        return files

    # -- records ------------------------------------------------------------------------------
    def records(self) -> Iterator[tuple[str, str, object]]:
        """``(source, where, raw)`` for every record in order: ``raw`` is the bytes of a JSONL line, the
        str of a TXT line, or a dict row; ``where`` ("line 3", "row 3") names it in errors. A TXT line that
        is not UTF-8 is a ConfigError naming the file, the line and its byte offset (a JSONL line is decoded
        by :func:`json_row`)."""
        form = self.form
        if form == "files":
            for f in self.files():
                text = f.suffix.lower() == ".txt"
                pos = 0
                with open(f, "rb") as fh:
                    for i, line in enumerate(fh, 1):
                        if line.strip():
                            yield str(f), f"line {i}", (decode(line, f, where=f"line {i}", offset=pos).rstrip("\r\n")
                                                        if text else line)
                        pos += len(line)
        elif form == "parquet":
            for f in self.files():
                for i, row in enumerate(_parquet_rows(f)):
                    yield str(f), f"row {i}", row
        else:
            for i, row in enumerate(self._hf_rows()):
                yield self.spec, f"row {i}", row

    def keys(self) -> Iterator[str | None]:
        """The id of every record (speech: :func:`utterance_key`), in record order, read
        cheaply: a JSONL line is searched for its ``file_name``/``id`` and parsed only when that fails; a
        columnar input reads the id column alone."""
        form = self.form
        if form == "files":
            for src, where, raw in self.records():
                m = KEY_RE["file_name"].search(raw)
                if m:
                    yield stem(json.loads(decode(m.group(1), src, where=where, start=m.start(1), field="file_name")))
                    continue
                m = KEY_RE["id"].search(raw)
                yield (str(json.loads(decode(m.group(1), src, where=where, start=m.start(1), field="id"))) if m
                       else utterance_key(json_row(raw, src, where)))
            return
        cols = self._columns()
        col = "file_name" if "file_name" in cols else "id" if "id" in cols else None
        if col is None:
            raise ConfigError("the dataset has neither a 'file_name' nor an 'id' column", source=self.spec,
                              field="file_name", value=sorted(cols))
        rows = (r for f in self.files() for r in _parquet_rows(f, [col])) if form == "parquet" else self._hf_rows([col])
        for row in rows:
            yield utterance_key(row)

    def _columns(self) -> list[str]:
        if self.form == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(self.files()[0]).schema_arrow.names
        return list(self._hf_dataset().column_names or [])

    def _hf_dataset(self, columns=None):
        try:
            import datasets
        except ImportError:
            raise ConfigError("reading Hugging Face datasets needs the `datasets` package: pip install "
                              "'speech-scaling[data]'", source=self.spec) from None
        if self.form == "hf-disk":
            ds = datasets.load_from_disk(self.spec)
            if isinstance(ds, datasets.DatasetDict):
                raise ConfigError(f"a DatasetDict with splits {list(ds)}: give the folder of one split "
                                  f"({self.spec}/<split>)", source=self.spec)
        else:
            name, _, split = self.spec[3:].partition("#")
            try:
                ds = datasets.load_dataset(name, split=split or "train", streaming=True)
            except Exception as e:  # datasets raises many types for a missing or unreachable dataset
                raise ConfigError(f"cannot stream the dataset ({type(e).__name__}: {str(e)[:200]})", source=self.spec) from None
        return ds.select_columns(columns) if columns else ds

    def _hf_rows(self, columns=None) -> Iterator[dict]:
        ds = self._hf_dataset(columns)
        if self.form == "hf-disk":  # Arrow batches: no per-row Python conversion of the whole table
            for batch in ds.with_format("arrow").iter(batch_size=BATCH_ROWS):
                yield from batch.to_pylist()
        else:
            yield from ds


def _parquet_rows(path: Path, columns=None) -> Iterator[dict]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow's error types vary by version
        raise ConfigError(f"not a readable parquet file ({type(e).__name__}: {e})", source=str(path)) from None
    for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        yield from batch.to_pylist()


def json_row(raw: bytes, src: str, where: str) -> dict:
    """A JSONL line's object; a line that is not UTF-8 or not a JSON object is a ConfigError naming the file
    and the line."""
    try:
        row = json.loads(decode(raw, src, where=where) if isinstance(raw, bytes) else raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where} is not valid JSON ({e.msg})", source=src) from None
    if not isinstance(row, dict):
        raise ConfigError(f"{where} is not a JSON object", source=src)
    return row


def parse_source(arg: str, kind: str, weights: dict[str, float] | None = None, default_name: str | None = None) -> Source:
    """``[NAME=]SPEC`` from the command line (a name is needed only to tell several sources apart)."""
    name, sep, spec = arg.partition("=")
    if not sep or "/" in name or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        name, spec = default_name or _default_name(arg, kind), arg
    weight = (weights or {}).get(name, 1.0)
    if not weight >= 0:
        raise ConfigError("must be a number >= 0", field=f"weight.{name}", value=weight)
    return Source(name, kind, spec, float(weight))


def _default_name(spec: str, kind: str) -> str:
    if spec.startswith("hf:"):
        return re.sub(r"[^A-Za-z0-9_.-]", "_", spec[3:].split("#")[0]).strip("_") or kind
    return Path(spec).stem or kind
