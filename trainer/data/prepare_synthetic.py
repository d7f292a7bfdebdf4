"""The synthetic builder: from the generated corpus folder to a data folder (:mod:`scaling.datadir`).

Input (``trainer.data.synthetic`` writes it):
    corpus/text_{train,val}.jsonl     {"id", "text"}
    corpus/speech_{train,val}.jsonl   {"id", "words", "starts", "ends", "units", "durations", ...}
Output beside it: ``tokenizer_text/`` (a byte-level BPE trained on the text), ``tokenizer/`` (+ the
n_units + 2 speech tokens, n_units from the corpus manifest), ``shards/`` and ``data.json``, written last.
"""
from __future__ import annotations

import time
from pathlib import Path


from scaling.datadir import (MANIFEST, N_UNITS, SPEECH_TOKENIZER, SPLITS, TEXT_TOKENIZER, make_manifest, vocab_block,
                             vocab_sha, write_manifest)
from scaling.errors import ConfigError
from scaling.jsonl import iter_jsonl
from trainer.data.mixture import mixture_report
from trainer.data.shards import pack
from trainer.data.streams import build_streams
from trainer.data.tokenizer import (EOS, PAD, SpeechVocab, add_speech_tokens, check_round_trip, save_tokenizer,
                                    train_text_tokenizer)

SPEECH_FIELDS = ("words", "starts", "ends", "units", "durations")
#: Tokens of the text BPE besides its alphabet and merges.
SPECIAL_TOKENS = (EOS, PAD)


def min_vocab_size(text_alphabet: str, texts=None) -> int | None:
    """The smallest text vocabulary the BPE can have: its initial alphabet plus the special tokens. The
    BPE trainer never drops alphabet symbols, so a smaller ``vocab_size`` silently gives this size.
    "bytes": 256 byte symbols + 2 = 258; "corpus": the distinct bytes of ``texts`` + 2 (None without them)."""
    if text_alphabet == "bytes":
        return 256 + len(SPECIAL_TOKENS)
    if texts is None:
        return None
    seen: set = set()
    for t in texts:
        seen.update(t.encode("utf-8"))
    return len(seen) + len(SPECIAL_TOKENS)


def check_vocab_size(vocab_size: int, text_alphabet: str, texts=None, *, field: str = "--vocab-size",
                     source: str | None = None) -> None:
    """ConfigError unless ``vocab_size`` is at least :func:`min_vocab_size` (at least 1 + the special
    tokens while the corpus alphabet is not known yet)."""
    need = min_vocab_size(text_alphabet, texts)
    if need is None:
        if vocab_size <= len(SPECIAL_TOKENS):
            raise ConfigError(f"is below the text tokenizer's minimum: {len(SPECIAL_TOKENS)} special tokens plus the "
                              "corpus's characters", source=source, field=field, value=vocab_size)
        return
    if vocab_size < need:
        why = ("the 256 byte symbols of --text-alphabet bytes" if text_alphabet == "bytes" else
               f"the {need - len(SPECIAL_TOKENS)} distinct bytes of the training text (--text-alphabet corpus)")
        raise ConfigError(f"is below the text tokenizer's minimum of {need}: {why} plus {len(SPECIAL_TOKENS)} "
                          "special tokens", source=source, field=field, value=vocab_size)


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


def _source(vocab_size: int, n_units: int, text_alphabet: str) -> dict:
    return {"corpus": "synthetic", "vocab_size": vocab_size, "units": n_units, "text_alphabet": text_alphabet}


def is_prepared(data_dir: str | Path, config: dict, *, vocab_size: int, seed: int, n_units: int = N_UNITS,
                text_alphabet: str = "bytes"):
    """The opened (checked) data folder when ``data_dir`` already holds a complete one built from this
    synthetic config (``SynthConfig.to_dict()``), else None. Folders written before ``source`` recorded
    the inventory and the alphabet hold the defaults (500 units, "bytes")."""
    import json

    from scaling.datadir import DataDir

    corpus = Path(data_dir) / "corpus" / "manifest.json"
    try:
        data = DataDir.open(data_dir)
        made_from = json.loads(corpus.read_text(encoding="utf-8")).get("config")
    except (ConfigError, OSError, ValueError):
        return None
    source = data.manifest.get("source")
    recorded = {**_source(vocab_size, N_UNITS, "bytes"), **source} if isinstance(source, dict) else source
    same = (made_from == config and data.seed == seed and data.n_units == n_units
            and recorded == _source(vocab_size, n_units, text_alphabet))
    return data if same else None


def corpus_units(corpus: Path) -> int:
    """The unit inventory the corpus was rendered into (its manifest's ``unit_vocab``; 500 without one)."""
    import json

    path = corpus / "manifest.json"
    if not path.is_file():
        return N_UNITS
    try:
        n = json.loads(path.read_text(encoding="utf-8")).get("unit_vocab", N_UNITS)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise ConfigError(f"not a readable corpus manifest ({e})", source=str(path)) from None
    if not isinstance(n, int) or isinstance(n, bool):
        raise ConfigError("must be the number of speech units", source=str(path), field="unit_vocab", value=n)
    return n


def _check_texts(tok, text_val: list[str], speech: dict, corpus: Path, bench_dir: Path) -> None:
    """Every text the shards and the benchmarks tokenise survives the tokenizer (a corpus alphabet drops
    any other character silently): the text val split, the speech transcripts and the benchmarks' text."""
    check_round_trip(tok, ((f"line {i}", t) for i, t in enumerate(text_val, 1)), source=str(corpus / "text_val.jsonl"))
    for s, utts in speech.items():
        check_round_trip(tok, ((f"line {i}", " ".join(u["words"])) for i, u in enumerate(utts, 1)),
                         source=str(corpus / f"speech_{s}.jsonl"), field="words")
    for path in sorted(bench_dir.glob("*.jsonl")) if bench_dir.is_dir() else ():
        texts = [(f"line {i} (id {row.get('id')})", seg["text"]) for i, row in iter_jsonl(path)
                 for member in ("positive", "negative") for seg in row.get(member) or ()
                 if isinstance(seg, dict) and seg.get("modality") == "text" and isinstance(seg.get("text"), str)]
        check_round_trip(tok, texts, source=str(path))


def prepare_corpus(data_dir: str | Path, *, vocab_size: int = 512, seed: int = 0, ratio: float = 0.3,
                   lam: float = 10.0, text_alphabet: str = "bytes", n_units: int | None = None) -> dict:
    """Tokenise and pack ``data_dir/corpus`` into ``data_dir/shards``; returns the data manifest.
    ``text_alphabet``: the text BPE's initial alphabet (see ``trainer.data.tokenizer.ALPHABETS``);
    ``n_units``: the speech inventory (default: the corpus manifest's, 500 without one)."""
    t0 = time.time()
    data_dir = Path(data_dir)
    corpus = data_dir / "corpus"
    n_units = corpus_units(corpus) if n_units is None else n_units
    text = {s: [r["text"] for r in read_jsonl(corpus / f"text_{s}.jsonl", ("text",))] for s in SPLITS}
    speech = {}
    for s in SPLITS:
        src = str(corpus / f"speech_{s}.jsonl")
        speech[s] = read_jsonl(Path(src), SPEECH_FIELDS)
        for u in speech[s]:
            check_utterance(u, src)
            u["source"] = src

    check_vocab_size(vocab_size, text_alphabet, text["train"],  # before the folder is touched
                     source=None if text_alphabet == "bytes" else str(corpus / "text_train.jsonl"))
    (data_dir / MANIFEST).unlink(missing_ok=True)  # the folder is incomplete until data.json is written again
    tok = train_text_tokenizer(text["train"], vocab_size=vocab_size, alphabet=text_alphabet)
    if text_alphabet != "bytes":  # a byte-level alphabet encodes any text; a corpus alphabet may not
        _check_texts(tok, text["val"], speech, corpus, data_dir / "benchmarks")
    text_vocab, text_sha = len(tok), vocab_sha(tok.get_vocab())
    save_tokenizer(tok, data_dir / TEXT_TOKENIZER)
    add_speech_tokens(tok, n_units)
    save_tokenizer(tok, data_dir / SPEECH_TOKENIZER)
    vocab = SpeechVocab.of(tok)

    counts, fractions, fp = pack(data_dir / "shards", lambda split, rng: build_streams(
        text[split], speech[split], tok, vocab, rng, ratio, lam), seed)
    manifest = make_manifest(
        seed=seed, tokens=counts, fingerprint=fp, vocab=vocab_block(text_vocab, vocab.size, vocab.unit_offset, vocab.n_units),
        tokenizer_sha={TEXT_TOKENIZER: text_sha, SPEECH_TOKENIZER: vocab_sha(tok.get_vocab())},
        interleave={"ratio": ratio, "poisson_lambda": lam}, speech_fractions=fractions,
        mixture=mixture_report(counts), source=_source(vocab_size, vocab.n_units, text_alphabet),
        prepare_seconds=round(time.time() - t0, 2), format=1)  # single-file shards: the demo's fingerprint stays
    write_manifest(data_dir, manifest)
    return manifest
