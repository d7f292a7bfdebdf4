"""Shared fixtures: a small prepared synthetic corpus built once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests never read or fill the user's text-LM cache (~/.cache/speech-scaling); the cache tests point it at tmp_path.
os.environ["SPEECH_SCALING_CACHE"] = "off"
REPO = Path(__file__).resolve().parents[1]
#: small real data copied into the repository (sources and licences in tests/data/README.md)
TEST_DATA = REPO / "tests" / "data"
SLAMKIT_EXAMPLE = TEST_DATA / "slamkit_example"
EPOCH_CSV = TEST_DATA / "chinchilla_epoch.csv"

TINY_SYNTH = dict(n_text_stories=400, n_speech_stories=200, n_val_stories=30, n_speakers=4, n_bench_items=12)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Path:
    """A prepared data folder (corpus, tokenizers, shards, benchmarks) small enough for unit tests."""
    from trainer.data.prepare_synthetic import prepare_corpus
    from trainer.data.synthetic import SynthConfig, generate

    out = tmp_path_factory.mktemp("data")
    generate(SynthConfig(seed=0, **TINY_SYNTH), out)
    prepare_corpus(out, vocab_size=320, seed=0)
    return out


def write_sweep(path: Path, data_dir: Path, **overrides) -> Path:
    """A tiny sweep file over ``data`` (overrides replace top-level keys)."""
    import yaml

    cfg = {
        "name": "tiny", "data": str(data_dir), "output": ".", "seed": 0, "grid": "isoflop",
        "models": ["toy-xs", "toy-s"], "budgets": [2.0e9, 4.0e9], "arms": ["interleaved", "textless"],
        "train": {"seq_len": 64, "batch_size": 4, "lr": 3e-3, "min_lr": 3e-4, "warmup_frac": 0.1, "val_sequences": 4},
        "text_pretrain": {"tokens": 4096},
        "eval": {"benchmarks": ["swuggy", "ssc"], "max_items": 8},
    }
    cfg.update(overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
