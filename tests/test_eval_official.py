"""ZeroSpeech sLM21 scores as the official toolkit computes them, on fixtures scored by hand here.

The official algorithm (zerospeech2021 lexical.py / syntactic.py, zerospeech-benchmarks submissions):
lexical = per id the mean over all its (word, non-word) pairs of every voice, then the mean over ids;
in-vocab = count-weighted mean of the non-oov band means as read back from its 4-decimal CSV;
syntactic = mean over (type, subtype, id) groups. Pair score: 1 / 0.5 (tie) / 0 on log-probabilities.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from scaling.errors import ConfigError
from trainer.eval.formats import load_zerospeech
from trainer.eval.results import MetricResult
from helpers.zerospeech_official import official_from_submission
from trainer.eval.zerospeech import frequency_band, write_submission

# file -> NLL (lower = more likely); comments give each pair's official score
LEXICAL = [  # filename, id, voice, frequency, correct, nll
    ("w1A", 1, "A", 0, 1, 1.0), ("n1Aa", 1, "A", 0, 0, 2.0), ("n1Ab", 1, "A", 0, 0, 0.5),  # 1, 0
    ("w1B", 1, "B", 0, 1, 1.0), ("n1B", 1, "B", 0, 0, 3.0),  # 1           -> id 1: (1+0+1)/3 = 2/3 (oov)
    ("w2A", 2, "A", 3, 1, 1.0), ("n2A", 2, "A", 3, 0, 2.0),  # 1
    ("w2B", 2, "B", 3, 1, 1.0), ("n2B", 2, "B", 3, 0, 2.0),  # 1
    ("w2C", 2, "C", 3, 1, 2.0), ("n2C", 2, "C", 3, 0, 1.0),  # 0           -> id 2: 2/3 (band 1-5)
    ("w3A", 3, "A", 5, 1, 1.5), ("n3A", 3, "A", 5, 0, 1.5),  # tie 0.5     -> id 3: 0.5 (5 is in "6-20")
    ("w4A", 4, "A", 50, 1, 2.0), ("n4A", 4, "A", 50, 0, 1.0),  # 0
    ("w4B", 4, "B", 50, 1, 1.0), ("n4B", 4, "B", 50, 0, 2.0),  # 1         -> id 4: 0.5 (21-100)
    ("w5A", 5, "A", 1000, 1, 1.0), ("n5A", 5, "A", 1000, 0, 2.0),  # 1     -> id 5: 1 (>100)
    ("w6A", 6, "A", 100, 1, 1.0), ("n6Aa", 6, "A", 100, 0, 2.0), ("n6Ab", 6, "A", 100, 0, 1.0),  # 1, 0.5 -> 0.75 (>100)
]
LEX_ALL = (2 / 3 + 2 / 3 + 0.5 + 0.5 + 1 + 0.75) / 6  # = 49/72
# bands (as the official CSV holds them, 4 decimals): 1-5 0.6667 (n 1), 6-20 0.5 (1), 21-100 0.5 (1), >100 0.875 (2)
LEX_IN_VOCAB = (0.6667 + 0.5 + 0.5 + 2 * 0.875) / 5  # = 0.68334

SYNTACTIC = [  # filename, id, voice, type, subtype, correct, nll; the k-th correct row pairs with the k-th incorrect
    ("s1A", 1, "A", "agr", "a", 1, 1.0), ("u1A", 1, "A", "agr", "a", 0, 2.0),  # 1
    ("s1B", 1, "B", "agr", "a", 1, 2.0), ("u1B", 1, "B", "agr", "a", 0, 1.0),  # 0   -> agr/a/1: 0.5
    ("s2A", 2, "A", "agr", "a", 1, 1.0), ("u2A", 2, "A", "agr", "a", 0, 1.0),  # tie -> agr/a/2: 0.5
    ("s3A", 3, "A", "agr", "b", 1, 1.0), ("u3A", 3, "A", "agr", "b", 0, 2.0),  # 1
    ("s3B", 3, "B", "agr", "b", 1, 1.0), ("u3B", 3, "B", "agr", "b", 0, 2.0),  # 1
    ("s3C", 3, "C", "agr", "b", 1, 3.0), ("u3C", 3, "C", "agr", "b", 0, 2.0),  # 0   -> agr/b/3: 2/3
    ("s4A", 4, "A", "fill", "c", 1, 1.0), ("u4A", 4, "A", "fill", "c", 0, 2.0),  # 1 -> fill/c/4: 1
]
SYN_ALL = (0.5 + 0.5 + 2 / 3 + 1) / 4  # = 2/3


def write_fixture(tmp_path, kind):
    rows = LEXICAL if kind == "lexical" else SYNTACTIC
    d = tmp_path / ("swuggy" if kind == "lexical" else "sblimp")
    d.mkdir()
    with open(d / "units.jsonl", "w") as fh:
        for i, r in enumerate(rows):
            fh.write(json.dumps({"file_name": f"{r[0]}.wav", "units": [i, i + 1]}) + "\n")
    if kind == "lexical":
        lines = ["filename,id,voice,frequency,word,phones,length,correct"] + \
            [f"{f},{i},{v},{fr},w{i},p,3,{c}" for f, i, v, fr, c, _ in rows]
    else:
        lines = ["filename,id,voice,type,subtype,correct,transcription"] + \
            [f"{f},{i},{v},{t},{s},{c},x" for f, i, v, t, s, c, _ in rows]
    (d / "gold.csv").write_text("\n".join(lines) + "\n")
    return d, {r[0]: r[-1] for r in rows}


def project_result(tmp_path, kind) -> MetricResult:
    d, nll = write_fixture(tmp_path, kind)
    pairs = load_zerospeech(d / "gold.csv", d / "units.jsonl")
    return MetricResult.of_pairs(d.name, pairs, [nll[p["files"][0]] for p in pairs], [nll[p["files"][1]] for p in pairs])


def test_lexical_all_in_vocab_and_bands_equal_the_official_algorithm(tmp_path):
    r = project_result(tmp_path, "lexical")
    assert r.n_items == 12 and r.accuracy == pytest.approx(LEX_ALL, abs=1e-15)
    assert r.accuracy != pytest.approx(float(np.mean(r.scores)))  # the flat mean over pairs differs (8/12)
    off = r.official()
    assert off["all"] == pytest.approx(49 / 72, abs=1e-15) and off["groups"] == 6
    assert off["in_vocab"] == pytest.approx(LEX_IN_VOCAB, abs=1e-12)
    bands = {b["label"]: (b["n"], b["score"]) for b in off["by_frequency"]}
    assert bands == {"oov": (1, pytest.approx(2 / 3)), "1-5": (1, pytest.approx(2 / 3)), "6-20": (1, 0.5),
                     "21-100": (1, 0.5), ">100": (2, 0.875)}
    gt = {b["label"]: b["std"] for b in off["by_frequency"]}
    assert gt[">100"] == pytest.approx(np.std([1.0, 0.75], ddof=1)) and np.isnan(gt["oov"])


def test_syntactic_groups_type_and_subtype_equal_the_official_algorithm(tmp_path):
    r = project_result(tmp_path, "syntactic")
    assert r.n_items == 7 and r.accuracy == pytest.approx(SYN_ALL, abs=1e-15)
    off = r.official()
    assert off["groups"] == 4
    assert {t["label"]: (t["n"], t["score"]) for t in off["by_type"]} == {"agr": (3, pytest.approx(5 / 9)), "fill": (1, 1.0)}
    assert {t["label"]: (t["n"], t["score"]) for t in off["by_subtype"]} == \
        {"a": (2, 0.5), "b": (1, pytest.approx(2 / 3)), "c": (1, 1.0)}


def test_frequency_bands_are_left_closed_as_official():
    assert [frequency_band(f) for f in (0, 1, 4, 5, 19, 20, 99, 100, 10**6)] == \
        ["oov", "1-5", "1-5", "6-20", "6-20", "21-100", "21-100", ">100", ">100"]
    assert frequency_band("") is None and frequency_band(float("nan")) is None


def test_bootstrap_resamples_ids_not_pairs(tmp_path):
    from trainer.eval.results import bootstrap_ci

    r = project_result(tmp_path, "lexical").with_ci(n_resamples=400, seed=1)
    id_means = [2 / 3, 2 / 3, 0.5, 0.5, 1.0, 0.75]  # by hand, ids 1..6 (first-seen order)
    assert r.ci == pytest.approx(bootstrap_ci(id_means, n_resamples=400, seed=1), abs=1e-12)
    assert r.ci != pytest.approx(bootstrap_ci(r.scores, n_resamples=400, seed=1), abs=1e-6)  # not the 12 rows
    assert r.ci[0] < r.accuracy < r.ci[1]


def test_submission_files_are_in_the_official_format(tmp_path):
    r = project_result(tmp_path, "lexical")
    from trainer.eval.cli import write_submissions

    (f,) = write_submissions({"swuggy": r}, tmp_path / "sub")
    assert f == tmp_path / "sub" / "lexical" / "dev.txt"
    lines = f.read_text().splitlines()
    assert len(lines) == len(LEXICAL)
    got = {}
    for line in lines:
        name, score = line.split(" ")  # exactly two space-separated fields, as the official validator wants
        got[name] = float(score)
    assert got == {row[0]: -row[-1] for row in LEXICAL}  # log-probability: higher = more likely


@pytest.mark.parametrize("kind", ["lexical", "syntactic"])
def test_official_transcription_on_our_submission_agrees(tmp_path, kind):
    d, nll = write_fixture(tmp_path, kind)
    pairs = load_zerospeech(d / "gold.csv", d / "units.jsonl")
    res = MetricResult.of_pairs(d.name, pairs, [nll[p["files"][0]] for p in pairs], [nll[p["files"][1]] for p in pairs])
    sub = write_submission(tmp_path / "sub", kind, {f: -v for f, v in nll.items()})
    all_, inv = official_from_submission(d / "gold.csv", sub, kind)
    assert res.accuracy == pytest.approx(all_, abs=1e-15) == (LEX_ALL if kind == "lexical" else SYN_ALL)
    if inv is not None:
        assert res.official()["in_vocab"] == pytest.approx(inv, abs=1e-15)


def test_reserved_column_and_empty_units_name_file_row_field(tmp_path):
    (tmp_path / "units.jsonl").write_text('{"file_name": "a", "units": [1]}\n{"file_name": "b", "units": []}\n')
    (tmp_path / "gold.csv").write_text("filename,id,voice,correct\na,1,A,1\nb,1,A,0\n")
    with pytest.raises(ConfigError, match=r"units.jsonl: field 'units': line 2 \(b\): no units"):
        load_zerospeech(tmp_path / "gold.csv", tmp_path / "units.jsonl")
    (tmp_path / "units.jsonl").write_text('{"file_name": "a", "units": [1]}\n{"file_name": "b", "units": [2]}\n')
    (tmp_path / "gold.csv").write_text("filename,id,voice,positive,correct\na,1,A,x,1\nb,1,A,y,0\n")
    with pytest.raises(ConfigError, match=r"gold.csv: field 'positive': line 1: column name 'positive' is reserved"):
        load_zerospeech(tmp_path / "gold.csv", tmp_path / "units.jsonl")


def test_empty_segments_in_pair_files_name_line_and_field(tmp_path):
    from trainer.eval.benchmarks import load_benchmark

    f = tmp_path / "b.jsonl"
    f.write_text(json.dumps({"id": "a", "positive": [{"modality": "speech", "units": [1]}],
                             "negative": [{"modality": "speech", "units": [2]}]}) + "\n" +
                 json.dumps({"id": "b", "positive": [{"modality": "text", "text": "x"}],
                             "negative": [{"modality": "text", "text": "  "}]}) + "\n")
    with pytest.raises(ConfigError, match=r"b.jsonl: field 'negative\[0\].text': line 2 \(id b\): text segment without text"):
        load_benchmark(f)
