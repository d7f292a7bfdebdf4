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
from scaling.shapes import padded_vocab
from trainer.data.interleave import plan_spans, unit_range
from trainer.data.shards import write_shard
from trainer.data.tokenizer import SpeechVocab, add_speech_tokens, train_text_tokenizer

SPLITS = ("train", "val")


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise ConfigError("file not found", source=str(path))
    rows = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"line {i} is not valid JSON ({e.msg})", source=str(path)) from None
            for k in required:
                if k not in row:
                    raise ConfigError(f"line {i} has no '{k}'", source=str(path), field=k)
            rows.append(row)
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
        "text_vocab_size": text_vocab,
        "speech_vocab_size": vocab.size,
        "text_model_vocab": padded_vocab(text_vocab),
        "speech_model_vocab": padded_vocab(vocab.size),
        "unit_offset": vocab.unit_offset,
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
