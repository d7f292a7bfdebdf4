"""Loaders for the published benchmark layouts, from pre-extracted units (no HuBERT at evaluation).

Every loader returns the in-memory pair list the synthetic benchmarks use:
``[{"id", "positive": [segment, ...], "negative": [segment, ...], ...extra keys}]``.
Pairs always come from an explicit id, never from file order.

- Units file (``units.jsonl``, SlamKit's ``features.jsonl`` / ``tokens.jsonl``): one line per audio
  file, ``{"file_name": ..., "units": [...]}`` or ``{"file_name": ..., "audio_repr": "<Un3><Un49>..."}``.
  A file is found by its path without extension, or by a unique trailing part of it (``a/b.wav`` ~ ``b``).
- ZeroSpeech 2021 sWUGGY / sBLIMP: ``gold.csv`` with ``filename, ..., correct, id`` (lexical adds
  ``voice``): the files sharing an ``id`` (and ``voice``) form the pair(s); ``correct == 1`` is positive.
- Spoken StoryCloze / tStoryCloze: ``manifest.jsonl`` with ``{"id", "prompt", "correct", "incorrect"}``
  (unit-file references) and ``prompt_text``, ``correct_text``, ``incorrect_text``; or a folder per item
  ``<root>/<id>/`` whose units are named ``<id>/prompt``, ``<id>/correct``, ``<id>/incorrect`` in the units
  file and whose text is ``<root>/<id>/text.json`` (``{"prompt", "correct", "incorrect"}``).
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path, PurePosixPath

from scaling.errors import ConfigError
from scaling.jsonl import iter_jsonl
from trainer.data.tokenizer import N_UNITS

UNIT_FILES = ("units.jsonl", "features.jsonl", "tokens.jsonl")
_UNIT_TOKEN = re.compile(r"<Un(\d+)>")


AUDIO_EXT = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".npy", ".pt", ".units")


def _key(ref: str) -> tuple[str, ...]:
    """A file reference as path parts without an audio extension (``../a/b.wav`` -> ("a", "b"))."""
    s = str(ref).replace("\\", "/")
    if s.lower().endswith(AUDIO_EXT):
        s = s[: s.rindex(".")]
    return tuple(x for x in PurePosixPath(s).parts if x not in (".", "..", "/"))


class UnitIndex:
    """Pre-extracted units by audio file name."""

    def __init__(self, units: dict[str, list[int]], source: str = "units"):
        self.source = source
        self._full: dict[tuple[str, ...], list[int]] = {}
        for name, u in units.items():
            k = _key(name)
            if k in self._full:
                raise ConfigError("audio file listed twice", source=source, field="file_name", value=name)
            self._full[k] = u

    @classmethod
    def load(cls, path: str | Path) -> "UnitIndex":
        path = Path(path)
        units: dict[str, list[int]] = {}
        for i, row in iter_jsonl(path, what="units file"):
            name = row.get("file_name", row.get("file", row.get("id")))
            if name is None:
                raise ConfigError(f"line {i} has no 'file_name'", source=str(path), field="file_name")
            if "units" in row:
                u = row["units"]
            elif "audio_repr" in row:
                u = _parse_repr(row["audio_repr"], f"{path}: {name}")
            else:
                raise ConfigError(f"line {i} ({name}) has neither 'units' nor 'audio_repr'", source=str(path), field="units")
            if not isinstance(u, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in u):
                raise ConfigError(f"{name}: units must be a list of integers", source=str(path), field="units")
            bad = [x for x in u if not 0 <= x < N_UNITS]
            if bad:
                raise ConfigError(f"{name}: unit {bad[0]} is outside 0..{N_UNITS - 1}", source=str(path), field="units", value=bad[0])
            if str(name) in units:
                raise ConfigError("audio file listed twice", source=str(path), field="file_name", value=name)
            units[str(name)] = u
        return cls(units, source=str(path))

    def get(self, ref: str, *, item: str) -> list[int]:
        """Units of the audio ``ref``; a ConfigError naming ``item`` when none or several match."""
        k = _key(ref)
        if k in self._full:
            return self._full[k]
        hits = [v for kk, v in self._full.items() if len(k) <= len(kk) and kk[-len(k):] == k] if k else []
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise ConfigError(f"item {item}: no units for audio file {ref!r}", source=self.source, field="file_name", value=ref)
        raise ConfigError(f"item {item}: audio file {ref!r} matches {len(hits)} entries; name it by its path",
                          source=self.source, field="file_name", value=ref)


def _parse_repr(s: str, where: str) -> list[int]:
    units = [int(m) for m in _UNIT_TOKEN.findall(s)]
    if _UNIT_TOKEN.sub("", s).strip():
        raise ConfigError(f"{where}: audio_repr holds something other than <UnN> tokens", field="audio_repr")
    return units


def find_units(folder: Path) -> UnitIndex:
    for name in UNIT_FILES:
        if (folder / name).is_file():
            return UnitIndex.load(folder / name)
    raise ConfigError(f"no units file ({', '.join(UNIT_FILES)}); extract units first", source=str(folder))


def _speech(units: list[int]) -> dict:
    return {"modality": "speech", "units": units}


def load_zerospeech(gold: str | Path, units: UnitIndex | str | Path) -> list[dict]:
    """sWUGGY (lexical) or sBLIMP (syntactic) pairs from a ZeroSpeech 2021 gold.csv."""
    gold = Path(gold)
    if not gold.is_file():
        raise ConfigError("gold file not found", source=str(gold))
    index = units if isinstance(units, UnitIndex) else UnitIndex.load(units)
    with open(gold, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ConfigError("gold file is empty", source=str(gold))
    for col in ("filename", "correct", "id"):
        if col not in rows[0]:
            raise ConfigError("missing column", source=str(gold), field=col)
    groups: dict[tuple[str, str], dict] = {}
    for line, r in enumerate(rows, 2):
        if r["correct"] not in ("0", "1"):
            raise ConfigError(f"line {line}: 'correct' must be 0 or 1", source=str(gold), field="correct", value=r["correct"])
        g = groups.setdefault((r["id"], r.get("voice") or ""), {"pos": [], "neg": []})
        g["pos" if r["correct"] == "1" else "neg"].append(r)
    pairs = []
    for (pid, voice), g in groups.items():
        name = f"{pid}/{voice}" if voice else pid
        if len(g["pos"]) != 1 or not g["neg"]:
            raise ConfigError(f"item {name}: needs exactly one correct=1 and at least one correct=0 file "
                              f"(got {len(g['pos'])} and {len(g['neg'])})", source=str(gold), field="id", value=pid)
        pos = g["pos"][0]
        pos_units = index.get(pos["filename"], item=name)
        for k, neg in enumerate(g["neg"]):
            extra = {c: pos[c] for c in pos if c not in ("filename", "correct", "id")}
            pairs.append({
                "id": name if len(g["neg"]) == 1 else f"{name}#{k}",
                "positive": [_speech(pos_units)], "negative": [_speech(index.get(neg["filename"], item=name))],
                "files": [pos["filename"], neg["filename"]], **extra,
            })
    return pairs


_SC_KEYS = ("prompt", "correct", "incorrect")


def _storycloze_pair(rec: dict, index: UnitIndex | None, prompt: str, ending: str, source: str) -> dict:
    """One StoryCloze item: prompt in modality ``prompt``, ending in ``ending`` (speech or text)."""
    item = rec["id"]

    def seg(part: str, mod: str) -> dict:
        if mod == "speech":
            ref = rec.get(part)
            if ref is None:
                raise ConfigError(f"item {item}: no audio for '{part}'", source=source, field=part)
            return _speech(index.get(ref, item=item))
        text = rec.get(f"{part}_text")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"item {item}: no text for '{part}'", source=source, field=f"{part}_text")
        return {"modality": "text", "text": text}

    ctx = seg("prompt", prompt)
    extra = {k: v for k, v in rec.items() if k not in ("id",) + _SC_KEYS + tuple(f"{p}_text" for p in _SC_KEYS)}
    return {"id": item, "positive": [ctx, seg("correct", ending)], "negative": [ctx, seg("incorrect", ending)], **extra}


def storycloze_records(root: str | Path) -> list[dict]:
    """The items of a StoryCloze folder: ``manifest.jsonl`` or one sub-folder per item."""
    root = Path(root)
    man = root / "manifest.jsonl"
    if man.is_file():
        recs, seen = [], set()
        for _, r in iter_jsonl(man, required=("id",)):
            if r["id"] in seen:
                raise ConfigError("duplicate item id", source=str(man), field="id", value=r["id"])
            seen.add(r["id"])
            recs.append(r)
        return recs
    if not root.is_dir():
        raise ConfigError("StoryCloze folder not found", source=str(root))
    recs = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        r = {"id": d.name, **{k: f"{d.name}/{k}" for k in _SC_KEYS}}
        if (d / "text.json").is_file():
            t = json.loads((d / "text.json").read_text(encoding="utf-8"))
            r.update({f"{k}_text": t[k] for k in _SC_KEYS if k in t})
        recs.append(r)
    if not recs:
        raise ConfigError("no manifest.jsonl and no item folders", source=str(root))
    return recs


def load_storycloze(root: str | Path, units: UnitIndex | str | Path | None = None, *,
                    prompt: str = "speech", ending: str = "speech") -> list[dict]:
    """sStoryCloze / tStoryCloze (any multi-speaker variant) with the prompt and ending modalities given."""
    for f, v in (("prompt", prompt), ("ending", ending)):
        if v not in ("speech", "text"):
            raise ConfigError("must be 'speech' or 'text'", field=f, value=v)
    root = Path(root)
    recs = storycloze_records(root)
    index = None
    if "speech" in (prompt, ending):
        index = units if isinstance(units, UnitIndex) else (UnitIndex.load(units) if units else find_units(root))
    return [_storycloze_pair(r, index, prompt, ending, str(root)) for r in recs]


CROSS_MODAL = {"": ("speech", "speech"), "_s2s": ("speech", "speech"), "_s2t": ("speech", "text"),
               "_t2s": ("text", "speech"), "_t2t": ("text", "text")}


def split_cross_modal(name: str) -> tuple[str, str, str]:
    """``ssc_s2t`` -> ("ssc", "speech", "text"); a name without a suffix is speech -> speech."""
    for suf, (p, e) in CROSS_MODAL.items():
        if suf and name.endswith(suf):
            return name[: -len(suf)], p, e
    return name, "speech", "speech"
