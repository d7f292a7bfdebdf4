"""Benchmark files and the evaluation of a model on them.

The synthetic benchmarks are JSONL files, one pair per line:
``{"id": str, "positive": [segment, ...], "negative": [segment, ...]}`` with segments
``{"modality": "speech", "units": [...]}`` or ``{"modality": "text", "text": "..."}``.
The published layouts (ZeroSpeech gold.csv, spoken StoryCloze) load into the same pair list
(see ``trainer.eval.formats``). Pairs are matched by their explicit id, never by file order.
"""
from __future__ import annotations

from pathlib import Path

from scaling.errors import ConfigError
from scaling.jsonl import iter_jsonl
from trainer.eval.formats import find_units, load_storycloze, load_zerospeech, split_cross_modal

SYNTHETIC = ("swuggy", "sblimp", "ssc", "tsc", "ssc_s2t", "ssc_t2s", "ssc_t2t")
# The published default is mean NLL over the whole sequence for every benchmark.
DEFAULT_SCORING = {"norm": "mean", "span": "whole"}


def load_benchmark(path: Path, max_items: int | None = None) -> list[dict]:
    path = Path(path)
    items, seen = [], set()
    for _, row in iter_jsonl(path, what="benchmark file", required=("id", "positive", "negative")):
        if row["id"] in seen:
            raise ConfigError("duplicate pair id", source=str(path), field="id", value=row["id"])
        seen.add(row["id"])
        items.append(row)
    if not items:
        raise ConfigError("benchmark file is empty", source=str(path))
    return items[:max_items] if max_items else items


def load_pairs(data_dir: str | Path, name: str, max_items: int | None = None) -> list[dict]:
    """The pairs of benchmark ``name`` under ``data_dir``, whichever layout holds it, first found:

    1. ``<data>/benchmarks/<name>.jsonl`` or ``<data>/<name>.jsonl`` (synthetic pair files);
    2. ``<data>/<name>/gold.csv`` + a units file beside it (ZeroSpeech sWUGGY / sBLIMP);
    3. ``<data>/<base>/`` a StoryCloze folder (``manifest.jsonl`` or item folders) + units file, where
       ``name`` = ``<base>[_s2s|_s2t|_t2s|_t2t]`` picks the prompt -> ending modalities (default S->S).
    """
    data = Path(data_dir)
    for f in (data / "benchmarks" / f"{name}.jsonl", data / f"{name}.jsonl"):
        if f.is_file():
            return load_benchmark(f, max_items)
    if (data / name / "gold.csv").is_file():
        pairs = load_zerospeech(data / name / "gold.csv", find_units(data / name))
    else:
        base, prompt, ending = split_cross_modal(name)
        root = data / base
        if not root.is_dir():
            raise ConfigError(f"benchmark {name!r} not found: looked for benchmarks/{name}.jsonl, {name}.jsonl, "
                              f"{name}/gold.csv and the StoryCloze folder {base}/", source=str(data))
        pairs = load_storycloze(root, prompt=prompt, ending=ending)
    return pairs[:max_items] if max_items else pairs


def evaluate(model, tokenizer, vocab, bench_dir: str | Path, names, *, max_items: int | None = None,
             norm: str = "mean", span: str = "whole", batch_size: int = 32) -> dict[str, float]:
    """Accuracy per benchmark (the model is loaded once by the caller and reused for all)."""
    from trainer.eval.suite import EvalSuite

    suite = EvalSuite.from_data(bench_dir, list(names), tokenizer, vocab, max_items=max_items,
                                norm=norm, span=span, batch_size=batch_size)
    return suite.run(model)
