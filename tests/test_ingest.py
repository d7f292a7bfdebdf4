"""Reading SlamKit's formats, our schema and plain text corpora."""
import json

import numpy as np
import pytest

from scaling.errors import ConfigError
from trainer.data.ingest import (attach_alignments, check_alignment, read_alignments, read_features, read_text,
                                 stem)

from conftest import SLAMKIT_EXAMPLE

EX = SLAMKIT_EXAMPLE


def test_slamkit_features_and_tokens_agree():
    feats = read_features(EX / "features.jsonl")
    toks = read_features(EX / "tokens.jsonl")
    assert [u["id"] for u in feats] == ["audio2", "audio1"] == [u["id"] for u in toks]
    assert [len(u["units"]) for u in feats] == [328, 288]
    assert [int(u["durations"].sum()) for u in feats] == [398, 352]
    for f, t in zip(feats, toks):
        assert np.array_equal(f["units"], t["units"]) and t["durations"] is None
        assert f["units"].min() >= 0 and f["units"].max() < 500


def test_our_schema(tmp_path):
    row = {"id": "u1", "words": ["a", "b"], "starts": [0.0, 0.1], "ends": [0.1, 0.2], "units": [1, 2, 3],
           "durations": [2, 2, 1]}
    (tmp_path / "s.jsonl").write_text(json.dumps(row) + "\n")
    u, = read_features(tmp_path / "s.jsonl")
    assert u["id"] == "u1" and u["words"] == ["a", "b"] and u["durations"].tolist() == [2, 2, 1]
    check_alignment(u)


def _aligned(n_words, seconds):
    return [[f" w{k}", k * seconds / n_words, (k + 1) * seconds / n_words] for k in range(n_words)]


def test_alignments_folder_and_jsonl(tmp_path):
    (tmp_path / "al").mkdir()
    (tmp_path / "al" / "audio1.json").write_text(json.dumps({"aligned_text": _aligned(5, 14.08)}))
    (tmp_path / "al.jsonl").write_text(json.dumps({"file_name": "x/audio1.flac", "aligned_text": _aligned(5, 14.08)}) + "\n")
    a = read_alignments(tmp_path / "al")
    b = read_alignments(tmp_path / "al.jsonl")
    assert a["audio1"]["words"] == b["audio1"]["words"] == ["w0", "w1", "w2", "w3", "w4"]  # leading space stripped
    assert a["audio1"]["ends"][-1] == pytest.approx(14.08)
    utts = read_features(EX / "features.jsonl")
    assert attach_alignments(utts, a) == 1
    assert "words" not in utts[0] and utts[1]["words"][0] == "w0"
    check_alignment(utts[1])
    assert stem("../example_data/audio/audio2.flac") == "audio2"


def test_units_out_of_range(tmp_path):
    row = json.loads((EX / "features.jsonl").read_text().splitlines()[0])
    row["units"][7] = 500
    (tmp_path / "f.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ConfigError) as e:
        read_features(tmp_path / "f.jsonl")
    msg = str(e.value)
    assert "f.jsonl" in msg and "field 'units'" in msg and "got 500" in msg and "line 1" in msg
    (tmp_path / "t.jsonl").write_text(json.dumps({"file_name": "a.flac", "audio_repr": "<Un3><Un612>"}) + "\n")
    with pytest.raises(ConfigError, match="audio_repr.*got 612"):
        read_features(tmp_path / "t.jsonl")
    (tmp_path / "d.jsonl").write_text(json.dumps({"file_name": "a.flac", "units": [1, 2], "duration": [1]}) + "\n")
    with pytest.raises(ConfigError, match="'duration'.*2 units but 1 durations"):
        read_features(tmp_path / "d.jsonl")


def test_alignment_outside_audio(tmp_path):
    (tmp_path / "al").mkdir()
    bad = _aligned(5, 14.08)
    bad[3][2] = 20.5
    (tmp_path / "al" / "audio1.json").write_text(json.dumps({"aligned_text": bad}))
    utts = read_features(EX / "features.jsonl")
    attach_alignments(utts, read_alignments(tmp_path / "al"))
    with pytest.raises(ConfigError) as e:
        check_alignment(utts[1])
    msg = str(e.value)
    assert "audio1.json" in msg and "aligned_text" in msg and "20.5" in msg and "14.08 s" in msg


def test_tokens_jsonl_cannot_be_interleaved(tmp_path):
    (tmp_path / "al").mkdir()
    (tmp_path / "al" / "audio1.json").write_text(json.dumps({"aligned_text": _aligned(5, 14.0)}))
    with pytest.raises(ConfigError, match="no durations.*features.jsonl.*drop --alignments"):
        attach_alignments(read_features(EX / "tokens.jsonl"), read_alignments(tmp_path / "al"))


def test_alignments_matching_nothing(tmp_path):
    (tmp_path / "al").mkdir()
    (tmp_path / "al" / "other.json").write_text(json.dumps({"aligned_text": _aligned(5, 14.0)}))
    with pytest.raises(ConfigError, match="no alignment matches.*'other'.*'audio2'"):
        attach_alignments(read_features(EX / "features.jsonl"), read_alignments(tmp_path / "al"))


def test_text_corpora(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "one doc"}\n\n{"text": "two"}\n')
    (tmp_path / "b.txt").write_text("line one\n\nline two\n")
    assert read_text(tmp_path / "a.jsonl") == ["one doc", "two"]
    assert read_text(tmp_path / "b.txt") == ["line one", "line two"]
    assert read_text(tmp_path) == ["one doc", "two", "line one", "line two"]
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match="e.jsonl: the text corpus is empty"):
        read_text(tmp_path / "e.jsonl")
    (tmp_path / "x.jsonl").write_text('{"txt": "oops"}\n')
    with pytest.raises(ConfigError, match="field 'text'.*line 1"):
        read_text(tmp_path / "x.jsonl")
    (tmp_path / "empty_features.jsonl").write_text("")
    with pytest.raises(ConfigError, match="features file is empty"):
        read_features(tmp_path / "empty_features.jsonl")


def _utt(starts, ends, frames=100):
    return {"id": "u", "source": "s.jsonl", "align_source": "al/u.json", "words": [f"w{k}" for k in range(len(starts))],
            "starts": starts, "ends": ends, "durations": np.full(frames, 1)}  # 100 frames = 4 s


def test_alignment_order_overlap_and_coverage():
    assert check_alignment(_utt([0.0, 1.0, 2.0], [1.0, 2.0, 3.0])) == pytest.approx(0.75)  # 3 of 4 s inside words
    assert check_alignment(_utt([0.0, 0.995], [1.0, 2.0])) == pytest.approx(0.5, abs=0.01)  # 5 ms: rounding, allowed
    with pytest.raises(ConfigError, match="al/u.json.*overlapping words: word 1 'w1' starts at 0.9 s, before word 0 'w0' ends at 1.0 s"):
        check_alignment(_utt([0.0, 0.9], [1.0, 2.0]))
    with pytest.raises(ConfigError, match="al/u.json.*out of time order: word 2 'w2' starts at 0.5 s, before word 1 'w1' at 2.0 s"):
        check_alignment(_utt([0.0, 2.0, 0.5], [1.0, 3.0, 0.6]))
    with pytest.raises(ConfigError, match="word 'w1' spans \\[2.0, 1.5\\] s, it ends before it starts"):
        check_alignment(_utt([0.0, 2.0], [1.0, 1.5]))
