"""Loaders for the published benchmark layouts, from pre-extracted units (no HuBERT at evaluation).

Every loader returns the in-memory pair list the synthetic benchmarks use:
``[{"id", "positive": [segment, ...], "negative": [segment, ...], ...extra keys}]``.
Pairs come from an explicit id, a file name, or (SlamKit's positional sets) the sorted integer index
of a file name, never from the order of a directory listing.

- Units file (``units.jsonl``, SlamKit's ``features.jsonl`` / ``tokens.jsonl``): one line per audio
  file, ``{"file_name": ..., "units": [...]}`` or ``{"file_name": ..., "audio_repr": "<Un3><Un49>..."}``,
  in the set's folder or, shared by several sets (extracted over a whole reference folder), beside it.
  A file of set ``<set>`` is found by ``<set>/<path in the set>`` first (a trailing part of the
  listed path), then by its path without extension, or by a unique trailing part of it (``a/b.wav`` ~
  ``b``); the index of every trailing part is built once, so a lookup is a dict access.
- ZeroSpeech 2021 sWUGGY (lexical) / sBLIMP (syntactic): ``gold.csv``. Lexical: every word row is paired
  with each non-word row of the same (id, voice), as the official scorer's merge does; the pairs of an id
  form one group. Syntactic (``type`` column present): the k-th ``correct == 1`` row is paired with the
  k-th ``correct == 0`` row, as the official scorer does (refused when the two rows differ in id or
  voice); the group is (type, subtype, id). See ``trainer.eval.zerospeech`` for the aggregation.
- StoryCloze (spoken / topic, any multi-speaker variant), detected in this order:
  1. ``manifest.jsonl``: ``{"id", "prompt", "correct", "incorrect"}`` (unit-file references) and
     ``prompt_text``, ``correct_text``, ``incorrect_text``;
  2. SlamKit's cross-modal sets: ``<base>_mutual``, ``<base>_correct``, ``<base>_incorrect`` as ``.wav``
     (units in the units file) and ``.txt`` files, flat or in speaker sub-folders;
  3. SlamKit's whole-file sets (``slamkit/metric/modelling_metric.py``: StoryCloze, sWUGGY, sBLIMP),
     audio files ``<i>_<anything>`` (``<i>+<anything>`` for sBLIMP), flat or in sub-folders
     (speakers, sub-sets). When every name says ``correct`` or ``incorrect`` after its index
     (``12_correct.wav``), the two files of index ``i`` are paired by that word; otherwise the files of
     each folder are paired as SlamKit pairs them: sorted by integer index, (2k, 2k+1) = (positive,
     negative) (``0_story.wav``, ``1_story.wav``). SlamKit pairs the named files by position too, the
     directory listing breaking the tie between ``<i>_correct`` and ``<i>_incorrect``: a folder whose
     listing would make SlamKit take an ``_incorrect`` file as a positive gets a
     :class:`PairingOrderWarning`. With a ZeroSpeech ``gold.csv`` in the folder, sWUGGY / sBLIMP pairs
     carry the official aggregation's groups (:func:`load_slamkit_zerospeech`);
  4. one folder per item ``<root>/<id>/`` with units ``<id>/prompt``, ``<id>/correct``, ``<id>/incorrect``
     and optionally ``<root>/<id>/text.json`` (``{"prompt", "correct", "incorrect"}``).
"""
from __future__ import annotations

import copy
import csv
import io
import json
import os
import re
import warnings
from pathlib import Path

from scaling.errors import ConfigError
from scaling.jsonl import iter_jsonl
from scaling.textio import read_text
from trainer.data.tokenizer import N_UNITS

UNIT_FILES = ("units.jsonl", "features.jsonl", "tokens.jsonl")
_UNIT_TOKEN = re.compile(r"<Un(\d+)>")

AUDIO_EXT = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".npy", ".pt", ".units")
#: Keys a loader sets on a pair; a gold.csv column of the same name would overwrite them.
RESERVED = ("positive", "negative", "files", "group", "task", "cross_modal")
_AMBIGUOUS = object()


def check_segments(segs, *, source: str, where: str, field: str, modalities=("speech", "text"),
                   n_units: int | None = None) -> list:
    """``segs`` as a non-empty list of segments (``{"modality": "speech", "units": [...]}`` or
    ``{"modality": "text", "text": "..."}``); errors name the file, ``where`` (line and item) and the field.
    With ``n_units`` (the tokenizer's inventory), every unit must lie in 0..n_units-1."""
    if not isinstance(segs, list) or not segs:
        raise ConfigError(f"{where}: needs a non-empty list of segments", source=source, field=field, value=segs)
    for k, seg in enumerate(segs):
        at = f"{field}[{k}]"
        mod = seg.get("modality") if isinstance(seg, dict) else None
        if mod == "speech" and not seg.get("units"):
            raise ConfigError(f"{where}: speech segment without units", source=source, field=f"{at}.units",
                              value=seg.get("units"))
        if mod == "text" and (not isinstance(seg.get("text"), str) or not seg["text"].strip()):
            raise ConfigError(f"{where}: text segment without text", source=source, field=f"{at}.text", value=seg.get("text"))
        if mod not in modalities:
            raise ConfigError(f"{where}: unknown modality", source=source, field=f"{at}.modality", value=mod)
        if mod == "speech" and n_units is not None:
            _check_unit_range(seg["units"], n_units, where=where, source=source, field=f"{at}.units")
    return segs


def _check_unit_range(units, n_units: int, *, where: str, source: str, field: str) -> None:
    import numpy as np

    arr = np.asarray(units) if isinstance(units, list) and units and type(units[0]) is int else None
    if arr is not None and arr.ndim == 1 and arr.dtype.kind == "i" and 0 <= arr.min() and arr.max() < n_units:
        return  # the common case, in one vectorised pass
    bad = [x for x in units if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < n_units]
    if bad:
        raise ConfigError(f"{where}: unit {bad[0]!r} is outside 0..{n_units - 1} (the speech vocabulary has {n_units} "
                          "units)", source=source, field=field, value=bad[0])


def _key(ref: str) -> tuple[str, ...]:
    """A file reference as path parts without an audio extension (``../a/b.wav`` -> ("a", "b"))."""
    s = str(ref).replace("\\", "/")
    if s.lower().endswith(AUDIO_EXT):
        s = s[: s.rindex(".")]
    # plain string split: PurePosixPath costs ~10 us a name, which shows at 40k files
    return tuple(x for x in s.split("/") if x not in ("", ".", ".."))


class UnitIndex:
    """Pre-extracted units by audio file name.

    Every trailing part of every name (``a/b/c``, ``b/c``, ``c``) is indexed once; a part shared by two
    names is marked ambiguous, so a lookup is one dict access (40k files index in well under a second:
    ``benchmarks/bench_unit_lookup.py``)."""

    def __init__(self, units: dict[str, list[int]], source: str = "units"):
        self.source = source
        self.scope: tuple[str, ...] = ()  # a set's folder name: "<set>/<ref>" is looked up first
        self._full: dict[tuple[str, ...], list[int]] = {}
        self._tail: dict[tuple[str, ...], object] = {}
        for name, u in units.items():
            k = _key(name)
            if k in self._full:
                raise ConfigError("audio file listed twice", source=source, field="file_name", value=name)
            self._full[k] = u
            for i in range(1, len(k)):
                t = k[i:]
                self._tail[t] = _AMBIGUOUS if t in self._tail else u

    @classmethod
    def load(cls, path: str | Path, n_units: int = N_UNITS) -> "UnitIndex":
        """A units file; every unit must lie in the speech vocabulary's inventory 0..n_units-1."""
        path = Path(path)
        units: dict[str, list[int]] = {}
        for i, row in iter_jsonl(path, what="units file"):
            name = row.get("file_name", row.get("file", row.get("id")))
            if name is None:
                raise ConfigError(f"line {i} has no 'file_name'", source=str(path), field="file_name")
            if "units" in row:
                u = row["units"]
            elif "audio_repr" in row:
                u = _parse_repr(row["audio_repr"], f"line {i} ({name})", str(path))
            else:
                raise ConfigError(f"line {i} ({name}) has neither 'units' nor 'audio_repr'", source=str(path), field="units")
            field = "units" if "units" in row else "audio_repr"
            if not isinstance(u, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in u):
                raise ConfigError(f"line {i} ({name}): units must be a list of integers", source=str(path), field=field)
            if not u:
                # an empty sequence has nothing to score: its NLL would be 0 and win every pair
                raise ConfigError(f"line {i} ({name}): no units", source=str(path), field=field, value=u)
            _check_unit_range(u, n_units, where=f"line {i} ({name})", source=str(path), field=field)
            if str(name) in units:
                raise ConfigError(f"line {i}: audio file listed twice", source=str(path), field="file_name", value=name)
            units[str(name)] = u
        return cls(units, source=str(path))

    def scoped(self, name: str) -> "UnitIndex":
        """The same index (shared, not copied) looking a file ``ref`` up as ``<name>/<ref>`` first: a
        units file extracted over a whole reference folder serves every set in it, whose files are
        named alike (``ssc/0_correct.wav``, ``tsc/0_correct.wav``)."""
        view = copy.copy(self)
        view.scope = _key(name)
        return view

    def _find(self, k: tuple[str, ...]):
        if k in self._full:
            return self._full[k]
        return self._tail.get(k) if k else None

    def _lookup(self, ref: str):
        k = _key(ref)
        if self.scope and k:
            hit = self._find(self.scope + k)
            if hit is not None and hit is not _AMBIGUOUS:
                return hit
        return self._find(k)

    def __contains__(self, ref: str) -> bool:
        hit = self._lookup(ref)
        return hit is not None and hit is not _AMBIGUOUS

    def get(self, ref: str, *, item: str) -> list[int]:
        """Units of the audio ``ref``; a ConfigError naming ``item`` when none or several match."""
        hit = self._lookup(ref)
        if hit is None:
            raise ConfigError(f"item {item}: no units for audio file {ref!r}", source=self.source, field="file_name", value=ref)
        if hit is _AMBIGUOUS:
            scoped = f" (nor does {'/'.join(self.scope)}/{ref} name one)" if self.scope else ""
            raise ConfigError(f"item {item}: audio file {ref!r} matches several entries of the units file{scoped}; "
                              "give this set a units file of its own (`scaling data extract` over the set's folder)",
                              source=self.source, field="file_name", value=ref)
        return hit


def _parse_repr(s: str, where: str, source: str) -> list[int]:
    units = [int(m) for m in _UNIT_TOKEN.findall(s)]
    if _UNIT_TOKEN.sub("", s).strip():
        raise ConfigError(f"{where}: audio_repr holds something other than <UnN> tokens", source=source, field="audio_repr")
    return units


def find_units(folder: Path, n_units: int = N_UNITS) -> UnitIndex:
    """The units file of the set ``folder``: its own, else one beside it shared by several sets
    (SlamKit extracts one ``features.jsonl`` over a whole reference folder); files are looked up as
    ``<set>/<path in the set>`` first (:meth:`UnitIndex.scoped`)."""
    folder = Path(folder)
    for d in (folder, folder.parent):
        for name in UNIT_FILES:
            if (d / name).is_file():
                return UnitIndex.load(d / name, n_units).scoped(folder.name)
    raise ConfigError(f"no units file ({', '.join(UNIT_FILES)}) in the folder or beside it; extract units first",
                      source=str(folder))


def _speech(units: list[int]) -> dict:
    return {"modality": "speech", "units": units}


# -- ZeroSpeech 2021 ---------------------------------------------------------------------------------
def load_zerospeech(gold: str | Path, units: UnitIndex | str | Path, n_units: int = N_UNITS) -> list[dict]:
    """sWUGGY (lexical) or sBLIMP (syntactic) pairs from a ZeroSpeech 2021 gold.csv, each with
    ``files`` (word, non-word file names), ``task`` ("lexical" / "syntactic"), ``group`` (the official
    aggregation unit) and the gold columns of the correct row."""
    gold = Path(gold)
    rows, header = _read_gold(gold)
    index = units if isinstance(units, UnitIndex) else UnitIndex.load(units, n_units)
    if "type" in header:
        return _syntactic_pairs(rows, index, str(gold))
    return _lexical_pairs(rows, index, str(gold))


def _read_gold(gold: Path) -> tuple[list[dict], list[str]]:
    """The rows of a gold.csv (each with its ``_line``) and its header, checked."""
    if not gold.is_file():
        raise ConfigError("gold file not found", source=str(gold))
    try:
        reader = csv.DictReader(io.StringIO(read_text(gold, what="gold file"), newline=""))
        rows = list(reader)
    except csv.Error as e:
        raise ConfigError(f"line {reader.line_num}: not valid CSV ({e})", source=str(gold)) from None
    header = reader.fieldnames or []
    if not rows:
        raise ConfigError("gold file is empty", source=str(gold))
    for col in header:
        if col in RESERVED:
            raise ConfigError(f"line 1: column name {col!r} is reserved (the loader sets it on every pair); "
                              "rename the column", source=str(gold), field=col)
    for col in ("filename", "correct", "id"):
        if col not in header:
            raise ConfigError("line 1: missing column", source=str(gold), field=col)
    for line, r in enumerate(rows, 2):
        if r["correct"] not in ("0", "1"):
            raise ConfigError(f"line {line}: 'correct' must be 0 or 1", source=str(gold), field="correct", value=r["correct"])
        r["_line"] = line
    return rows, header


def _extra(row: dict) -> dict:
    return {c: v for c, v in row.items() if c not in ("filename", "correct", "id", "_line")}


def _lexical_pairs(rows: list[dict], index: UnitIndex, source: str) -> list[dict]:
    groups: dict[tuple[str, str], dict] = {}
    for r in rows:
        g = groups.setdefault((r["id"], r.get("voice") or ""), {"pos": [], "neg": []})
        g["pos" if r["correct"] == "1" else "neg"].append(r)
    pairs = []
    for (pid, voice), g in groups.items():
        name = f"{pid}/{voice}" if voice else pid
        if len(g["pos"]) != 1 or not g["neg"]:
            raise ConfigError(f"item {name}: needs exactly one correct=1 and at least one correct=0 file "
                              f"(got {len(g['pos'])} and {len(g['neg'])})", source=source, field="id", value=pid)
        pos = g["pos"][0]
        pos_units = index.get(pos["filename"], item=name)
        for k, neg in enumerate(g["neg"]):
            pairs.append({
                **_extra(pos),
                "id": name if len(g["neg"]) == 1 else f"{name}#{k}",
                "positive": [_speech(pos_units)], "negative": [_speech(index.get(neg["filename"], item=name))],
                "files": [pos["filename"], neg["filename"]], "task": "lexical", "group": pid,
            })
    return pairs


def _syntactic_pairs(rows: list[dict], index: UnitIndex, source: str) -> list[dict]:
    good = [r for r in rows if r["correct"] == "1"]
    bad = [r for r in rows if r["correct"] == "0"]
    if len(good) != len(bad):
        raise ConfigError(f"{len(good)} correct=1 rows but {len(bad)} correct=0 rows; the official scorer pairs "
                          "them by position, so the counts must be equal", source=source, field="correct")
    pairs, seen = [], {}
    for p, q in zip(good, bad):
        if (p["id"], p.get("voice")) != (q["id"], q.get("voice")):
            raise ConfigError(f"line {p['_line']} (id {p['id']}) is paired with line {q['_line']} (id {q['id']}): the "
                              "official scorer pairs the k-th correct row with the k-th incorrect row; order the "
                              "rows so that each pair shares its id and voice", source=source, field="id", value=q["id"])
        name = f"{p['id']}/{p['voice']}" if p.get("voice") else p["id"]
        k = seen.get(name, 0)
        seen[name] = k + 1
        pairs.append({
            **_extra(p),
            "id": name if k == 0 else f"{name}#{k}",
            "positive": [_speech(index.get(p["filename"], item=name))],
            "negative": [_speech(index.get(q["filename"], item=name))],
            "files": [p["filename"], q["filename"]], "task": "syntactic",
            "group": f"{p.get('type', '')}/{p.get('subtype', '')}/{p['id']}",
        })
    return pairs


def load_zerospeech_folder(folder: str | Path, n_units: int = N_UNITS) -> list[dict]:
    """``<folder>/gold.csv`` with the folder's units: SlamKit's layout (:func:`load_slamkit_zerospeech`)
    when the folder holds SlamKit's indexed files, else the official one (:func:`load_zerospeech`)."""
    folder = Path(folder)
    if has_slamkit_files(folder):
        return load_slamkit_zerospeech(folder, folder / "gold.csv", n_units=n_units)
    return load_zerospeech(folder / "gold.csv", find_units(folder, n_units))


def load_slamkit_zerospeech(root: str | Path, gold: str | Path, units: UnitIndex | str | Path | None = None,
                            n_units: int = N_UNITS) -> list[dict]:
    """SlamKit's sWUGGY / sBLIMP folder (``[<sub>/]<i>_<name>.wav``, ``[<sub>/]<i>+<name>.wav``) paired as
    SlamKit pairs it (:func:`storycloze_records`), joined to a ZeroSpeech gold.csv: the file
    ``<i>_<name>`` is the gold row whose ``filename`` is ``<name>``. Each pair carries ``files`` (the gold
    file names), ``task``, ``group`` and the gold columns of its correct row as :func:`load_zerospeech`
    gives them, so the official aggregation applies to SlamKit's pairs (and SlamKit's plain mean over
    pairs stands beside it). A pair whose lower-index file gold.csv marks incorrect is turned round here
    (SlamKit scores it the other way round: a :class:`PairingOrderWarning` counts them)."""
    root, gold = Path(root), Path(gold)
    rows, header = _read_gold(gold)
    task = "syntactic" if "type" in header else "lexical"
    by_name: dict[tuple[str, ...], dict] = {}
    for r in rows:
        k = _key(r["filename"])
        if k in by_name:
            raise ConfigError(f"line {r['_line']}: file already listed on line {by_name[k]['_line']}", source=str(gold),
                              field="filename", value=r["filename"])
        by_name[k] = r
    files = _files(root) if root.is_dir() else []
    if not _indexed(files):
        raise ConfigError("no SlamKit files (<i>_<name>.wav, <i>+<name>.wav) in the folder or its sub-folders",
                          source=str(root))
    recs = _whole_file_records(root, files)
    index = units if isinstance(units, UnitIndex) else (UnitIndex.load(units, n_units).scoped(root.name) if units
                                                        else find_units(root, n_units))

    def row(ref: str, item: str) -> dict:
        m = _INDEXED.match(Path(ref).name)
        r = by_name.get(_key(m.group(3)))
        if r is None:
            raise ConfigError(f"item {item}: no row has filename {m.group(3)!r}, the name of {ref} after its index (a "
                              f"SlamKit file <i>{m.group(2)}<filename> is the gold row of <filename>)", source=str(gold),
                              field="filename", value=m.group(3))
        return r

    pairs, swapped = [], 0
    for rec in recs:
        item, a, b = rec["id"], rec["correct"], rec["incorrect"]
        ra, rb = row(a, item), row(b, item)
        if (ra["correct"], rb["correct"]) == ("0", "1"):
            a, b, ra, rb = b, a, rb, ra
            swapped += 1
        if (ra["correct"], rb["correct"]) != ("1", "0"):
            raise ConfigError(f"item {item}: SlamKit pairs {a} with {b}, but lines {ra['_line']} and {rb['_line']} both "
                              f"say correct={ra['correct']}", source=str(gold), field="correct", value=rb["correct"])
        if (ra["id"], ra.get("voice")) != (rb["id"], rb.get("voice")):
            raise ConfigError(f"item {item}: SlamKit pairs {a} with {b}, but lines {ra['_line']} and {rb['_line']} differ "
                              "in id or voice", source=str(gold), field="id", value=rb["id"])
        pairs.append({
            **_extra(ra), "id": item,
            "positive": [_speech(index.get(a, item=item))], "negative": [_speech(index.get(b, item=item))],
            "files": [ra["filename"], rb["filename"]], "task": task,
            "group": ra["id"] if task == "lexical" else f"{ra.get('type', '')}/{ra.get('subtype', '')}/{ra['id']}",
        })
    if swapped:
        warnings.warn(f"{root}: gold.csv marks the lower-index file of {swapped} of {len(recs)} SlamKit pairs as the "
                      "incorrect one; SlamKit scores those pairs the other way round, so a SlamKit score on this folder "
                      "rests on swapped pairs. Here they are turned round by gold.csv.", PairingOrderWarning, stacklevel=2)
    return pairs


# -- StoryCloze ---------------------------------------------------------------------------------------
_SC_KEYS = ("prompt", "correct", "incorrect")
#: SlamKit's whole-file names: an integer index, its separator ("_"; "+" in sBLIMP sets) and the rest
_INDEXED = re.compile(r"^(\d+)([_+])(.*)$")


def _storycloze_pair(rec: dict, index: UnitIndex | None, prompt: str, ending: str, source: str) -> dict:
    """One StoryCloze item: prompt in modality ``prompt``, ending in ``ending`` (speech or text)."""
    item = rec["id"]
    where = f"item {item}" + (f" (line {rec['_line']})" if "_line" in rec else "")
    src = rec.get("_source", source)

    def seg(part: str, mod: str) -> dict:
        if mod == "speech":
            ref = rec.get(part)
            if ref is None:
                raise ConfigError(f"{where}: no audio for '{part}'", source=src, field=part)
            return _speech(index.get(ref, item=item))
        text = rec.get(f"{part}_text")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}: no text for '{part}'", source=rec.get(f"_{part}_source", src),
                              field=f"{part}_text", value=text)
        return {"modality": "text", "text": text}

    ctx = seg("prompt", prompt)
    extra = {k: v for k, v in rec.items() if not k.startswith("_") and k not in ("id",) + _SC_KEYS +
             tuple(f"{p}_text" for p in _SC_KEYS)}
    return {**extra, "id": item, "positive": [ctx, seg("correct", ending)], "negative": [ctx, seg("incorrect", ending)]}


def _files(root: Path) -> list[Path]:
    """Audio and text files of ``root`` and of its direct sub-folders (speaker folders), sorted."""
    out = []
    for p in sorted(root.iterdir()):
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += sorted(x for x in p.iterdir() if x.is_file())
    return [p for p in out if p.suffix.lower() in AUDIO_EXT + (".txt",)]


def _rel(root: Path, p: Path) -> str:
    return p.relative_to(root).with_suffix("").as_posix()


def _is_cross_modal(root: Path, files: list[Path]) -> bool:
    return any(_rel(root, p).endswith("_mutual") for p in files)


def is_cross_modal(root: str | Path) -> bool:
    """Whether ``root`` is a SlamKit cross-modal StoryCloze set (``<base>_mutual`` files), whose prompt and
    ending can each be speech or text (SlamKit's default: text -> text; ours: speech -> speech)."""
    root = Path(root)
    return root.is_dir() and not (root / "manifest.jsonl").is_file() and _is_cross_modal(root, _files(root))


def _cross_modal_records(root: Path, files: list[Path]) -> list[dict]:
    """SlamKit's cross-modal sets: ``<base>_mutual|_correct|_incorrect`` (.wav units + .txt text)."""
    bases = sorted({_rel(root, p)[: -len("_correct")] for p in files if _rel(root, p).endswith("_correct")})
    recs = []
    for b in bases:
        r = {"id": b, "cross_modal": True, "prompt": f"{b}_mutual", "correct": f"{b}_correct", "incorrect": f"{b}_incorrect"}
        for part, suf in zip(_SC_KEYS, ("_mutual", "_correct", "_incorrect")):
            t = root / f"{b}{suf}.txt"
            if t.is_file():
                r[f"{part}_text"] = read_text(t, what="text file").strip()
                r[f"_{part}_source"] = str(t)
            joined = f"{b}_mutual+{part}"  # units extracted from the joined audio (see join_storycloze_audio)
            if part != "prompt":
                r[f"{part}_joined"] = joined
        recs.append(r)
    return recs


class PairingOrderWarning(UserWarning):
    """A SlamKit folder on which SlamKit's own positional pairing would swap pairs (see
    :func:`slamkit_order`); pairs read here are not affected."""


def _listing(folder: Path) -> list[str]:
    """The entries of ``folder`` in the order the file system lists them (``os.listdir``, the order
    SlamKit's ``Path.iterdir`` and ``Path.glob`` see). Only the pairing-order check reads it."""
    return os.listdir(folder)


def _kind(rest: str) -> str | None:
    """"correct" / "incorrect" when the name after the index says which, else None."""
    words = set(re.split(r"[_\-.+]", rest.lower()))
    return "incorrect" if "incorrect" in words else ("correct" if "correct" in words else None)


def _indexed(files: list[Path]) -> list[tuple[Path, int, str, str, str]]:
    """(file, index, index as written, separator, rest) of the audio files named ``<i>_<rest>`` or
    ``<i>+<rest>``."""
    out = []
    for p in files:
        m = _INDEXED.match(p.stem) if p.suffix.lower() != ".txt" else None
        if m:
            out.append((p, int(m.group(1)), m.group(1), m.group(2), m.group(3)))
    return out


def has_slamkit_files(root: str | Path) -> bool:
    """Whether ``root`` (or a sub-folder of it) holds SlamKit whole-file names (``<i>_*``, ``<i>+*``)."""
    root = Path(root)
    return root.is_dir() and bool(_indexed(_files(root)))


def _whole_file_records(root: Path, files: list[Path]) -> list[dict]:
    """SlamKit's whole-file sets (StoryCloze, sWUGGY, sBLIMP) as records ``{"id", "whole", "correct",
    "incorrect"}`` (references relative to ``root``), paired by name or by position (module docstring, 3)."""
    idx = _indexed(files)
    seps = {f[3] for f in idx}
    if len(seps) > 1:
        a = next(f[0] for f in idx if f[3] == "_")
        b = next(f[0] for f in idx if f[3] == "+")
        raise ConfigError(f"mixes '<i>_' names ({_rel(root, a)}) with '<i>+' names ({_rel(root, b)}); a SlamKit set "
                          "uses one separator after the index ('+' in sBLIMP, '_' elsewhere)", source=str(root),
                          field="file_name", value=b.name)
    if seps == {"_"} and all(_kind(f[4]) for f in idx):
        recs = _named_records(root, idx)
        warn_slamkit_order(root)
        return recs
    return _positional_records(root, idx)


def _named_records(root: Path, idx) -> list[dict]:
    """``[<speaker>/]<i>_correct`` and ``<i>_incorrect``: the two files of index ``i`` by their word."""
    stories: dict[str, dict] = {}
    for p, _, digits, _, rest in idx:
        kind = _kind(rest)
        sid = (p.parent.relative_to(root) / digits).as_posix()
        rec = stories.setdefault(sid, {"id": sid, "whole": True})
        if kind in rec:
            raise ConfigError(f"story {sid} has two {kind} files", source=str(p), field="file_name", value=p.name)
        rec[kind] = _rel(root, p)
    for sid, rec in stories.items():
        for kind in ("correct", "incorrect"):
            if kind not in rec:
                raise ConfigError(f"story {sid} has no {kind} file", source=str(root), field="file_name", value=sid)
    return sorted(stories.values(), key=lambda r: (str(Path(r["id"]).parent), int(Path(r["id"]).name)))


def _positional_records(root: Path, idx) -> list[dict]:
    """SlamKit's pairing (``ModellingMetricDataset``): the files of each folder sorted by integer index,
    (2k, 2k+1) = (positive, negative); the item id is the positive's ``[<folder>/]<i>``."""
    folders: dict[Path, list] = {}
    for p, i, digits, _, _ in idx:
        folders.setdefault(p.parent, []).append((i, digits, p))
    recs = []
    for folder in sorted(folders):
        files = sorted(folders[folder], key=lambda t: (t[0], t[2].name))
        for (i, _, a), (j, _, b) in zip(files, files[1:]):
            if i == j:
                raise ConfigError(f"two files have index {i} ({a.name}, {b.name}): SlamKit pairs the files of a folder "
                                  "by their sorted index, (2k, 2k+1) = (positive, negative), so which of the two comes "
                                  "first would rest on the directory listing; give each file its own index, or name "
                                  f"the two {i}_correct and {i}_incorrect", source=str(folder), field="file_name",
                                  value=b.name)
        if len(files) % 2:
            raise ConfigError(f"{len(files)} indexed audio files, an odd number: SlamKit pairs them by position, "
                              "(0, 1), (2, 3), ..., so the last one has no partner", source=str(folder),
                              field="file_name", value=files[-1][2].name)
        for (_, digits, a), (_, _, b) in zip(files[0::2], files[1::2]):
            recs.append({"id": (folder.relative_to(root) / digits).as_posix(), "whole": True,
                         "correct": _rel(root, a), "incorrect": _rel(root, b)})
    return recs


def slamkit_order(root: str | Path) -> list[Path]:
    """The ``.wav`` files SlamKit's ``ModellingMetricDataset`` reads from ``root``, in its order: each
    sub-folder in listing order when ``root`` holds no indexed ``.wav`` itself (its ``subfolder: true``
    sets), else ``root``; in a folder, the files in listing order, stably sorted by their leading integer.
    SlamKit scores (order[2k], order[2k+1]) as (positive, negative)."""
    root = Path(root)

    def wavs(folder: Path) -> list[Path]:
        return [folder / n for n in _listing(folder) if n.endswith(".wav") and _INDEXED.match(n)]

    own = wavs(root)
    folders = [root] if own else [root / n for n in _listing(root) if (root / n).is_dir()]
    out = []
    for folder in folders:
        out += sorted(own if folder == root else wavs(folder), key=lambda q: int(_INDEXED.match(q.name).group(1)))
    return out


def warn_slamkit_order(root: str | Path) -> int:
    """Warn (:class:`PairingOrderWarning`, naming the folder and the count) when SlamKit's positional
    pairing, in this folder's listing order, would take an ``<i>_incorrect`` file as a positive; returns
    the number of such pairs."""
    root = Path(root)
    order = slamkit_order(root)
    per: dict[str, list[int]] = {}  # folder -> [swapped, pairs]
    for a, _ in zip(order[0::2], order[1::2]):
        c = per.setdefault(a.parent.relative_to(root).as_posix(), [0, 0])
        c[1] += 1
        c[0] += _kind(_INDEXED.match(a.stem).group(3)) == "incorrect"
    n, total = sum(c[0] for c in per.values()), sum(c[1] for c in per.values())
    if n:
        detail = "" if list(per) == ["."] else \
            " (" + ", ".join(f"{k}: {c[0]} of {c[1]}" for k, c in sorted(per.items()) if c[0]) + ")"
        warnings.warn(f"{root}: SlamKit pairs these files by position, sorted by index with the directory listing "
                      "breaking the tie between <i>_correct and <i>_incorrect; in this folder's listing order it would "
                      f"take the _incorrect file as the positive in {n} of {total} pairs{detail}, so a SlamKit score "
                      "on this folder may rest on swapped pairs. The pairs here are matched by name.",
                      PairingOrderWarning, stacklevel=2)
    return n


def storycloze_records(root: str | Path) -> list[dict]:
    """The items of a StoryCloze folder in whichever layout it uses (module docstring, 1-4)."""
    root = Path(root)
    man = root / "manifest.jsonl"
    if man.is_file():
        recs, seen = [], set()
        for line, r in iter_jsonl(man, required=("id",)):
            if r["id"] in seen:
                raise ConfigError(f"line {line}: duplicate item id", source=str(man), field="id", value=r["id"])
            for k in RESERVED:
                if k in r:
                    raise ConfigError(f"line {line}: key {k!r} is reserved (the loader sets it on every pair)",
                                      source=str(man), field=k)
            seen.add(r["id"])
            recs.append({**r, "_line": line, "_source": str(man)})
        return recs
    if not root.is_dir():
        raise ConfigError("StoryCloze folder not found", source=str(root))
    files = _files(root)
    if _is_cross_modal(root, files):
        return _cross_modal_records(root, files)
    if _indexed(files):
        return _whole_file_records(root, files)
    recs = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        r = {"id": d.name, **{k: f"{d.name}/{k}" for k in _SC_KEYS}}
        if (d / "text.json").is_file():
            try:
                t = json.loads(read_text(d / "text.json"))
            except json.JSONDecodeError as e:
                raise ConfigError(f"not valid JSON ({e.msg} at line {e.lineno})", source=str(d / "text.json")) from None
            if not isinstance(t, dict):
                raise ConfigError("must hold a JSON object {\"prompt\", \"correct\", \"incorrect\"}",
                                  source=str(d / "text.json"), value=type(t).__name__)
            r.update({f"{k}_text": t[k] for k in _SC_KEYS if k in t})
        recs.append(r)
    if not recs:
        raise ConfigError("no manifest.jsonl, no SlamKit files (<i>_*.wav, <i>+*.wav) and no item folders",
                          source=str(root))
    return recs


def load_storycloze(root: str | Path, units: UnitIndex | str | Path | None = None, *,
                    prompt: str = "speech", ending: str = "speech", n_units: int = N_UNITS) -> list[dict]:
    """sStoryCloze / tStoryCloze (any layout, any multi-speaker variant) with the prompt and ending
    modalities given. Whole-story sets are speech -> speech only (one segment per member). Units are
    checked against an inventory of ``n_units`` when read from a file."""
    for f, v in (("prompt", prompt), ("ending", ending)):
        if v not in ("speech", "text"):
            raise ConfigError("must be 'speech' or 'text'", field=f, value=v)
    root = Path(root)
    recs = storycloze_records(root)
    index = None
    if "speech" in (prompt, ending):
        index = units if isinstance(units, UnitIndex) else (UnitIndex.load(units, n_units).scoped(root.name) if units
                                                            else find_units(root, n_units))
    out = []
    for r in recs:
        if r.get("whole"):
            if (prompt, ending) != ("speech", "speech"):
                raise ConfigError(f"whole-story files hold no text: only the speech -> speech set can be built "
                                  f"(asked {prompt} -> {ending})", source=str(root), field="benchmark")
            item = r["id"]
            out.append({"id": item, "positive": [_speech(index.get(r["correct"], item=item))],
                        "negative": [_speech(index.get(r["incorrect"], item=item))]})
        elif r.get("cross_modal") and (prompt, ending) == ("speech", "speech") and r["correct_joined"] in index \
                and r["incorrect_joined"] in index:
            # SlamKit joins the audio of prompt and ending before extracting units: use those units
            item = r["id"]
            out.append({"id": item, "cross_modal": True,
                        "positive": [_speech(index.get(r["correct_joined"], item=item))],
                        "negative": [_speech(index.get(r["incorrect_joined"], item=item))]})
        else:
            rec = {k: v for k, v in r.items() if not k.endswith("_joined")}
            out.append(_storycloze_pair(rec, index, prompt, ending, str(root)))
    return out


def join_storycloze_audio(root: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write ``<base>_mutual+correct.wav`` and ``<base>_mutual+incorrect.wav`` (prompt audio followed by
    the ending's) beside a cross-modal set's files, so units can be extracted from the joined audio as
    SlamKit does for speech -> speech items. Returns the written files."""
    import numpy as np
    import soundfile as sf

    from scaling import atomic

    root = Path(root)
    out = Path(out) if out else root
    written = []
    for r in _cross_modal_records(root, _files(root)):
        a, sr = sf.read(root / f"{r['prompt']}.wav", dtype="float32")
        for part in ("correct", "incorrect"):
            b, sr2 = sf.read(root / f"{r[part]}.wav", dtype="float32")
            if sr2 != sr:
                raise ConfigError(f"sample rate {sr2} differs from the prompt's {sr}", source=str(root / f"{r[part]}.wav"))
            dest = out / f"{r[f'{part}_joined']}.wav"
            dest.parent.mkdir(parents=True, exist_ok=True)
            joined = np.concatenate([a, b])
            atomic.write_with(dest, lambda tmp, x=joined, r=sr: sf.write(str(tmp), x, r, format="WAV"))
            written.append(dest)
    return written


CROSS_MODAL = {"": ("speech", "speech"), "_s2s": ("speech", "speech"), "_s2t": ("speech", "text"),
               "_t2s": ("text", "speech"), "_t2t": ("text", "text")}


def split_cross_modal(name: str) -> tuple[str, str, str]:
    """``ssc_s2t`` -> ("ssc", "speech", "text"); a name without a suffix is speech -> speech."""
    for suf, (p, e) in CROSS_MODAL.items():
        if suf and name.endswith(suf):
            return name[: -len(suf)], p, e
    return name, "speech", "speech"
