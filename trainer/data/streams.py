"""From text documents and spoken utterances to the token documents of every stream (the one interleaver).

Streams (names in :mod:`scaling.datadir`): ``textlm`` (text + eos), ``text`` (``<text>`` + text + eos),
``speech`` (``<speech>`` + units + eos) and ``interleaved`` (word-level spans, a marker at the start and at
every modality switch, + eos). Utterances without word alignments go to the speech stream only.
"""
from __future__ import annotations

import numpy as np

from scaling.errors import ConfigError
from trainer.data.interleave import plan_spans, unit_times, units_overlapping
from trainer.data.tokenizer import SpeechVocab


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids without special tokens; a fast tokenizer's Rust backend directly (what ``tokenizer(texts)``
    calls, without building a BatchEncoding)."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def _units(u: dict, n_units: int) -> np.ndarray:
    """The utterance's units, each checked against the tokenizer's inventory (0..n_units-1)."""
    units = np.asarray(u["units"], dtype=np.int64)
    if units.size and (units.min() < 0 or units.max() >= n_units):
        bad = int(units[(units < 0) | (units >= n_units)][0])
        raise ConfigError(f"utterance {u.get('id')}: unit {bad} is outside the tokenizer's inventory 0..{n_units - 1}",
                          source=u.get("source"), field="units", value=bad)
    return units


def build_streams(text_docs: list[str], utts: list[dict], tokenizer, vocab: SpeechVocab, rng: np.random.Generator,
                  ratio: float = 0.3, lam: float = 10.0) -> tuple[dict[str, list[np.ndarray]], dict]:
    """Token documents per stream (int32 arrays, each closed by eos) and the realised speech fractions.

    ``utts``: ``{"units", "durations"?, "words"?, "starts"?, "ends"?}`` with word times in seconds and
    durations in 25 Hz frames; ``rng`` draws the interleaving plan (one call of ``plan_spans`` per aligned
    utterance, in order), so a seed fixes the whole stream.
    """
    eos, off = vocab.eos, vocab.unit_offset
    docs: dict[str, list[np.ndarray]] = {}
    if text_docs:
        ids = _encode(tokenizer, text_docs)
        docs["textlm"] = [np.asarray(i + [eos], dtype=np.int32) for i in ids]
        docs["text"] = [np.asarray([vocab.text] + i + [eos], dtype=np.int32) for i in ids]
    units = [_units(u, vocab.n_units) for u in utts]
    docs["speech"] = [np.concatenate([[vocab.speech], x + off, [eos]]).astype(np.int32) for x in units]
    aligned = [(u, x) for u, x in zip(utts, units) if u.get("words")]
    plans = [plan_spans(len(u["words"]), rng, ratio, lam) for u, _ in aligned]
    # every text piece of every utterance is encoded in one batched call
    pieces = []
    for (u, _), spans in zip(aligned, plans):
        for sp in spans:
            if sp.modality == "text":
                t = " ".join(u["words"][sp.start:sp.end])
                pieces.append(t if sp.start == 0 else " " + t)
    piece_ids = iter(_encode(tokenizer, pieces))
    inter, speech_words, words, speech_tok, all_tok = [], 0, 0, 0, 0
    for (u, x), spans in zip(aligned, plans):
        times = unit_times(u["durations"])
        parts = []
        for sp in spans:
            if sp.modality == "speech":
                i, j = units_overlapping(times, u["starts"][sp.start], u["ends"][sp.end - 1])
                parts.append(np.asarray([vocab.speech], dtype=np.int64))
                parts.append(x[i:j] + off)
                speech_words += sp.end - sp.start
                speech_tok += j - i
            else:
                parts.append(np.asarray([vocab.text] + next(piece_ids), dtype=np.int64))
        parts.append(np.asarray([eos], dtype=np.int64))
        doc = np.concatenate(parts).astype(np.int32)
        words += len(u["words"])
        all_tok += len(doc) - 1
        inter.append(doc)
    if inter:
        docs["interleaved"] = inter
    stats = {
        "speech_word_fraction": speech_words / max(words, 1),
        "speech_token_fraction": speech_tok / max(all_tok, 1),
        "words": words,
        "speech_words": speech_words,  # the raw counts, so fractions of several parts can be combined
        "speech_tokens": speech_tok,
        "tokens": all_tok,
        "aligned_utterances": len(aligned),
        "utterances": len(utts),
    }
    return docs, stats
