"""Benchmark files and the evaluation of a model on them.

A benchmark is a JSONL file, one pair per line:
``{"id": str, "positive": [segment, ...], "negative": [segment, ...]}`` with segments
``{"modality": "speech", "units": [...]}`` or ``{"modality": "text", "text": "..."}``.
Pairs are matched by their explicit id, never by file order.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scaling.errors import ConfigError
from trainer.eval.scoring import encode_segments, score_pairs

SYNTHETIC = ("swuggy", "sblimp", "ssc", "tsc", "ssc_s2t", "ssc_t2s", "ssc_t2t")
# The published default is mean NLL over the whole sequence for every benchmark.
DEFAULT_SCORING = {"norm": "mean", "span": "whole"}


def load_benchmark(path: Path, max_items: int | None = None) -> list[dict]:
    if not path.is_file():
        raise ConfigError("benchmark file not found", source=str(path))
    items, seen = [], set()
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            for k in ("id", "positive", "negative"):
                if k not in row:
                    raise ConfigError(f"line {i} has no '{k}'", source=str(path), field=k)
            if row["id"] in seen:
                raise ConfigError("duplicate pair id", source=str(path), field="id", value=row["id"])
            seen.add(row["id"])
            items.append(row)
    if not items:
        raise ConfigError("benchmark file is empty", source=str(path))
    return items[:max_items] if max_items else items


def evaluate(model, tokenizer, vocab, bench_dir: str | Path, names, *, max_items: int | None = None,
             norm: str = "mean", span: str = "whole", batch_size: int = 32) -> dict[str, float]:
    """Accuracy per benchmark (the model is loaded once by the caller and reused for all)."""
    model.eval()
    out = {}
    for name in names:
        path = Path(bench_dir) / f"{name}.jsonl"
        items = load_benchmark(path, max_items)
        pairs = [
            (encode_segments(it["positive"], tokenizer, vocab, item=f"{path.name}:{it['id']}"),
             encode_segments(it["negative"], tokenizer, vocab, item=f"{path.name}:{it['id']}"))
            for it in items
        ]
        out[name] = float(np.mean(score_pairs(model, pairs, norm=norm, span=span, batch_size=batch_size)))
    return out
