"""Finding a benchmark by name and loading its pairs, whichever layout holds it.

The synthetic benchmarks are pair files of the registry (``scaling.datadir.BENCHMARKS``), one pair
per line: ``{"id": str, "positive": [segment, ...], "negative": [segment, ...]}`` with segments
``{"modality": "speech", "units": [...]}`` or ``{"modality": "text", "text": "..."}``.
The published layouts (ZeroSpeech gold.csv, StoryCloze folders) load into the same pair list
(see ``trainer.eval.formats``). Pairs are matched by their explicit id, never by file order.
"""
from __future__ import annotations

from pathlib import Path

from scaling.datadir import BENCHMARK_NAMES, BENCHMARKS, MANIFEST, N_UNITS, DataDir
from scaling.errors import ConfigError
from scaling.jsonl import iter_jsonl
from trainer.eval.formats import (RESERVED, check_segments, is_cross_modal, load_storycloze, load_zerospeech_folder,
                                  split_cross_modal)

# The published default is mean NLL over the whole sequence for every benchmark.
DEFAULT_SCORING = {"norm": "mean", "span": "whole"}


def _check_pair_segments(row: dict, path: Path, line: int, n_units: int | None = None) -> None:
    for member in ("positive", "negative"):
        check_segments(row[member], source=str(path), where=f"line {line} (id {row['id']})", field=member,
                       n_units=n_units)


def load_benchmark(path: Path, max_items: int | None = None, n_units: int | None = None) -> list[dict]:
    """A pair file; with ``n_units`` (the tokenizer's inventory) every unit is checked to lie in it."""
    path = Path(path)
    items, seen = [], set()
    for line, row in iter_jsonl(path, what="benchmark file", required=("id", "positive", "negative")):
        if row["id"] in seen:
            raise ConfigError(f"line {line}: duplicate pair id", source=str(path), field="id", value=row["id"])
        _check_pair_segments(row, path, line, n_units)
        for k in RESERVED[2:]:
            if k in row:
                raise ConfigError(f"line {line}: key {k!r} is reserved for the loaders", source=str(path), field=k)
        seen.add(row["id"])
        items.append(row)
    if not items:
        raise ConfigError("benchmark file is empty", source=str(path))
    return items[:max_items] if max_items else items


def pair_file(root: str | Path, name: str) -> Path | None:
    """The pair file of ``name``: through the data folder when ``root`` is one (``data.json``), else
    ``<root>/benchmarks/<name>.jsonl`` or ``<root>/<name>.jsonl`` (a benchmarks folder of its own)."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        f = DataDir.open(root, verify="none").benchmark_file(name)
        return f if f.is_file() else None
    for f in (root / "benchmarks" / f"{name}.jsonl", root / f"{name}.jsonl"):
        if f.is_file():
            return f
    return None


def load_pairs(data_dir: str | Path, name: str, max_items: int | None = None, n_units: int | None = None) -> list[dict]:
    """The pairs of benchmark ``name`` under ``data_dir``, whichever layout holds it, first found:

    1. the registry's pair file (``benchmarks/<name>.jsonl`` of a data folder, or ``<name>.jsonl``);
    2. ``<data>/<name>/gold.csv`` + a units file beside it (ZeroSpeech sWUGGY / sBLIMP, official or in
       SlamKit's layout: ``trainer.eval.formats.load_zerospeech_folder``);
    3. ``<data>/<base>/`` a StoryCloze folder or a SlamKit sWUGGY / sBLIMP folder without gold.csv (any
       layout of ``trainer.eval.formats``) + units file, where ``name`` = ``<base>[_s2s|_s2t|_t2s|_t2t]``
       picks the prompt -> ending modalities (default S->S; :func:`storycloze_modalities`).

    ``n_units``: the speech vocabulary's inventory (``SpeechVocab.n_units``); units outside it are refused
    with the file, line and field (units files are checked against 500 when it is not given).
    """
    data = Path(data_dir)
    f = pair_file(data, name)
    if f is not None:
        return load_benchmark(f, max_items, n_units)
    for root in (data, data / "benchmarks"):
        if (root / name / "gold.csv").is_file():
            pairs = load_zerospeech_folder(root / name, n_units or N_UNITS)
            return pairs[:max_items] if max_items else pairs
    base, prompt, ending = split_cross_modal(name)
    for root in (data, data / "benchmarks"):
        if (root / base).is_dir():
            pairs = load_storycloze(root / base, prompt=prompt, ending=ending, n_units=n_units or N_UNITS)
            return pairs[:max_items] if max_items else pairs
    hint = f" (the registry's: {list(BENCHMARK_NAMES)})" if name not in BENCHMARKS else ""
    raise ConfigError(f"benchmark {name!r} not found{hint}: looked for benchmarks/{name}.jsonl, {name}.jsonl, "
                      f"{name}/gold.csv and the StoryCloze folder {base}/", source=str(data))


def storycloze_modalities(data_dir: str | Path, name: str, convention: str = "ours") -> dict | None:
    """How the StoryCloze folder benchmark ``name`` is read: ``{"set", "prompt", "ending", "cross_modal",
    "chosen_by"}`` (``set``: the name to load it by); None when ``name`` is a pair file, a ZeroSpeech
    folder or not found. A name without a ``_s2t``-style suffix is speech -> speech, except a SlamKit
    cross-modal set under ``convention="slamkit"``: text -> text, SlamKit's default (``cm_ms_tsc``)."""
    data = Path(data_dir)
    roots = (data, data / "benchmarks")
    if pair_file(data, name) is not None or any((r / name / "gold.csv").is_file() for r in roots):
        return None
    base, prompt, ending = split_cross_modal(name)
    folder = next((r / base for r in roots if (r / base).is_dir()), None)
    if folder is None:
        return None
    cross = is_cross_modal(folder)
    if base != name:
        chosen = "the name's suffix"
    elif cross and convention == "slamkit":
        prompt, ending = "text", "text"
        chosen = "default of --convention slamkit (text -> text, SlamKit's default for its cross-modal sets)"
    elif cross:
        chosen = (f"default (ours; SlamKit's cross-modal sets default to text -> text: name the set {base}_t2t, "
                  "or use --convention slamkit)")
    else:
        chosen = "default"
    load = name if base != name or (prompt, ending) == ("speech", "speech") else f"{base}_t2t"
    return {"set": load, "prompt": prompt, "ending": ending, "cross_modal": cross, "chosen_by": chosen}
