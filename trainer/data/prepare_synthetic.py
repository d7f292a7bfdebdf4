"""The synthetic builder: from the generated corpus folder to a data folder (:mod:`scaling.datadir`).

Input (``trainer.data.synthetic`` writes it):
    corpus/text_{train,val}.jsonl     {"id", "text"}
    corpus/speech_{train,val}.jsonl   {"id", "words", "starts", "ends", "units", "durations", ...}
Output beside it: ``tokenizer_text/`` (a byte-level BPE trained on the text), ``tokenizer/`` (+ the 502
speech tokens), ``shards/`` and ``data.json``, written last.
"""
from __future__ import annotations

import time
from pathlib import Path


from scaling.datadir import MANIFEST, SPEECH_TOKENIZER, SPLITS, TEXT_TOKENIZER, make_manifest, vocab_block, vocab_sha, write_manifest
from scaling.errors import ConfigError
from scaling.jsonl import iter_jsonl
from trainer.data.mixture import mixture_report
from trainer.data.shards import pack
from trainer.data.streams import build_streams
from trainer.data.tokenizer import SpeechVocab, add_speech_tokens, save_tokenizer, train_text_tokenizer

SPEECH_FIELDS = ("words", "starts", "ends", "units", "durations")


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    rows = [row for _, row in iter_jsonl(path, required=required)]
    if not rows:
        raise ConfigError("the corpus file is empty", source=str(path))
    return rows


def check_utterance(utt: dict, source: str) -> None:
    """Alignment sanity: word times inside the audio, units and durations of one length."""
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


def is_prepared(data_dir: str | Path, config: dict, *, vocab_size: int, seed: int):
    """The opened (checked) data folder when ``data_dir`` already holds a complete one built from this
    synthetic config, else None."""
    import json

    from scaling.datadir import DataDir

    corpus = Path(data_dir) / "corpus" / "manifest.json"
    try:
        data = DataDir.open(data_dir)
        made_from = json.loads(corpus.read_text(encoding="utf-8")).get("config")
    except (ConfigError, OSError, ValueError):
        return None
    same = (made_from == config and data.seed == seed
            and data.manifest.get("source") == {"corpus": "synthetic", "vocab_size": vocab_size})
    return data if same else None


def prepare_corpus(data_dir: str | Path, *, vocab_size: int = 512, seed: int = 0, ratio: float = 0.3,
                   lam: float = 10.0) -> dict:
    """Tokenise and pack ``data_dir/corpus`` into ``data_dir/shards``; returns the data manifest."""
    t0 = time.time()
    data_dir = Path(data_dir)
    corpus = data_dir / "corpus"
    text = {s: [r["text"] for r in read_jsonl(corpus / f"text_{s}.jsonl", ("text",))] for s in SPLITS}
    speech = {}
    for s in SPLITS:
        src = str(corpus / f"speech_{s}.jsonl")
        speech[s] = read_jsonl(Path(src), SPEECH_FIELDS)
        for u in speech[s]:
            check_utterance(u, src)
            u["source"] = src

    (data_dir / MANIFEST).unlink(missing_ok=True)  # the folder is incomplete until data.json is written again
    tok = train_text_tokenizer(text["train"], vocab_size=vocab_size)
    text_vocab, text_sha = len(tok), vocab_sha(tok.get_vocab())
    save_tokenizer(tok, data_dir / TEXT_TOKENIZER)
    add_speech_tokens(tok)
    save_tokenizer(tok, data_dir / SPEECH_TOKENIZER)
    vocab = SpeechVocab.of(tok)

    counts, fractions, fp = pack(data_dir / "shards", lambda split, rng: build_streams(
        text[split], speech[split], tok, vocab, rng, ratio, lam), seed)
    manifest = make_manifest(
        seed=seed, tokens=counts, fingerprint=fp, vocab=vocab_block(text_vocab, vocab.size, vocab.unit_offset),
        tokenizer_sha={TEXT_TOKENIZER: text_sha, SPEECH_TOKENIZER: vocab_sha(tok.get_vocab())},
        interleave={"ratio": ratio, "poisson_lambda": lam}, speech_fractions=fractions,
        mixture=mixture_report(counts), source={"corpus": "synthetic", "vocab_size": vocab_size},
        prepare_seconds=round(time.time() - t0, 2), format=1)  # single-file shards: the demo's fingerprint stays
    write_manifest(data_dir, manifest)
    return manifest
