"""Built-in synthetic corpus: procedural stories (text), their multi-speaker unit renderings
(speech, with word alignments for interleaving) and the seven synthetic benchmarks.

Layout under ``out_dir``::

    corpus/text_train.jsonl    {"id", "text"}
    corpus/text_val.jsonl
    corpus/speech_train.jsonl  {"id", "speaker", "text", "words", "starts", "ends", "units", "durations"}
    corpus/speech_val.jsonl
    corpus/manifest.json       config, per-split counts, mean units/word, unit inventory, generation seconds
    benchmarks/<name>.jsonl    {"id", "positive", "negative", "speaker", "variant", ...}

Every split and benchmark has its own rng stream derived from the seed (``f"{seed}:<stream>"``),
so text and speech stories are disjoint draws, and benchmark stories additionally skip any
text present in the corpora. Same seed => byte-identical corpus and benchmark files (the
manifest differs only in ``generation_seconds``).
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from scaling.atomic import write_json, write_jsonl
from scaling.errors import ConfigError

from .benchmarks import BENCHMARKS, build_benchmarks
from .speech import FRAME_S, N_UNITS, check_inventory, render
from .stories import make_story

MAX_SPEAKERS = 10_000


@dataclass(frozen=True)
class SynthConfig:
    seed: int = 0
    n_text_stories: int = 20000      # text stream (train)
    n_speech_stories: int = 8000     # speech corpus (train); speech-only and interleaved streams
    n_val_stories: int = 300         # per split (text val, speech val)
    n_speakers: int = 8
    n_bench_items: int = 1000        # per benchmark: a 95% interval of about +-3 points on an accuracy
    n_units: int = N_UNITS           # the unit inventory the phonology renders into

    @classmethod
    def quick(cls, seed: int = 0, **kw) -> "SynthConfig":
        return cls(seed=seed, n_text_stories=4000, n_speech_stories=1500, n_val_stories=100,
                   n_speakers=8, n_bench_items=96, **kw)

    @classmethod
    def large(cls, seed: int = 0, **kw) -> "SynthConfig":
        """The GPU demo's corpus: ~30M speech tokens, so its smallest model (mini-1m, ~44M tokens at
        the largest budget) repeats the speech stream under two epochs."""
        return cls(seed=seed, n_text_stories=150000, n_speech_stories=70000, n_val_stories=500,
                   n_speakers=8, **kw)

    def to_dict(self) -> dict:
        """The config as the corpus manifest records it: ``n_units`` only when it is not the default 500,
        so the folders written before it existed keep matching (``is_prepared``)."""
        d = asdict(self)
        if d["n_units"] == N_UNITS:
            del d["n_units"]
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str | None = None) -> "SynthConfig":
        known = {f.name for f in fields(cls)}
        for k in d:
            if k not in known:
                raise ConfigError(f"unknown synthetic-data option; known: {sorted(known)}",
                                  source=source, field=k, value=d[k])
        cfg = cls(**d)
        cfg.validate(source=source)
        return cfg

    def validate(self, source: str | None = None) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ConfigError("must be an integer", source=source, field=f.name, value=v)
            if f.name == "seed":
                if v < 0:
                    raise ConfigError("must be >= 0", source=source, field=f.name, value=v)
            elif v <= 0:
                raise ConfigError("must be a positive integer", source=source, field=f.name,
                                  value=v)
        if self.n_speakers > MAX_SPEAKERS:
            raise ConfigError(f"must be <= {MAX_SPEAKERS}", source=source, field="n_speakers",
                              value=self.n_speakers)
        check_inventory(self.n_units, source=source)


def _stories(seed: int, stream: str, n: int) -> list[str]:
    rng = random.Random(f"{seed}:{stream}")
    return [make_story(rng).text for _ in range(n)]


def _speech_rows(texts: list[str], seed: int, stream: str, n_speakers: int, prefix: str, n_units: int = N_UNITS):
    rng = random.Random(f"{seed}:{stream}:render")
    rows = []
    for i, text in enumerate(texts):
        words = text.split()
        spk = rng.randrange(n_speakers)
        r = render(words, spk, rng, n_units)
        rows.append({"id": f"{prefix}-{i:06d}", "speaker": spk, "text": text, "words": words,
                     "starts": r.starts, "ends": r.ends, "units": r.units,
                     "durations": r.durations})
    return rows


def generate(cfg: SynthConfig, out_dir: str | Path) -> dict:
    """Write the corpus and benchmarks under ``out_dir``; return the manifest."""
    cfg.validate()
    t0 = time.perf_counter()
    out = Path(out_dir)
    corpus, bench = out / "corpus", out / "benchmarks"
    s = cfg.seed
    texts = {
        "text_train": _stories(s, "text:train", cfg.n_text_stories),
        "text_val": _stories(s, "text:val", cfg.n_val_stories),
        "speech_train": _stories(s, "speech:train", cfg.n_speech_stories),
        "speech_val": _stories(s, "speech:val", cfg.n_val_stories),
    }
    splits: dict[str, dict] = {}
    for name in ("text_train", "text_val"):
        rows = [{"id": f"{name.replace('_', '-')}-{i:06d}", "text": t}
                for i, t in enumerate(texts[name])]
        write_jsonl(corpus / f"{name}.jsonl", rows)
        splits[name] = {"stories": len(rows), "words": sum(len(t.split()) for t in texts[name])}
    n_units = n_words = 0
    for name in ("speech_train", "speech_val"):
        rows = _speech_rows(texts[name], s, name.replace("_", ":"), cfg.n_speakers,
                            name.replace("_", "-"), cfg.n_units)
        write_jsonl(corpus / f"{name}.jsonl", rows)
        u = sum(len(r["units"]) for r in rows)
        w = sum(len(r["words"]) for r in rows)
        frames = sum(sum(r["durations"]) for r in rows)
        splits[name] = {"stories": len(rows), "words": w, "units": u, "frames": frames,
                        "hours": round(frames * FRAME_S / 3600, 4)}
        n_units += u
        n_words += w
    exclude = set()
    for v in texts.values():
        exclude.update(v)
    benches = build_benchmarks(cfg.n_bench_items, cfg.n_speakers, s, exclude_texts=exclude, n_units=cfg.n_units)
    for name in BENCHMARKS:
        write_jsonl(bench / f"{name}.jsonl", benches[name])
    frames_all = splits["speech_train"]["frames"] + splits["speech_val"]["frames"]
    manifest = {
        "config": cfg.to_dict(),
        "splits": splits,
        "benchmarks": {name: len(benches[name]) for name in BENCHMARKS},
        "mean_units_per_word": round(n_units / max(n_words, 1), 4),
        "units_per_second": round(n_units / max(frames_all * FRAME_S, 1e-9), 4),
        "frame_seconds": FRAME_S,
        "unit_vocab": cfg.n_units,
        "generation_seconds": round(time.perf_counter() - t0, 3),
    }
    write_json(corpus / "manifest.json", manifest)
    return manifest
