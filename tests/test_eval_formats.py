"""Loaders for the published benchmark layouts (from pre-extracted units) and cross-modal markers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaling.errors import ConfigError
from trainer.eval.benchmarks import load_pairs
from trainer.eval.formats import UnitIndex, load_storycloze, load_zerospeech, split_cross_modal
from trainer.eval.scoring import encode_segments

from conftest import SLAMKIT_EXAMPLE as SLAMKIT  # noqa: E402


def write_units(path: Path, units: dict[str, list[int]], repr_style: bool = False) -> Path:
    with open(path, "w") as fh:
        for name, u in units.items():
            row = {"file_name": name, "audio_repr": "".join(f"<Un{x}>" for x in u)} if repr_style else \
                {"file_name": name, "units": u}
            fh.write(json.dumps(row) + "\n")
    return path


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header] + rows) + "\n")
    return path


def test_slamkit_units_and_audio_repr_agree():
    feats = UnitIndex.load(SLAMKIT / "features.jsonl")
    toks = UnitIndex.load(SLAMKIT / "tokens.jsonl")
    for name in ("audio1", "audio2.flac", "audio/audio2.wav", "../example_data/audio/audio1.flac"):
        u = feats.get(name, item="x")
        assert u == toks.get(name, item="x") and len(u) > 100


def test_units_of_a_set_are_looked_up_by_set_and_path_first():
    # one units file over a reference folder: the same relative names in two sets
    idx = UnitIndex({"/ref/ssc/0_correct.wav": [1], "/ref/tsc/0_correct.wav": [2], "/ref/tsc/x/9.wav": [3]}, source="f")
    assert idx.scoped("tsc").get("0_correct", item="i") == [2] and idx.scoped("ssc").get("0_correct.wav", item="i") == [1]
    assert "0_correct" not in idx and "0_correct" in idx.scoped("ssc")
    assert idx.scoped("ssc").get("9", item="i") == [3]  # not under the set: the existing rules
    with pytest.raises(ConfigError, match=r"item i: audio file '0_correct' matches several entries of the units file; "
                                          r"give this set a units file of its own"):
        idx.get("0_correct", item="i")
    with pytest.raises(ConfigError, match=r"\(nor does a/b/0_correct name one\)"):
        idx.scoped("a/b").get("0_correct", item="i")


def test_zerospeech_lexical_pairs_come_from_ids_not_order(tmp_path):
    # rows shuffled: a word and its non-word are far apart; two voices make two pairs per id
    units = {f"audio/{n}.wav": [i, i + 1] for i, n in enumerate(["w1a", "n1a", "w1b", "n1b", "w2a", "n2a"])}
    write_units(tmp_path / "units.jsonl", units)
    write_csv(tmp_path / "gold.csv", "filename,voice,frequency,word,correct,id", [
        "n2a,Alex,low,blick,0,2", "w1a,Alex,high,house,1,1", "n1b,Bea,high,hause,0,1",
        "w2a,Alex,low,brick,1,2", "n1a,Alex,high,hause,0,1", "w1b,Bea,high,house,1,1",
    ])
    pairs = {p["id"]: p for p in load_zerospeech(tmp_path / "gold.csv", tmp_path / "units.jsonl")}
    assert set(pairs) == {"1/Alex", "1/Bea", "2/Alex"}
    assert pairs["1/Bea"]["positive"] == [{"modality": "speech", "units": [2, 3]}]
    assert pairs["1/Bea"]["negative"] == [{"modality": "speech", "units": [3, 4]}]
    assert pairs["2/Alex"]["files"] == ["w2a", "n2a"] and pairs["2/Alex"]["word"] == "brick"


def test_zerospeech_syntactic_and_load_pairs_layout(tmp_path):
    d = tmp_path / "sblimp"
    d.mkdir()
    write_units(d / "tokens.jsonl", {"a.wav": [1, 2, 3], "b.wav": [4, 5], "c.wav": [6], "e.wav": [7, 8]}, repr_style=True)
    # the official scorer pairs the k-th correct row with the k-th incorrect row: shuffled ids are refused
    write_csv(d / "gold.csv", "filename,type,subtype,correct,id",
              ["b,agr,x,0,10", "c,agr,x,1,11", "a,agr,x,1,10", "e,agr,x,0,11"])
    with pytest.raises(ConfigError, match=r"line 3 \(id 11\) is paired with line 2 \(id 10\)"):
        load_pairs(tmp_path, "sblimp")
    write_csv(d / "gold.csv", "filename,type,subtype,correct,id",
              ["b,agr,x,0,10", "a,agr,x,1,10", "c,agr,x,1,11", "e,agr,x,0,11"])
    pairs = load_pairs(tmp_path, "sblimp")
    assert [(p["id"], p["positive"][0]["units"], p["negative"][0]["units"]) for p in pairs] == \
        [("10", [1, 2, 3], [4, 5]), ("11", [6], [7, 8])]
    assert len(load_pairs(tmp_path, "sblimp", max_items=1)) == 1


def test_gold_row_without_units_names_the_item(tmp_path):
    write_units(tmp_path / "units.jsonl", {"w1.wav": [1]})
    write_csv(tmp_path / "gold.csv", "filename,voice,frequency,word,correct,id", ["w1,A,1,x,1,42", "ghost,A,1,y,0,42"])
    with pytest.raises(ConfigError, match=r"item 42/A: no units for audio file 'ghost'"):
        load_zerospeech(tmp_path / "gold.csv", tmp_path / "units.jsonl")


def test_missing_files_and_bad_units_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="gold file not found"):
        load_zerospeech(tmp_path / "gold.csv", tmp_path / "units.jsonl")
    write_csv(tmp_path / "gold.csv", "filename,type,subtype,correct,id", ["a,t,s,1,1", "b,t,s,0,1"])
    with pytest.raises(ConfigError, match="units file not found"):
        load_zerospeech(tmp_path / "gold.csv", tmp_path / "units.jsonl")
    write_units(tmp_path / "units.jsonl", {"a": [1, 500], "b": [2]})
    with pytest.raises(ConfigError, match=r"line 1 \(a\): unit 500 is outside 0..499"):
        load_zerospeech(tmp_path / "gold.csv", tmp_path / "units.jsonl")
    write_units(tmp_path / "units.jsonl", {"a": [1], "b": [2]})
    write_csv(tmp_path / "gold.csv", "filename,type,subtype,correct,id", ["a,t,s,1,7", "b,t,s,1,7"])
    with pytest.raises(ConfigError, match=r"2 correct=1 rows but 0 correct=0 rows"):
        load_zerospeech(tmp_path / "gold.csv", tmp_path / "units.jsonl")
    write_csv(tmp_path / "gold.csv", "filename,voice,frequency,correct,id", ["a,A,3,1,7", "b,A,3,1,7"])
    with pytest.raises(ConfigError, match=r"item 7/A: needs exactly one correct=1"):
        load_zerospeech(tmp_path / "gold.csv", tmp_path / "units.jsonl")
    with pytest.raises(ConfigError, match=r"benchmark 'nope' not found"):
        load_pairs(tmp_path, "nope")


def storycloze_manifest(root: Path) -> Path:
    root.mkdir(parents=True)
    write_units(root / "units.jsonl", {
        "s1/prompt.wav": [1, 2, 3], "s1/correct.wav": [4, 5], "s1/incorrect.wav": [6, 7, 8],
        "s2/prompt.wav": [9], "s2/correct.wav": [10], "s2/incorrect.wav": [11],
    })
    with open(root / "manifest.jsonl", "w") as fh:
        for sid in ("s2", "s1"):
            fh.write(json.dumps({"id": sid, "prompt": f"{sid}/prompt.wav", "correct": f"{sid}/correct.wav",
                                 "incorrect": f"{sid}/incorrect.wav", "prompt_text": f"story {sid} begins",
                                 "correct_text": "it ends well", "incorrect_text": "a cat flies",
                                 "speaker": "v3"}) + "\n")
    return root


def test_storycloze_manifest_all_modalities(tmp_path):
    root = storycloze_manifest(tmp_path / "ssc")
    ss = {p["id"]: p for p in load_pairs(tmp_path, "ssc")}
    assert ss["s1"]["positive"] == [{"modality": "speech", "units": [1, 2, 3]}, {"modality": "speech", "units": [4, 5]}]
    assert ss["s1"]["negative"][1] == {"modality": "speech", "units": [6, 7, 8]}
    assert ss["s1"]["speaker"] == "v3"
    st = {p["id"]: p for p in load_pairs(tmp_path, "ssc_s2t")}
    assert st["s1"]["positive"][1] == {"modality": "text", "text": "it ends well"}
    assert st["s1"]["negative"][1] == {"modality": "text", "text": "a cat flies"}
    ts = {p["id"]: p for p in load_storycloze(root, prompt="text", ending="speech")}
    assert ts["s2"]["positive"] == [{"modality": "text", "text": "story s2 begins"}, {"modality": "speech", "units": [10]}]
    tt = load_pairs(tmp_path, "ssc_t2t")
    assert all(s["modality"] == "text" for p in tt for s in p["positive"] + p["negative"])
    assert split_cross_modal("ms_tsc_t2s") == ("ms_tsc", "text", "speech")


def test_storycloze_folder_per_item(tmp_path):
    root = tmp_path / "tsc"
    for sid in ("a", "b"):
        (root / sid).mkdir(parents=True)
        (root / sid / "text.json").write_text(json.dumps({"prompt": "p", "correct": "c", "incorrect": "i"}))
    write_units(root / "units.jsonl", {f"{s}/{k}.flac": [n] for n, (s, k) in enumerate(
        (s, k) for s in ("a", "b") for k in ("prompt", "correct", "incorrect"))})
    pairs = load_pairs(tmp_path, "tsc")
    assert [(p["id"], p["positive"][1]["units"], p["negative"][1]["units"]) for p in pairs] == [("a", [1], [2]), ("b", [4], [5])]
    (root / "c").mkdir()  # an item folder with no units
    with pytest.raises(ConfigError, match=r"item c: no units for audio file 'c/prompt'"):
        load_pairs(tmp_path, "tsc")


def test_storycloze_missing_text_names_the_item(tmp_path):
    root = storycloze_manifest(tmp_path / "ssc")
    with open(root / "manifest.jsonl", "a") as fh:
        fh.write(json.dumps({"id": "s3", "prompt": "s1/prompt.wav", "correct": "s1/correct.wav",
                             "incorrect": "s1/incorrect.wav"}) + "\n")
    assert len(load_pairs(tmp_path, "ssc")) == 3  # speech only: text not needed
    with pytest.raises(ConfigError, match=r"manifest.jsonl: field 'correct_text': item s3 \(line 3\): no text for 'correct'"):
        load_pairs(tmp_path, "ssc_s2t")
    with open(root / "manifest.jsonl", "a") as fh:
        fh.write(json.dumps({"id": "s4", "prompt": "s1/prompt.wav", "correct": "s1/correct.wav",
                             "incorrect": "s1/incorrect.wav", "positive": []}) + "\n")
    with pytest.raises(ConfigError, match=r"manifest.jsonl: field 'positive': line 4: key 'positive' is reserved"):
        load_pairs(tmp_path, "ssc")


@pytest.mark.parametrize("name,switch", [("ssc", False), ("ssc_s2t", True), ("ssc_t2s", True), ("ssc_t2t", False)])
def test_cross_modal_markers_exactly_at_switches(tmp_path, prepared, name, switch):
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer

    tok = load_tokenizer(prepared / "tokenizer")
    vocab = SpeechVocab.of(tok)
    storycloze_manifest(tmp_path / "ssc")
    for p in load_pairs(tmp_path, name):
        for member in ("positive", "negative"):
            prompt, ending = p[member]
            enc = encode_segments(p[member], tok, vocab)
            markers = [i for i, t in enumerate(enc.ids) if t in (vocab.speech, vocab.text)]
            first = vocab.speech if prompt["modality"] == "speech" else vocab.text
            assert enc.ids[0] == first
            if prompt["modality"] == "speech":
                body = vocab.units_to_ids(prompt["units"])
            else:
                body = tok(prompt["text"], add_special_tokens=False)["input_ids"]
            assert enc.ids[1:1 + len(body)] == body
            at = 1 + len(body)
            if switch:
                assert markers == [0, at] and enc.cont_start == at
                assert enc.ids[at] == (vocab.speech if ending["modality"] == "speech" else vocab.text)
                at += 1
            else:
                assert markers == [0] and enc.cont_start == at
            if ending["modality"] == "speech":
                assert enc.ids[at:] == vocab.units_to_ids(ending["units"])
            else:
                assert enc.ids[at:] == tok(" " + ending["text"], add_special_tokens=False)["input_ids"]
