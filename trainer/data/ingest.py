"""Reading real corpora into the utterance / document form that preparation packs.

Speech units (``--features``), one JSON object per line, any of:
  * SlamKit ``features.jsonl``: ``{"file_name", "units": [int], "duration": [frames]}``; ``duration`` is the
    run length of each deduplicated unit in 40 ms frames (what ``scaling data extract`` writes).
  * SlamKit ``tokens.jsonl``: ``{"file_name", "audio_repr": "<Un3><Un49>..."}``: units without durations, so
    usable for the speech-only stream but not for interleaving (word times cannot be mapped to units).
  * our own schema (the synthetic corpus's ``speech_*.jsonl``): ``{"id", "units", "durations",
    "words", "starts", "ends"}`` with times in seconds; alignments travel inside the line.
Word alignments (``--alignments``), matched to utterances by file stem (``../audio/audio2.flac`` -> ``audio2``):
  * a folder of SlamKit alignment files, one ``<stem>.json`` per audio file:
    ``{"aligned_text": [[" word", start_s, end_s], ...]}`` (words carry their leading space; it is stripped);
  * or one JSONL file, each line ``{"file_name", "aligned_text": [...]}``.
Text (``--text``): a ``.jsonl`` file (``{"text": ...}`` per line), a plain-text file (one document per
non-empty line), or a folder of such files (sorted).
Every reading error names the file, the line, the field and the value.

Preparation streams: it parses one record at a time with :func:`parse_speech_row` (records come from
:mod:`trainer.data.sources`), finds alignments through :class:`AlignmentIndex` (a folder's files are
matched by their own stem, a JSONL's lines by ``file_name``) and checks them with
:func:`check_alignment`. :func:`read_features`, :func:`read_alignments` and :func:`attach_alignments` read
whole small files into memory (tests, the example data).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from scaling.errors import ConfigError
from scaling.jsonl import iter_jsonl
from scaling.textio import decode, read_text as read_checked
from trainer.data.sources import KEY_RE, Source, json_row, stem, utterance_key
from trainer.data.interleave import FRAME_S
from trainer.data.tokenizer import N_UNITS

_UNIT_RE = re.compile(r"<Un(\d+)>")
ALIGN_TOLERANCE_S = FRAME_S  # the conv stack drops the last partial frame: words may end up to one frame later
OVERLAP_TOLERANCE_S = 0.01  # aligners round boundaries: neighbours may overlap by a rounding step


def _iter_jsonl(path: Path):
    return iter_jsonl(path)


def _int_array(values, src: str, where: str, field: str) -> np.ndarray:
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iuf"):
        raise ConfigError(f"{where}: not a flat list of integers", source=src, field=field)
    if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
        raise ConfigError(f"{where}: not a flat list of integers", source=src, field=field)
    return arr.astype(np.int64)


def _check_units(units: np.ndarray, src: str, where: str, field: str = "units", n_units: int = N_UNITS) -> None:
    bad = (units < 0) | (units >= n_units)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ConfigError(f"{where}: unit #{k} is outside 0..{n_units - 1}", source=src, field=field, value=int(units[k]))


def parse_speech_row(row: dict, src: str, where: str, n_units: int = N_UNITS) -> dict:
    """One speech record (a JSONL line or a ``datasets`` / parquet row) as an utterance ``{"id", "file_name",
    "units", "durations" (or None), "words"?, "starts"?, "ends"?, "source", "line"}``; ``where`` ("line 3",
    "row 3") goes into every error message. Units must lie in the inventory 0..n_units-1 (``scaling data
    prepare --units``, default 500)."""
    if not isinstance(row, dict):
        raise ConfigError(f"{where} is not a JSON object", source=src)
    if "audio_repr" in row:
        rep = row["audio_repr"]
        if not isinstance(rep, str):
            raise ConfigError(f"{where}: audio_repr must be a string", source=src, field="audio_repr")
        units = np.array([int(m) for m in _UNIT_RE.findall(rep)], dtype=np.int64)
        if _UNIT_RE.sub("", rep).strip():
            bad = _UNIT_RE.sub(" ", rep).split()[0]
            raise ConfigError(f"{where}: audio_repr holds something other than <UnN> tokens", source=src,
                              field="audio_repr", value=bad[:40])
        durations = None
    elif "units" in row:
        units = _int_array(row["units"], src, where, "units")
        key = "durations" if "durations" in row else "duration" if "duration" in row else None
        if key is None:
            raise ConfigError(f"{where} has units but no 'duration' (SlamKit) or 'durations'", source=src, field="duration")
        durations = _int_array(row[key], src, where, key)
        if len(durations) != len(units):
            raise ConfigError(f"{where}: {len(units)} units but {len(durations)} durations", source=src, field=key,
                              value=len(durations))
        if durations.size and durations.min() < 1:
            raise ConfigError(f"{where}: durations must be >= 1 frame", source=src, field=key, value=int(durations.min()))
    elif "audio" in row:
        raise ConfigError(f"{where} has audio but no units: run `scaling data extract` on the audio first and "
                          "prepare its features.jsonl", source=src, field="audio")
    else:
        raise ConfigError(f"{where} has neither 'units' nor 'audio_repr'", source=src, field="units")
    _check_units(units, src, where, "audio_repr" if durations is None else "units", n_units)
    if units.size == 0:
        raise ConfigError(f"{where} has no units", source=src, field="units")
    name = utterance_key(row)
    if name is None:
        raise ConfigError(f"{where} has neither 'file_name' nor 'id'", source=src, field="file_name")
    utt = {"id": name, "file_name": str(row.get("file_name", name)), "units": units, "durations": durations,
           "source": src, "line": where}
    if "words" in row:
        for k in ("starts", "ends"):
            if k not in row:
                raise ConfigError(f"{where} has 'words' but no '{k}'", source=src, field=k)
        utt.update(words=[str(w).strip() for w in row["words"]],
                   starts=[float(x) for x in row["starts"]], ends=[float(x) for x in row["ends"]])
    elif row.get("aligned_text") is not None:
        words, starts, ends = _parse_aligned(row["aligned_text"], src, where)
        utt.update(words=words, starts=starts, ends=ends)
    return utt


def read_features(path: str | Path) -> list[dict]:
    """Every utterance of one features file (in memory: for small files and tests; preparation streams)."""
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise ConfigError("features file not found", source=src)
    utts = [parse_speech_row(row, src, f"line {i}") for i, row in _iter_jsonl(path)]
    if not utts:
        raise ConfigError("the features file is empty", source=src)
    return utts


def _parse_aligned(aligned, src: str, where: str) -> tuple[list[str], list[float], list[float]]:
    if not isinstance(aligned, list):
        raise ConfigError(f"{where}: aligned_text must be a list of [word, start, end]", source=src, field="aligned_text")
    try:  # the common case in bulk; anything unusual goes through the item-by-item checks below
        words, starts, ends = zip(*aligned) if aligned else ((), (), ())
        if all(type(w) is str for w in words) and all(len(item) == 3 for item in aligned):
            s, e = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
            stripped = [w.strip() for w in words]
            if all(stripped) and np.isfinite(s).all() and np.isfinite(e).all():
                return stripped, s.tolist(), e.tolist()
    except (TypeError, ValueError):
        pass
    words, starts, ends = [], [], []
    for k, item in enumerate(aligned):
        if not (isinstance(item, (list, tuple)) and len(item) == 3 and isinstance(item[0], str)):
            raise ConfigError(f"{where}: aligned_text[{k}] is not [word, start, end]", source=src, field="aligned_text",
                              value=item)
        try:
            s, e = float(item[1]), float(item[2])
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: aligned_text[{k}] has non-numeric times", source=src, field="aligned_text",
                              value=item) from None
        w = item[0].strip()
        if not w:
            continue
        words.append(w)
        starts.append(s)
        ends.append(e)
    return words, starts, ends


def read_alignments(path: str | Path) -> dict[str, dict]:
    """``{stem: {"words", "starts", "ends", "source"}}`` from a folder of JSON files or one JSONL file."""
    path = Path(path)
    out: dict[str, dict] = {}
    if path.is_dir():
        files = sorted(path.rglob("*.json"))
        if not files:
            raise ConfigError("no alignment files (*.json) in the folder", source=str(path))
        for f in files:
            try:
                obj = json.loads(read_checked(f))
            except json.JSONDecodeError as e:
                raise ConfigError(f"not valid JSON ({e.msg})", source=str(f)) from None
            if not isinstance(obj, dict) or "aligned_text" not in obj:
                raise ConfigError("no 'aligned_text'", source=str(f), field="aligned_text")
            words, starts, ends = _parse_aligned(obj["aligned_text"], str(f), "file")
            key = stem(obj.get("file_name", f.name))
            out[key] = {"words": words, "starts": starts, "ends": ends, "source": str(f)}
    elif path.is_file():
        for i, row in _iter_jsonl(path):
            for k in ("file_name", "aligned_text"):
                if k not in row:
                    raise ConfigError(f"line {i} has no '{k}'", source=str(path), field=k)
            words, starts, ends = _parse_aligned(row["aligned_text"], str(path), f"line {i}")
            out[stem(row["file_name"])] = {"words": words, "starts": starts, "ends": ends, "source": f"{path}:{i}"}
        if not out:
            raise ConfigError("the alignments file is empty", source=str(path))
    else:
        raise ConfigError("alignments folder or file not found", source=str(path))
    return out


def key_hash(key: str) -> int:
    """A 64-bit hash of an utterance id (the plan keeps these, not the strings: 8 bytes per utterance)."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


class AlignmentIndex:
    """Word alignments looked up by utterance stem without holding them in memory.

    A JSONL file is indexed by (hash of stem, byte offset) and a line is read when asked for; a folder of
    ``<stem>.json`` files by its file names. Picklable, so worker processes reuse the index."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            files = sorted(self.path.rglob("*.json"))
            if not files:
                raise ConfigError("no alignment files (*.json) in the folder", source=str(self.path))
            self.files = {f.stem: str(f) for f in files}
            self.hashes = np.sort(np.fromiter((key_hash(k) for k in self.files), dtype=np.uint64, count=len(self.files)))
        elif self.path.is_file():
            self.files = None
            hashes, offsets, pos = [], [], 0
            with open(self.path, "rb") as fh:
                for i, line in enumerate(fh, 1):
                    if line.strip():
                        m = KEY_RE["file_name"].search(line)
                        name = (json.loads(decode(m.group(1), self.path, where=f"line {i}", offset=pos,
                                                   start=m.start(1), field="file_name"))
                                if m else _alignment_row(line, str(self.path), i).get("file_name"))
                        if name is None:
                            raise ConfigError(f"line {i} has no 'file_name'", source=str(self.path), field="file_name")
                        hashes.append(key_hash(stem(name)))
                        offsets.append(pos)
                    pos += len(line)
            if not hashes:
                raise ConfigError("the alignments file is empty", source=str(self.path))
            order = np.argsort(np.asarray(hashes, dtype=np.uint64), kind="stable")
            self.hashes = np.asarray(hashes, dtype=np.uint64)[order]
            self.offsets = np.asarray(offsets, dtype=np.int64)[order]
        else:
            raise ConfigError("alignments folder or file not found", source=str(self.path))

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_fh"}

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        return np.isin(hashes, self.hashes)

    def get(self, key: str) -> dict | None:
        """``{"words", "starts", "ends", "source"}`` of an utterance, or None."""
        if self.files is not None:
            f = self.files.get(key)
            if f is None:
                return None
            try:
                obj = json.loads(read_checked(f))
            except json.JSONDecodeError as e:
                raise ConfigError(f"not valid JSON ({e.msg})", source=f) from None
            if not isinstance(obj, dict) or "aligned_text" not in obj:
                raise ConfigError("no 'aligned_text'", source=f, field="aligned_text")
            words, starts, ends = _parse_aligned(obj["aligned_text"], f, "file")
            return {"words": words, "starts": starts, "ends": ends, "source": f}
        h = np.uint64(key_hash(key))
        lo, hi = np.searchsorted(self.hashes, h, "left"), np.searchsorted(self.hashes, h, "right")
        if lo == hi:
            return None
        if getattr(self, "_fh", None) is None:  # one handle per process (not pickled)
            self._fh = open(self.path, "rb")
        for k in range(lo, hi):
            self._fh.seek(int(self.offsets[k]))
            row = _alignment_row(self._fh.readline(), str(self.path), f"at byte {int(self.offsets[k])}")
            if stem(row["file_name"]) == key:
                where = f"{self.path} (file_name {row['file_name']!r})"
                words, starts, ends = _parse_aligned(row["aligned_text"], where, "aligned_text")
                return {"words": words, "starts": starts, "ends": ends, "source": where}
        return None


def _alignment_row(line: bytes, src: str, where) -> dict:
    try:
        row = json.loads(decode(line, src, where=f"line {where}"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"line {where} is not valid JSON ({e.msg})", source=src) from None
    for k in ("file_name", "aligned_text"):
        if not isinstance(row, dict) or k not in row:
            raise ConfigError(f"line {where} has no '{k}'", source=src, field=k)
    return row


def attach_alignments(utts: list[dict], aligns: dict[str, dict]) -> int:
    """Copy each alignment onto its utterance (by stem); returns how many utterances got one."""
    n = 0
    for u in utts:
        a = aligns.get(stem(u["file_name"]))
        if a is None:
            continue
        if u["durations"] is None:
            raise ConfigError("alignments need unit durations, but these features come from a tokens.jsonl "
                              "(audio_repr has no durations); pass the features.jsonl (units + duration) instead, "
                              "or drop --alignments to prepare the speech-only stream", source=u["source"],
                              field="audio_repr")
        u.update(words=a["words"], starts=a["starts"], ends=a["ends"], align_source=a["source"])
        n += 1
    if aligns and n == 0:
        some = next(iter(aligns))
        raise ConfigError(f"no alignment matches any utterance by file stem (alignments e.g. {some!r}, "
                          f"utterances e.g. {utts[0]['id']!r})", source=next(iter(aligns.values()))["source"],
                          field="file_name")
    return n


def check_alignment(u: dict) -> float:
    """Word times checked against the audio; returns the share of the audio inside aligned words.

    Errors (naming the alignment file and the word): as many times as words; a time that is negative,
    not finite, or a word that ends before it starts; a word ending after the audio (one frame of
    tolerance); words out of time order; a word starting before the previous one ends (more than
    ``OVERLAP_TOLERANCE_S``). Out-of-order times would otherwise map speech spans to empty unit ranges
    and silently empty the interleaved stream's speech."""
    src = u.get("align_source", u["source"])
    words, starts, ends = u["words"], np.asarray(u["starts"], float), np.asarray(u["ends"], float)
    if not (len(words) == len(starts) == len(ends)):
        raise ConfigError(f"utterance {u['id']}: words, starts and ends differ in length", source=src, field="words")
    length = float(np.sum(u["durations"])) * FRAME_S
    bad = (starts < 0) | (ends > length + ALIGN_TOLERANCE_S) | (ends < starts) | ~np.isfinite(starts) | ~np.isfinite(ends)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        why = "it ends before it starts" if ends[k] < starts[k] else f"outside the audio's {length:.2f} s"
        raise ConfigError(f"utterance {u['id']}: word {words[k]!r} spans [{starts[k]}, {ends[k]}] s, {why}", source=src,
                          field="aligned_text", value=[float(starts[k]), float(ends[k])])
    if len(words) > 1:
        back = np.flatnonzero(starts[1:] < starts[:-1])
        if back.size:
            k = int(back[0]) + 1
            raise ConfigError(f"utterance {u['id']}: words out of time order: word {k} {words[k]!r} starts at "
                              f"{starts[k]} s, before word {k - 1} {words[k - 1]!r} at {starts[k - 1]} s",
                              source=src, field="aligned_text", value=float(starts[k]))
        over = np.flatnonzero(starts[1:] < ends[:-1] - OVERLAP_TOLERANCE_S)
        if over.size:
            k = int(over[0]) + 1
            raise ConfigError(f"utterance {u['id']}: overlapping words: word {k} {words[k]!r} starts at {starts[k]} s, "
                              f"before word {k - 1} {words[k - 1]!r} ends at {ends[k - 1]} s", source=src,
                              field="aligned_text", value=float(starts[k]))
    covered = float(np.sum(np.minimum(ends, length) - np.minimum(starts, length)))
    return covered / length if length > 0 else 0.0


def read_text(path: str | Path) -> list[str]:
    """Every document of a text input (any form :mod:`trainer.data.sources` reads), in memory: for small inputs."""
    docs = [d for src, where, raw in Source("text", "text", str(path)).records()
            if (d := parse_text(src, where, raw)) is not None]
    if not docs:
        raise ConfigError("the text corpus is empty", source=str(path))
    return docs


def parse_speech(src: str, where: str, raw, n_units: int = N_UNITS) -> dict:
    return parse_speech_row(json_row(raw, src, where) if isinstance(raw, bytes) else raw, src, where, n_units)


def parse_text(src: str, where: str, raw) -> str | None:
    """A text record's document, or None when it is empty."""
    if isinstance(raw, str):
        return raw if raw.strip() else None
    row = json_row(raw, src, where) if isinstance(raw, bytes) else raw
    if "text" not in row:
        raise ConfigError(f"{where} has no 'text'", source=src, field="text")
    if not isinstance(row["text"], str):
        raise ConfigError(f"{where}: text is not a string", source=src, field="text")
    return row["text"] if row["text"].strip() else None
