"""From a corpus folder to what training reads: tokenizers and packed token shards.

Input (the synthetic generator writes it; `scaling data prepare` will accept real corpora):
    corpus/text_{train,val}.jsonl     {"id", "text"}
    corpus/speech_{train,val}.jsonl   {"id", "words", "starts", "ends", "units", "durations", ...}
Output, beside it:
    tokenizer_text/   the byte-level BPE text tokenizer (the text LM's)
    tokenizer/        the same + <Un0>..<Un499>, <speech>, <text> (the speech LM's)
    shards/           one flat token stream per (stream, split), see trainer.data.shards
    data.json         vocabulary sizes, token counts per stream, realised speech fractions, fingerprint

Streams: ``textlm`` (plain text, for text-LM pre-training), ``text`` (``<text>`` + text),
``speech`` (``<speech>`` + units) and ``interleaved`` (word-level spans, markers at switches).
Every document ends with eos.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from scaling import atomic
from scaling.errors import ConfigError
from scaling.jsonl import iter_jsonl
from scaling.shapes import padded_vocab
from trainer.data.interleave import plan_spans, unit_range
from trainer.data.shards import write_shard
from trainer.data.tokenizer import SpeechVocab, add_speech_tokens, train_text_tokenizer

SPLITS = ("train", "val")


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    rows = [row for _, row in iter_jsonl(path, required=required)]
    if not rows:
        raise ConfigError("the corpus file is empty", source=str(path))
    return rows


def check_utterance(utt: dict, source: str) -> None:
    """Alignment sanity: word times inside the audio, units in range."""
    n_frames = int(sum(utt["durations"]))
    length = n_frames * 0.04
    if len(utt["units"]) != len(utt["durations"]):
        raise ConfigError(f"utterance {utt.get('id')}: units and durations differ in length", source=source, field="durations")
    if not (len(utt["words"]) == len(utt["starts"]) == len(utt["ends"])):
        raise ConfigError(f"utterance {utt.get('id')}: words, starts and ends differ in length", source=source, field="words")
    for w, s, e in zip(utt["words"], utt["starts"], utt["ends"]):
        if s < 0 or e > length + 1e-6 or e < s:
            raise ConfigError(
                f"utterance {utt.get('id')}: word {w!r} spans [{s}, {e}] s, outside the audio's {length:.2f} s",
                source=source, field="starts/ends", value=[s, e])


def _encode_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def build_streams(text_rows, speech_rows, tokenizer, vocab: SpeechVocab, rng: np.random.Generator,
                  ratio: float = 0.3, lam: float = 10.0) -> tuple[dict[str, list[list[int]]], dict]:
    texts = [r["text"] for r in text_rows]
    text_ids = _encode_texts(tokenizer, texts)
    eos = vocab.eos
    docs = {
        "textlm": [ids + [eos] for ids in text_ids],
        "text": [[vocab.text] + ids + [eos] for ids in text_ids],
        "speech": [[vocab.speech] + vocab.units_to_ids(u["units"]) + [eos] for u in speech_rows],
    }
    # Interleaving: plan spans for every utterance, batch-encode all text pieces at once.
    plans = [plan_spans(len(u["words"]), rng, ratio, lam) for u in speech_rows]
    pieces = []
    for u, spans in zip(speech_rows, plans):
        for sp in spans:
            if sp.modality == "text":
                t = " ".join(u["words"][sp.start:sp.end])
                pieces.append(t if sp.start == 0 else " " + t)
    piece_ids = iter(_encode_texts(tokenizer, pieces))
    inter, speech_words, words, speech_tok, all_tok = [], 0, 0, 0, 0
    for u, spans in zip(speech_rows, plans):
        ids = []
        for sp in spans:
            if sp.modality == "speech":
                i, j = unit_range(u["durations"], u["starts"][sp.start], u["ends"][sp.end - 1])
                unit_ids = vocab.units_to_ids(u["units"][i:j])
                ids.append(vocab.speech)
                ids.extend(unit_ids)
                speech_words += sp.end - sp.start
                speech_tok += len(unit_ids)
            else:
                ids.append(vocab.text)
                ids.extend(next(piece_ids))
        words += len(u["words"])
        all_tok += len(ids)
        inter.append(ids + [eos])
    docs["interleaved"] = inter
    stats = {
        "speech_word_fraction": speech_words / max(words, 1),
        "speech_token_fraction": speech_tok / max(all_tok, 1),
    }
    return docs, stats


def vocab_manifest(text_vocab: int, vocab: SpeechVocab) -> dict:
    """The vocabulary part of data.json: tokenizer sizes and the model rows they need (padded to 64)."""
    return {
        "text_vocab_size": text_vocab,
        "speech_vocab_size": vocab.size,
        "text_model_vocab": padded_vocab(text_vocab),
        "speech_model_vocab": padded_vocab(vocab.size),
        "unit_offset": vocab.unit_offset,
    }


def prepare_corpus(data_dir: str | Path, *, vocab_size: int = 512, seed: int = 0, ratio: float = 0.3,
                   lam: float = 10.0) -> dict:
    """Tokenise and pack ``data_dir/corpus`` into ``data_dir/shards``; returns the data manifest."""
    t0 = time.time()
    data_dir = Path(data_dir)
    corpus = data_dir / "corpus"
    text = {s: read_jsonl(corpus / f"text_{s}.jsonl", ("text",)) for s in SPLITS}
    speech = {s: read_jsonl(corpus / f"speech_{s}.jsonl", ("words", "starts", "ends", "units", "durations")) for s in SPLITS}
    for s in SPLITS:
        src = str(corpus / f"speech_{s}.jsonl")
        for u in speech[s]:
            check_utterance(u, src)

    tok = train_text_tokenizer((r["text"] for r in text["train"]), vocab_size=vocab_size)
    text_vocab = len(tok)
    atomic_save_tokenizer(tok, data_dir / "tokenizer_text")
    add_speech_tokens(tok)
    atomic_save_tokenizer(tok, data_dir / "tokenizer")
    vocab = SpeechVocab.of(tok)

    shard_dir = data_dir / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    counts, fractions, digest = {}, {}, hashlib.sha256()
    for split in SPLITS:
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        docs, stats = build_streams(text[split], speech[split], tok, vocab, rng, ratio, lam)
        fractions[split] = stats
        for stream, stream_docs in docs.items():
            order = np.random.default_rng([seed, 7, SPLITS.index(split)]).permutation(len(stream_docs))
            info = write_shard(shard_dir, f"{stream}_{split}", [stream_docs[i] for i in order])
            counts[f"{stream}_{split}"] = {k: info[k] for k in ("tokens", "documents")}
            digest.update(info["sha256"].encode())
    manifest = {
        "format": 1,
        "seed": seed,
        "interleave": {"ratio": ratio, "poisson_lambda": lam},
        **vocab_manifest(text_vocab, vocab),
        "tokens": counts,
        "speech_fractions": fractions,
        "fingerprint": digest.hexdigest()[:16],
        "prepare_seconds": round(time.time() - t0, 2),
    }
    atomic.write_json(data_dir / "data.json", manifest)
    return manifest


def atomic_save_tokenizer(tok, out: Path) -> None:
    tmp = out.with_name(f".{out.name}.tmp")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    tok.save_pretrained(str(tmp))
    atomic.replace_dir(tmp, out)


def load_manifest(data_dir: str | Path) -> dict:
    path = Path(data_dir) / "data.json"
    if not path.is_file():
        raise ConfigError("prepared data not found (no data.json); run `scaling data synth --out DIR` first", source=str(path))
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Real corpora: `scaling data prepare --features F --alignments A --text T --tokenizer DIR --out OUT`
# ---------------------------------------------------------------------------------------------

MIX_STREAMS = ("text", "interleaved", "speech")


def split_indices(n: int, val_fraction: float, rng: np.random.Generator, what: str, source: str) -> dict[str, np.ndarray]:
    """Seeded split: ``max(1, round(val_fraction * n))`` documents to val, at least one to train."""
    if n < 2:
        raise ConfigError(f"the {what} corpus has {n} document(s); train and val need at least one each",
                          source=source, value=n)
    n_val = min(n - 1, max(1, int(round(val_fraction * n))))
    perm = rng.permutation(n)
    return {"train": np.sort(perm[n_val:]), "val": np.sort(perm[:n_val])}


def mixture_report(counts: dict, split: str = "train") -> dict:
    """Equal-token mixing of text / interleaved / speech from the measured token counts: each stream's share
    of the training tokens (1/3 each, as SIMS), the per-document sampling probabilities that give equal
    expected tokens (SlamKit-style ratios), and the budget each stream covers before repeating."""
    present = [s for s in MIX_STREAMS if f"{s}_{split}" in counts]
    if not present:
        return {}
    tok = {s: counts[f"{s}_{split}"]["tokens"] for s in present}
    docs = {s: counts[f"{s}_{split}"]["documents"] for s in present}
    inv = {s: docs[s] / tok[s] for s in present}  # documents per token
    z = sum(inv.values())
    return {
        "shares": {s: 1.0 / len(present) for s in present},
        "tokens": tok,
        "document_sampling_ratios": {s: round(inv[s] / z, 6) for s in present},
        "tokens_before_repeat": int(len(present) * min(tok.values())),
        "epochs_per_billion_tokens": {s: round(1e9 / len(present) / tok[s], 4) for s in present},
    }


def _fast_streams(text_docs: list[str], utts: list[dict], tokenizer, vocab: SpeechVocab, rng: np.random.Generator,
                  ratio: float, lam: float) -> tuple[dict[str, list], dict]:
    """Like :func:`build_streams` for real corpora, with numpy documents: utterances without words go to the
    speech stream only; the interleaving plan (plan_spans, unit_range semantics) is the same."""
    eos = vocab.eos
    off = vocab.unit_offset
    docs: dict[str, list] = {}
    if text_docs:
        ids = _encode_texts(tokenizer, text_docs)
        docs["textlm"] = [np.asarray(i + [eos], dtype=np.int32) for i in ids]
        docs["text"] = [np.asarray([vocab.text] + i + [eos], dtype=np.int32) for i in ids]
    docs["speech"] = [np.concatenate([[vocab.speech], u["units"] + off, [eos]]).astype(np.int32) for u in utts]
    aligned = [u for u in utts if u.get("words")]
    plans = [plan_spans(len(u["words"]), rng, ratio, lam) for u in aligned]
    pieces = []
    for u, spans in zip(aligned, plans):
        w = u["words"]
        for sp in spans:
            if sp.modality == "text":
                t = " ".join(w[sp.start:sp.end])
                pieces.append(t if sp.start == 0 else " " + t)
    piece_ids = iter(_encode_texts(tokenizer, pieces))
    inter, speech_words, words, speech_tok, all_tok = [], 0, 0, 0, 0
    for u, spans in zip(aligned, plans):
        dur = np.asarray(u["durations"], dtype=np.int64)
        ends_t = np.cumsum(dur) * 0.04
        starts_t = ends_t - dur * 0.04
        units = u["units"]
        parts = []
        for sp in spans:
            if sp.modality == "speech":
                # = unit_range(durations, starts[first], ends[last]) with the cumsums computed once
                i = int(np.searchsorted(ends_t, u["starts"][sp.start] + 1e-9, side="right"))
                j = max(i, int(np.searchsorted(starts_t, u["ends"][sp.end - 1] - 1e-9, side="left")))
                parts.append(np.asarray([vocab.speech], dtype=np.int64))
                parts.append(units[i:j] + off)
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
        "aligned_utterances": len(aligned),
        "utterances": len(utts),
    }
    return docs, stats


def _write_docs(shard_dir: Path, name: str, docs: list[np.ndarray]) -> dict:
    """Same files as :func:`trainer.data.shards.write_shard`, from numpy documents (concatenated, not iterated)."""
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    flat = np.concatenate(docs).astype(np.int32) if docs else np.zeros(0, np.int32)
    if flat.size == 0:
        raise ConfigError("no tokens to write: the corpus is empty", field=name)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    def _save(p, arr):
        with open(p, "wb") as fh:
            np.save(fh, arr)

    atomic.write_with(shard_dir / f"{name}.npy", lambda p: _save(p, flat))
    atomic.write_with(shard_dir / f"{name}.docs.npy", lambda p: _save(p, offsets))
    return {"tokens": int(flat.size), "documents": int(len(docs)), "sha256": hashlib.sha256(flat.tobytes()).hexdigest()}


def prepare_real(out: str | Path, *, features: str | Path, tokenizer: str | Path, text: str | Path | None = None,
                 alignments: str | Path | None = None, seed: int = 0, val_fraction: float = 0.02,
                 ratio: float = 0.3, lam: float = 10.0, log=None) -> dict:
    """Pack a real corpus into a data folder the trainer reads like the synthetic one.

    Inputs (formats in :mod:`trainer.data.ingest`): speech units (SlamKit features.jsonl / tokens.jsonl or our
    schema), optional word alignments, an optional plain-text corpus, and a text tokenizer folder. Output
    ``out/``: ``tokenizer_text/`` (a copy of the given tokenizer), ``tokenizer/`` (the same + the 502 speech
    tokens), ``shards/<stream>_<split>.npy`` (+ ``.docs.npy``) for the streams that have data (textlm and text
    need ``text``; interleaved needs alignments), ``data.json``. Everything is read and checked first and
    written into a temporary folder renamed into place at the end: an error leaves no output behind.
    """
    import shutil

    from trainer.data import ingest

    t0 = time.time()
    out = Path(out)
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError("must be between 0 and 1", field="val_fraction", value=val_fraction)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "data.json").is_file())):
        raise ConfigError("output exists and is not a prepared data folder; choose a new folder", source=str(out))
    utts = ingest.read_features(features)
    if alignments is not None:
        ingest.attach_alignments(utts, ingest.read_alignments(alignments))
    for u in utts:
        if u.get("words"):
            ingest.check_alignment(u)
    text_docs = ingest.read_text(text) if text is not None else []

    tok_dir = Path(tokenizer)
    tok = load_tokenizer_checked(tok_dir)
    text_vocab = len(tok)
    try:
        add_speech_tokens(tok)
    except Exception as e:
        raise ConfigError(f"the tokenizer cannot take the 502 speech tokens ({type(e).__name__}: {e})",
                          source=str(tok_dir), field="added_tokens") from None
    vocab = SpeechVocab.of(tok, source=str(tok_dir))

    rng_split = np.random.default_rng([seed, 11])
    speech_split = split_indices(len(utts), val_fraction, rng_split, "speech", str(features))
    text_split = split_indices(len(text_docs), val_fraction, rng_split, "text", str(text)) if text is not None else None

    tmp = out.with_name(f".{out.name}.tmp-prepare")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        shutil.copytree(tok_dir, tmp / "tokenizer_text")
        tok.save_pretrained(str(tmp / "tokenizer"))
        shard_dir = tmp / "shards"
        shard_dir.mkdir()
        counts, fractions, digest = {}, {}, hashlib.sha256()
        for split in SPLITS:
            rng = np.random.default_rng([seed, SPLITS.index(split)])
            split_utts = [utts[i] for i in speech_split[split]]
            split_text = [text_docs[i] for i in text_split[split]] if text_split is not None else []
            docs, stats = _fast_streams(split_text, split_utts, tok, vocab, rng, ratio, lam)
            fractions[split] = stats
            for stream in ("textlm", "text", "speech", "interleaved"):
                if stream not in docs:
                    continue
                stream_docs = docs[stream]
                order = np.random.default_rng([seed, 7, SPLITS.index(split)]).permutation(len(stream_docs))
                info = _write_docs(shard_dir, f"{stream}_{split}", [stream_docs[i] for i in order])
                counts[f"{stream}_{split}"] = {k: info[k] for k in ("tokens", "documents")}
                digest.update(info["sha256"].encode())
        streams = sorted({k.rsplit("_", 1)[0] for k in counts})
        manifest = {
            "format": 1,
            "seed": seed,
            "source": {"features": str(features), "alignments": None if alignments is None else str(alignments),
                       "text": None if text is None else str(text), "tokenizer": str(tok_dir), "val_fraction": val_fraction},
            "interleave": {"ratio": ratio, "poisson_lambda": lam},
            "streams": streams,
            **vocab_manifest(text_vocab, vocab),
            "tokens": counts,
            "speech_fractions": fractions,
            "mixture": mixture_report(counts),
            "fingerprint": digest.hexdigest()[:16],
            "prepare_seconds": round(time.time() - t0, 2),
        }
        atomic.write_json(tmp / "data.json", manifest)
        atomic.replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def load_tokenizer_checked(path: Path):
    from trainer.data.tokenizer import load_tokenizer

    try:
        return load_tokenizer(path)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"cannot load a tokenizer ({type(e).__name__}: {str(e)[:200]})", source=str(path)) from None
