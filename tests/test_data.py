"""Tokenisation, interleaving, mixing and packing."""
import json

import numpy as np
import pytest

from scaling.errors import ConfigError
from trainer.data.interleave import plan_spans, unit_range
from trainer.data.mixture import Mixture
from scaling.datadir import DataDir
from trainer.data.prepare_synthetic import check_utterance, prepare_corpus
from trainer.data.streams import build_streams
from trainer.data.tokenizer import SpeechVocab, load_tokenizer, train_text_tokenizer


@pytest.mark.parametrize("n_words", [10, 30, 300])
def test_interleaving_holds_30_percent(n_words):
    rng = np.random.default_rng(1)
    for _ in range(200):
        spans = plan_spans(n_words, rng)
        speech = sum(s.end - s.start for s in spans if s.modality == "speech")
        assert abs(speech / n_words - 0.3) <= 0.05
        # contiguous cover, alternating modalities (speech spans never touch)
        assert spans[0].start == 0 and spans[-1].end == n_words
        for a, b in zip(spans, spans[1:]):
            assert a.end == b.start and a.modality != b.modality


def test_span_lengths_are_poisson_like():
    rng = np.random.default_rng(0)
    lengths = [s.end - s.start for _ in range(300) for s in plan_spans(300, rng) if s.modality == "speech"]
    # full spans follow Poisson(10); truncated last spans pull the mean down a little
    assert 7.5 < np.mean(lengths) < 10.5


def test_unit_range_covers_word_times():
    durations = [2, 1, 3, 1]  # frames of 40 ms: units span [0,.08) [.08,.12) [.12,.24) [.24,.28)
    assert unit_range(durations, 0.08, 0.24) == (1, 3)
    assert unit_range(durations, 0.0, 0.28) == (0, 4)
    assert unit_range(durations, 0.10, 0.13) == (1, 3)


def _speech_utt():
    return {"id": "u", "words": ["the", "red", "fox", "ran", "far", "away", "from", "home", "at", "night"],
            "starts": [i * 0.2 for i in range(10)], "ends": [i * 0.2 + 0.2 for i in range(10)],
            "units": [u for i in range(10) for u in (2 * i, 2 * i + 1)], "durations": [3, 2] * 10}


def test_markers_only_at_switches(prepared):
    tok = load_tokenizer(prepared / "tokenizer")
    vocab = SpeechVocab.of(tok)
    utts = [_speech_utt() for _ in range(50)]
    docs, stats = build_streams(["a b"], utts, tok, vocab, np.random.default_rng(0))
    for ids in docs["interleaved"]:
        ids = ids[:-1]  # eos
        assert ids[0] in (vocab.speech, vocab.text)
        modality = None
        for k, t in enumerate(ids):
            is_unit = vocab.unit_offset <= t < vocab.unit_offset + 500
            if t in (vocab.speech, vocab.text):
                new = "speech" if t == vocab.speech else "text"
                assert new != modality, f"marker without a switch at {k}"
                modality = new
            else:
                assert is_unit == (modality == "speech"), f"token {t} at {k} in a {modality} span"
    assert stats["speech_word_fraction"] == pytest.approx(0.3)
    # each speech span carries exactly the units of its words (2 units per word here)
    for ids in docs["interleaved"]:
        n_units = sum(1 for t in ids if vocab.unit_offset <= t < vocab.unit_offset + 500)
        assert n_units == 2 * 3


def test_tokenizer_has_speech_tokens_and_base_ids_unchanged(prepared):
    base = load_tokenizer(prepared / "tokenizer_text")
    full = load_tokenizer(prepared / "tokenizer")
    assert len(full) == len(base) + 502
    text = "Once upon a time, Max found a red ball."
    assert base(text)["input_ids"] == full(text)["input_ids"]
    v = SpeechVocab.of(full)
    assert full.convert_ids_to_tokens(v.unit_offset + 499) == "<Un499>"
    assert full("<Un3><Un49>", add_special_tokens=False)["input_ids"] == [v.unit_offset + 3, v.unit_offset + 49]
    with pytest.raises(ConfigError, match="speech tokens"):
        SpeechVocab.of(base)


def test_units_out_of_range_rejected(prepared):
    v = SpeechVocab.of(load_tokenizer(prepared / "tokenizer"))
    with pytest.raises(ConfigError, match="500"):
        v.units_to_ids([1, 2, 500])


def test_shards_decode_back_to_corpus(prepared):
    tok = load_tokenizer(prepared / "tokenizer")
    v = SpeechVocab.of(tok)
    corpus = {json.loads(l)["id"]: json.loads(l) for l in (prepared / "corpus/speech_val.jsonl").read_text().splitlines()}
    data = DataDir.open(prepared)
    flat = np.asarray(data.tokens("speech", "val"))
    offs = data.doc_offsets("speech", "val")
    ends = list(offs[1:]) + [len(flat)]
    decoded = {tuple((flat[s + 1:e - 1] - v.unit_offset).tolist()) for s, e in zip(offs, ends)}
    assert decoded == {tuple(u["units"]) for u in corpus.values()}
    texts = {json.loads(l)["text"] for l in (prepared / "corpus/text_val.jsonl").read_text().splitlines()}
    flat = np.asarray(data.tokens("text", "val"))
    offs = data.doc_offsets("text", "val")
    ends = list(offs[1:]) + [len(flat)]
    assert {tok.decode(flat[s + 1:e - 1]) for s, e in zip(offs, ends)} == texts


def test_manifest_reports_fractions_and_counts(prepared):
    m = DataDir.open(prepared).manifest
    assert abs(m["speech_fractions"]["train"]["speech_word_fraction"] - 0.3) < 0.02
    assert m["speech_model_vocab"] % 64 == 0 and m["speech_model_vocab"] >= m["speech_vocab_size"]
    for s in ("text", "textlm", "speech", "interleaved"):
        assert m["tokens"][f"{s}_train"]["tokens"] > 0


def test_mixture_balances_tokens_and_is_resumable():
    streams = {"a": np.arange(1000), "b": np.arange(300) + 10_000, "c": np.arange(5000) + 20_000}
    m = Mixture(streams, {"a": 1, "b": 1, "c": 1}, seq_len=10, seed=3)
    seqs, which = m.sequences(0, 90)
    assert np.bincount(which).tolist() == [30, 30, 30]
    assert m.tokens_per_stream() == {"a": 300, "b": 300, "c": 300}
    # stream b has 30 windows: the 31st draw starts a new epoch (a fresh permutation)
    first = {tuple(r) for r, w in zip(seqs, which) if w == 1}
    assert len(first) == 30
    later, _ = Mixture(streams, {"a": 1, "b": 1, "c": 1}, 10, 3).sequences(45, 45)
    assert (later == seqs[45:]).all()
    # passes over each stream: windows drawn / whole windows (b's 30 windows were each drawn once)
    assert m.epochs_per_stream() == {"a": 0.3, "b": 1.0, "c": 0.06}
    m.sequences(90, 3)
    assert m.epochs_per_stream()["b"] == pytest.approx(31 / 30, abs=1e-4)


def test_alignment_outside_audio_rejected():
    utt = _speech_utt()
    utt["ends"][-1] = 99.0
    with pytest.raises(ConfigError, match="outside the audio"):
        check_utterance(utt, "x.jsonl")


def test_empty_corpus_rejected(tmp_path):
    (tmp_path / "corpus").mkdir()
    for s in ("train", "val"):
        (tmp_path / f"corpus/text_{s}.jsonl").write_text("")
        (tmp_path / f"corpus/speech_{s}.jsonl").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        prepare_corpus(tmp_path)
    assert not (tmp_path / "shards").exists() and not (tmp_path / "data.json").exists()


def test_bpe_trains_on_text():
    tok = train_text_tokenizer(["the cat sat on the mat"] * 50, vocab_size=300)
    ids = tok("the cat", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "the cat" and len(ids) <= 4
