"""SlamKit's StoryCloze layouts load as they are, and --convention slamkit encodes as SlamKit does."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scaling.errors import ConfigError
from trainer.eval.benchmarks import load_pairs
from trainer.eval.formats import join_storycloze_audio
from trainer.eval.scoring import encode_segments, encode_slamkit, special_tokens


def units_file(path: Path, units: dict[str, list[int]]) -> None:
    path.write_text("".join(json.dumps({"file_name": k, "units": v}) + "\n" for k, v in units.items()))


def test_flat_whole_story_folder(tmp_path):
    root = tmp_path / "ssc"
    root.mkdir()
    for i in (0, 1, 10):
        for k in ("correct", "incorrect"):
            (root / f"{i}_{k}.wav").write_bytes(b"")
    units_file(root / "units.jsonl", {f"{i}_{k}.wav": [i, 1 if k == "correct" else 2]
                                      for i in (0, 1, 10) for k in ("correct", "incorrect")})
    pairs = load_pairs(tmp_path, "ssc")
    assert [p["id"] for p in pairs] == ["0", "1", "10"]  # numeric order, as SlamKit sorts
    assert pairs[2]["positive"] == [{"modality": "speech", "units": [10, 1]}]
    assert pairs[2]["negative"] == [{"modality": "speech", "units": [10, 2]}]
    with pytest.raises(ConfigError, match="whole-story files hold no text"):
        load_pairs(tmp_path, "ssc_s2t")
    (root / "3_correct.wav").write_bytes(b"")
    with pytest.raises(ConfigError, match="story 3 has no incorrect file"):
        load_pairs(tmp_path, "ssc")


def test_multi_speaker_sub_folders(tmp_path):
    root = tmp_path / "ms_tsc"
    units = {}
    for spk in ("alice", "bob"):
        (root / spk).mkdir(parents=True)
        for i in (0, 1):
            for k in ("correct", "incorrect"):
                (root / spk / f"{i}_{k}.wav").write_bytes(b"")
                units[f"{spk}/{i}_{k}.wav"] = [i, 7 if spk == "bob" else 8, 1 if k == "correct" else 2]
    units_file(root / "units.jsonl", units)
    pairs = {p["id"]: p for p in load_pairs(tmp_path, "ms_tsc")}
    assert set(pairs) == {"alice/0", "alice/1", "bob/0", "bob/1"}
    assert pairs["bob/1"]["positive"][0]["units"] == [1, 7, 1] and pairs["bob/1"]["negative"][0]["units"] == [1, 7, 2]


def test_cross_modal_mutual_correct_incorrect(tmp_path):
    root = tmp_path / "cm"
    root.mkdir()
    units = {}
    for b in ("0", "1"):
        for part, n in (("mutual", 1), ("correct", 2), ("incorrect", 3)):
            (root / f"{b}_{part}.wav").write_bytes(b"")
            (root / f"{b}_{part}.txt").write_text(f"{part} {b}\n")
            units[f"{b}_{part}.wav"] = [int(b), n]
    units_file(root / "units.jsonl", units)
    st = {p["id"]: p for p in load_pairs(tmp_path, "cm_s2t")}
    assert st["1"]["positive"] == [{"modality": "speech", "units": [1, 1]}, {"modality": "text", "text": "correct 1"}]
    assert st["1"]["negative"][1] == {"modality": "text", "text": "incorrect 1"} and st["1"]["cross_modal"]
    ts = {p["id"]: p for p in load_pairs(tmp_path, "cm_t2s")}
    assert ts["0"]["positive"] == [{"modality": "text", "text": "mutual 0"}, {"modality": "speech", "units": [0, 2]}]
    ss = {p["id"]: p for p in load_pairs(tmp_path, "cm")}  # no joined units: the unit lists are joined
    assert ss["0"]["positive"] == [{"modality": "speech", "units": [0, 1]}, {"modality": "speech", "units": [0, 2]}]
    # units of the joined audio (SlamKit extracts from prompt+ending audio) win when present
    units.update({"0_mutual+correct.wav": [9, 9, 9], "0_mutual+incorrect.wav": [8, 8],
                  "1_mutual+correct.wav": [7], "1_mutual+incorrect.wav": [6]})
    units_file(root / "units.jsonl", units)
    ss = {p["id"]: p for p in load_pairs(tmp_path, "cm")}
    assert ss["0"]["positive"] == [{"modality": "speech", "units": [9, 9, 9]}]
    assert ss["0"]["negative"] == [{"modality": "speech", "units": [8, 8]}]
    (root / "1_incorrect.txt").write_text("  \n")
    with pytest.raises(ConfigError, match=r"1_incorrect.txt: field 'incorrect_text': item 1: no text for 'incorrect'"):
        load_pairs(tmp_path, "cm_t2t")


def test_join_storycloze_audio_concatenates_prompt_and_ending(tmp_path):
    import soundfile as sf

    root = tmp_path / "cm"
    root.mkdir()
    rng = np.random.default_rng(0)
    parts = {p: rng.uniform(-0.5, 0.5, n).astype(np.float32) for p, n in (("mutual", 160), ("correct", 80), ("incorrect", 40))}
    for p, a in parts.items():
        sf.write(str(root / f"0_{p}.wav"), a, 16000, subtype="FLOAT")
    out = join_storycloze_audio(root)
    assert sorted(f.name for f in out) == ["0_mutual+correct.wav", "0_mutual+incorrect.wav"]
    joined, sr = sf.read(str(root / "0_mutual+incorrect.wav"), dtype="float32")
    assert sr == 16000 and np.allclose(joined, np.concatenate([parts["mutual"], parts["incorrect"]]), atol=1e-4)


def slamkit_string(segments, *, speech_only: bool) -> str:
    """SlamKit's text form of an item (InterleavingTokeniser.stringify_representation for a speech
    batch, _stringify_interleaved for an interleaved one), transcribed from its source. Consecutive speech
    segments are one audio in SlamKit (a whole file, or prompt + ending joined): their units are
    extracted, so deduplicated, together."""
    from itertools import groupby

    runs = []  # (modality, content) of each run of one modality
    for s in segments:
        if runs and runs[-1][0] == s["modality"]:
            runs[-1] = (s["modality"], runs[-1][1] + (s["units"] if s["modality"] == "speech" else s["text"]))
        else:
            runs.append((s["modality"], list(s["units"]) if s["modality"] == "speech" else s["text"]))
    unit_str = lambda units: "".join(f"<Un{u}>" for u, _ in groupby(units))
    if speech_only:
        return "".join(unit_str(c) for _, c in runs)
    return "".join(("<speech>" + unit_str(c)) if m == "speech" else ("<text>" + c) for m, c in runs)


SP = {"modality": "speech", "units": [3, 1, 4]}
SP2 = {"modality": "speech", "units": [15, 9]}
SP3 = {"modality": "speech", "units": [4, 4, 7]}  # starts with SP's last unit (and repeats it)
TX = {"modality": "text", "text": "the cat sat"}
TX2 = {"modality": "text", "text": " on the mat"}
TX3 = {"modality": "text", "text": "and ran"}


@pytest.fixture(scope="module")
def tok_vocab(prepared):
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer

    tok = load_tokenizer(prepared / "tokenizer")
    return tok, SpeechVocab.of(tok)


@pytest.mark.parametrize("segments,cross_modal", [
    ([SP], False),            # sWUGGY / sBLIMP / whole-story sSC: units only
    ([SP, SP2], False),       # speech -> speech with units given separately: still one speech run, no marker
    ([SP, SP2], True),        # cross-modal S -> S: SlamKit's interleaved path opens with <speech>
    ([SP, SP3], True),        # S -> S joined: the repeated unit across the join collapses (SlamKit: one audio)
    ([SP, SP3], False),
    ([SP, TX], True),         # S -> T
    ([TX, SP], True),         # T -> S
    ([TX, TX3], True),        # T -> T: text joined as written ("the cat satand ran")
    ([TX, TX2], True),
])
def test_slamkit_convention_equals_slamkit_tokenisation(tok_vocab, segments, cross_modal):
    tok, vocab = tok_vocab
    speech_only = all(s["modality"] == "speech" for s in segments) and not cross_modal
    want = tok(slamkit_string(segments, speech_only=speech_only), add_special_tokens=True)["input_ids"]
    assert encode_slamkit(segments, tok, vocab, cross_modal=cross_modal).ids == want


def test_slamkit_convention_fixed_examples(tok_vocab):
    tok, vocab = tok_vocab
    u = vocab.unit_offset
    assert special_tokens(tok) == ([], [])  # like Qwen: no BOS
    assert encode_slamkit([SP], tok, vocab).ids == [u + 3, u + 1, u + 4]
    assert encode_segments([SP], tok, vocab).ids == [vocab.speech, u + 3, u + 1, u + 4]  # ours: marker first
    assert encode_slamkit([SP, TX], tok, vocab, cross_modal=True).ids == \
        [vocab.speech, u + 3, u + 1, u + 4, vocab.text] + tok("the cat sat", add_special_tokens=False)["input_ids"]
    assert encode_slamkit([TX, TX3], tok, vocab, cross_modal=True).ids == \
        [vocab.text] + tok("the cat satand ran", add_special_tokens=False)["input_ids"]
    assert encode_segments([TX, TX3], tok, vocab).ids == \
        [vocab.text] + tok("the cat sat", add_special_tokens=False)["input_ids"] + \
        tok(" and ran", add_special_tokens=False)["input_ids"]  # ours: a space before a later segment


def test_slamkit_convention_with_a_bos_tokenizer(tok_vocab, tmp_path):
    """A Llama-like tokenizer adds BOS: SlamKit's sequences start with it (n units scored, not n-1)."""
    from tokenizers.processors import TemplateProcessing

    from trainer.data.tokenizer import SpeechVocab, load_tokenizer

    tok, _ = tok_vocab
    tok.save_pretrained(str(tmp_path))
    bos_tok = load_tokenizer(tmp_path)
    bos = bos_tok.convert_tokens_to_ids("<|pad|>")  # stands in for <s>
    bos_tok._tokenizer.post_processor = TemplateProcessing(single="<|pad|> $A", special_tokens=[("<|pad|>", bos)])
    vocab = SpeechVocab.of(bos_tok)
    assert special_tokens(bos_tok) == ([bos], [])
    for segs, cm in (([SP], False), ([TX, SP], True), ([TX, TX3], True)):
        ids = encode_slamkit(segs, bos_tok, vocab, cross_modal=cm).ids
        assert ids[0] == bos
        assert ids == bos_tok(slamkit_string(segs, speech_only=not cm), add_special_tokens=True)["input_ids"]


def test_slamkit_convention_refuses_continuation_span(tok_vocab):
    from trainer.eval.suite import EvalSuite

    tok, vocab = tok_vocab
    items = {"x": [{"id": "1", "positive": [SP], "negative": [SP2]}]}
    with pytest.raises(ConfigError, match="SlamKit scores the whole sequence only"):
        EvalSuite(items, tok, vocab, span="continuation", convention="slamkit")
    s = EvalSuite(items, tok, vocab, convention="slamkit")
    assert s.benchmarks["x"].pos[0].ids == [vocab.unit_offset + u for u in SP["units"]]
