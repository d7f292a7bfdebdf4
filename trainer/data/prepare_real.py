"""The real-data builder: `scaling data prepare --features F [--alignments A] [--text T] --tokenizer DIR --out OUT`.

Inputs (formats in :mod:`trainer.data.ingest`): speech units (SlamKit features.jsonl / tokens.jsonl or our
schema), optional word alignments, an optional plain-text corpus, and a text tokenizer folder. Output: a
data folder (:mod:`scaling.datadir`) the trainer reads like the synthetic one.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from scaling import atomic
from scaling.datadir import MANIFEST, SPEECH_TOKENIZER, TEXT_TOKENIZER, make_manifest, vocab_block, vocab_sha, write_manifest
from scaling.errors import ConfigError
from trainer.data import ingest
from trainer.data.mixture import mixture_report
from trainer.data.shards import pack
from trainer.data.streams import build_streams
from trainer.data.tokenizer import SpeechVocab, add_speech_tokens, load_tokenizer


def split_indices(n: int, val_fraction: float, rng: np.random.Generator, what: str, source: str) -> dict[str, np.ndarray]:
    """Seeded split: ``max(1, round(val_fraction * n))`` documents to val, at least one to train."""
    if n < 2:
        raise ConfigError(f"the {what} corpus has {n} document(s); train and val need at least one each",
                          source=source, value=n)
    n_val = min(n - 1, max(1, int(round(val_fraction * n))))
    perm = rng.permutation(n)
    return {"train": np.sort(perm[n_val:]), "val": np.sort(perm[:n_val])}


def prepare_real(out: str | Path, *, features: str | Path, tokenizer: str | Path, text: str | Path | None = None,
                 alignments: str | Path | None = None, seed: int = 0, val_fraction: float = 0.02,
                 ratio: float = 0.3, lam: float = 10.0) -> dict:
    """Pack a real corpus into ``out``: ``tokenizer_text/`` (a copy of the given tokenizer), ``tokenizer/``
    (the same + the 502 speech tokens), ``shards/`` for the streams that have data (textlm and text need
    ``text``; interleaved needs alignments), ``data.json``. Everything is read and checked first and written
    into a temporary folder renamed into place at the end: an error leaves no output behind.
    """
    t0 = time.time()
    out = Path(out)
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError("must be between 0 and 1", field="val_fraction", value=val_fraction)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise ConfigError("output exists and is not a prepared data folder; choose a new folder", source=str(out))
    utts = ingest.read_features(features)
    if alignments is not None:
        ingest.attach_alignments(utts, ingest.read_alignments(alignments))
    for u in utts:
        if u.get("words"):
            ingest.check_alignment(u)
    text_docs = ingest.read_text(text) if text is not None else []

    tok_dir = Path(tokenizer)
    tok = load_tokenizer(tok_dir)
    text_vocab, text_sha = len(tok), vocab_sha(tok.get_vocab())
    try:
        add_speech_tokens(tok)
    except Exception as e:
        raise ConfigError(f"the tokenizer cannot take the 502 speech tokens ({type(e).__name__}: {e})",
                          source=str(tok_dir), field="added_tokens") from None
    vocab = SpeechVocab.of(tok, source=str(tok_dir))

    rng_split = np.random.default_rng([seed, 11])
    speech_split = split_indices(len(utts), val_fraction, rng_split, "speech", str(features))
    text_split = split_indices(len(text_docs), val_fraction, rng_split, "text", str(text)) if text is not None else None

    def build(split: str, rng: np.random.Generator):
        split_utts = [utts[i] for i in speech_split[split]]
        split_text = [text_docs[i] for i in text_split[split]] if text_split is not None else []
        return build_streams(split_text, split_utts, tok, vocab, rng, ratio, lam)

    tmp = out.with_name(f".{out.name}.tmp-prepare")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        shutil.copytree(tok_dir, tmp / TEXT_TOKENIZER)
        tok.save_pretrained(str(tmp / SPEECH_TOKENIZER))
        counts, fractions, fp = pack(tmp / "shards", build, seed)
        manifest = make_manifest(
            seed=seed, tokens=counts, fingerprint=fp, vocab=vocab_block(text_vocab, vocab.size, vocab.unit_offset),
            tokenizer_sha={TEXT_TOKENIZER: text_sha, SPEECH_TOKENIZER: vocab_sha(tok.get_vocab())},
            interleave={"ratio": ratio, "poisson_lambda": lam}, speech_fractions=fractions, mixture=mixture_report(counts),
            source={"features": str(features), "alignments": None if alignments is None else str(alignments),
                    "text": None if text is None else str(text), "tokenizer": str(tok_dir), "val_fraction": val_fraction},
            prepare_seconds=round(time.time() - t0, 2))
        write_manifest(tmp, manifest)
        atomic.replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
