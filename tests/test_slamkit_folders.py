"""SlamKit's benchmark folders read as they are (issue 29, defect 3 and finding 4).

The fixtures follow the layouts SlamKit's evaluation reads (``slamkit/metric/modelling_metric.py``,
``cross_modal_metric.py`` and ``config/metric/*.yaml`` of slp-rl/slamkit, read, not copied): folders of
``.wav`` files named ``<i>_<anything>.wav`` (``<i>+<anything>.wav`` for sBLIMP), flat (``sSC``, ``tSC``)
or in sub-folders (``ms_sSC/<speaker>/``, ``swuggy_inter/<sub>/``, ``sblimp/<sub>/``), paired by their
sorted integer index, (2k, 2k+1) = (positive, negative), with one ``features.jsonl`` of units whose
``file_name`` is the path as the extraction listed it. Units are slices of the real example units.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from scaling.errors import ConfigError
from trainer.eval import formats
from trainer.eval.benchmarks import load_pairs
from trainer.eval.formats import UnitIndex
from trainer.eval.results import MetricResult

from conftest import SLAMKIT_EXAMPLE
from test_eval_official import LEX_ALL, LEXICAL, SYN_ALL, SYNTACTIC

REAL = UnitIndex.load(SLAMKIT_EXAMPLE / "features.jsonl").get("audio1", item="x")


def real_units(k: int) -> list[int]:
    """Distinct unit lists cut from the real example (item k)."""
    u = REAL[k % 40: k % 40 + 3 + k // 40] + [k % 500]
    return u


def wav(path: Path) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(160, dtype=np.float32), 16000)
    return path


def features(path: Path, units: dict[str, list[int]]) -> Path:
    """SlamKit's features.jsonl: one line per audio file, its path as listed and its units."""
    path.write_text("".join(json.dumps({"file_name": k, "units": v}) + "\n" for k, v in units.items()))
    return path


def slamkit_set(root: Path, names: list[str]) -> dict[str, list[int]]:
    """Tiny .wav files ``root/<name>`` and a features.jsonl over them; returns units by relative name."""
    units = {}
    for k, n in enumerate(names):
        units[n] = real_units(k)
        wav(root / n)
    features(root / "features.jsonl", {str(root / n): u for n, u in units.items()})
    return units


def sp(units: list[int]) -> list[dict]:
    return [{"modality": "speech", "units": units}]


# -- StoryCloze: positional pairing and even/odd names ----------------------------------------------
def test_positional_storycloze_flat_even_odd_names(tmp_path):
    names = [f"{i}_story.wav" for i in (0, 1, 2, 3, 10, 11)]
    u = slamkit_set(tmp_path / "sSC", names)
    pairs = load_pairs(tmp_path, "sSC")
    # sorted by integer index (10 after 3, not after 1), then (2k, 2k+1) = (positive, negative)
    assert [(p["id"], p["positive"], p["negative"]) for p in pairs] == [
        ("0", sp(u["0_story.wav"]), sp(u["1_story.wav"])),
        ("2", sp(u["2_story.wav"]), sp(u["3_story.wav"])),
        ("10", sp(u["10_story.wav"]), sp(u["11_story.wav"])),
    ]
    with pytest.raises(ConfigError, match="whole-story files hold no text"):
        load_pairs(tmp_path, "sSC_s2t")


def test_positional_storycloze_per_speaker_sub_folders(tmp_path):
    names = [f"alice/{i}_x.wav" for i in range(4)] + [f"bob/{i}_whatever_words.wav" for i in (6, 7)]
    u = slamkit_set(tmp_path / "ms_sSC", names)
    pairs = {p["id"]: p for p in load_pairs(tmp_path, "ms_sSC")}
    assert set(pairs) == {"alice/0", "alice/2", "bob/6"}
    assert pairs["alice/2"]["positive"] == sp(u["alice/2_x.wav"]) and pairs["alice/2"]["negative"] == sp(u["alice/3_x.wav"])
    assert pairs["bob/6"]["negative"] == sp(u["bob/7_whatever_words.wav"])


def test_positional_folders_that_slamkit_would_misread_are_refused(tmp_path):
    slamkit_set(tmp_path / "odd", ["a/0_x.wav", "a/1_x.wav", "a/2_x.wav", "b/0_x.wav"])
    with pytest.raises(ConfigError, match=r"odd[/\\]a: field 'file_name': 3 indexed audio files, an odd number"):
        load_pairs(tmp_path, "odd")
    slamkit_set(tmp_path / "dup", ["0_a.wav", "0_b.wav", "1_a.wav", "1_b.wav"])
    with pytest.raises(ConfigError, match=r"two files have index 0 \(0_a.wav, 0_b.wav\)"):
        load_pairs(tmp_path, "dup")
    slamkit_set(tmp_path / "mixed", ["0_a.wav", "1_b.wav", "2+c.wav", "3+d.wav"])
    with pytest.raises(ConfigError, match=r"mixes '<i>_' names \(0_a\) with '<i>\+' names"):
        load_pairs(tmp_path, "mixed")


# -- the pairing-order warning --------------------------------------------------------------------
def listing_with(order: dict[str, list[str]]):
    """A directory listing in a chosen order for the named folders (the file system's otherwise)."""
    import os

    def listing(folder):
        return order.get(Path(folder).name, os.listdir(folder))
    return listing


def named_story_set(root: Path, speakers=("",), n=3) -> dict[str, list[int]]:
    names = [str(Path(s) / f"{i}_{k}.wav") for s in speakers for i in range(n) for k in ("correct", "incorrect")]
    return slamkit_set(root, names)


def caught(fn):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(x.message) for x in w if x.category.__name__ == "PairingOrderWarning"]


def test_swap_warning_when_the_listing_puts_incorrect_first(tmp_path, monkeypatch):
    root = tmp_path / "sSC"
    u = named_story_set(root)
    first_incorrect = ["0_incorrect.wav", "0_correct.wav", "1_correct.wav", "1_incorrect.wav",
                       "2_incorrect.wav", "2_correct.wav", "features.jsonl"]
    monkeypatch.setattr(formats, "_listing", listing_with({"sSC": first_incorrect}))
    pairs, msgs = caught(lambda: load_pairs(tmp_path, "sSC"))
    assert len(msgs) == 1 and str(root) in msgs[0] and "in 2 of 3 pairs" in msgs[0]
    # our pairs stay right: by name
    assert [(p["positive"], p["negative"]) for p in pairs] == \
        [(sp(u[f"{i}_correct.wav"]), sp(u[f"{i}_incorrect.wav"])) for i in range(3)]
    monkeypatch.setattr(formats, "_listing", listing_with({"sSC": sorted(first_incorrect)}))  # correct first
    _, msgs = caught(lambda: load_pairs(tmp_path, "sSC"))
    assert msgs == []
    # SlamKit's pairing reads only what it sorts: the index, listing order breaking ties
    assert [p.name for p in formats.slamkit_order(root)][:2] == ["0_correct.wav", "0_incorrect.wav"]


def test_swap_warning_names_the_speaker_folders(tmp_path, monkeypatch):
    root = tmp_path / "ms_tSC"
    named_story_set(root, speakers=("alice", "bob"), n=2)
    monkeypatch.setattr(formats, "_listing", listing_with({
        "ms_tSC": ["features.jsonl", "bob", "alice"],
        "alice": ["1_incorrect.wav", "0_correct.wav", "0_incorrect.wav", "1_correct.wav"],
        "bob": ["0_correct.wav", "1_correct.wav", "0_incorrect.wav", "1_incorrect.wav"]}))
    pairs, msgs = caught(lambda: load_pairs(tmp_path, "ms_tSC"))
    assert len(pairs) == 4 and len(msgs) == 1
    assert str(root) in msgs[0] and "in 1 of 4 pairs (alice: 1 of 2)" in msgs[0]
    assert caught(lambda: formats.warn_slamkit_order(root)) == (1, msgs)


# -- sWUGGY / sBLIMP folders -----------------------------------------------------------------------
def scored(name, pairs, nll_of: dict[tuple, float]) -> MetricResult:
    """A result scored with a per-file NLL, the file known by its units."""
    return MetricResult.of_pairs(name, pairs, [nll_of[tuple(p["positive"][0]["units"])] for p in pairs],
                                 [nll_of[tuple(p["negative"][0]["units"])] for p in pairs])


@pytest.mark.parametrize("kind", ["swuggy", "sblimp"])
def test_slamkit_swuggy_and_sblimp_folders_score_a_plain_mean(tmp_path, kind):
    sep = "_" if kind == "swuggy" else "+"
    stem = (lambda i: f"w{i}") if kind == "swuggy" else (lambda i: f"the_dog{'s' * (i % 2)}_run{i}")
    names = [f"{sub}/{i}{sep}{stem(i)}.wav" for sub in ("a", "b") for i in range(4)]
    u = slamkit_set(tmp_path / kind, names)
    pairs = load_pairs(tmp_path, kind)
    assert {p["id"] for p in pairs} == {"a/0", "a/2", "b/0", "b/2"}
    p = next(p for p in pairs if p["id"] == "b/2")
    assert p["positive"] == sp(u[f"b/2{sep}{stem(2)}.wav"]) and p["negative"] == sp(u[f"b/3{sep}{stem(3)}.wav"])
    nll = {n: 1.0 for n in names}
    nll[f"a/1{sep}{stem(1)}.wav"] = 0.5  # a/0 loses (the negative is more likely), a/2 ties
    nll[f"b/1{sep}{stem(1)}.wav"] = nll[f"b/3{sep}{stem(3)}.wav"] = 2.0  # b/0 and b/2 win
    r = scored(kind, pairs, {tuple(u[n]): v for n, v in nll.items()})
    assert r.task is None and r.official() is None
    assert r.accuracy == (0 + 0.5 + 1 + 1) / 4  # SlamKit's score: a plain mean over pairs


def slamkit_zerospeech(tmp_path, kind, *, swap_first: bool):
    """The hand-scored official fixture of test_eval_official, once as the official layout and once as
    a SlamKit folder (``<sub>/<i>_<filename>.wav``, the word file repeated for each of its non-words),
    with the same gold.csv."""
    from test_eval_official import write_fixture

    official, nll = write_fixture(tmp_path, kind)
    rows = LEXICAL if kind == "lexical" else SYNTACTIC
    sep = "_" if kind == "lexical" else "+"
    good = [r for r in rows if r[-2] == 1]
    bad = [r for r in rows if r[-2] == 0]
    if kind == "lexical":  # each word with each non-word of its id and voice, as the official merge pairs them
        pairs = [(w, n) for w in good for n in bad if (n[1], n[2]) == (w[1], w[2])]
    else:
        pairs = list(zip(good, bad))
    root = tmp_path / ("slamkit_" + official.name)
    units, nll_of = {}, {}
    for k, (w, n) in enumerate(pairs):
        first, second = (n, w) if swap_first and k == 1 else (w, n)
        sub = f"voice{w[2]}"
        for j, row in enumerate((first, second)):
            name = f"{sub}/{2 * k + j}{sep}{row[0]}.wav"
            units[name] = [len(units) % 500, 7]
            nll_of[tuple(units[name])] = nll[row[0]]
            wav(root / name)
    features(root / "features.jsonl", {str(root / n): v for n, v in units.items()})
    (root / "gold.csv").write_text((official / "gold.csv").read_text())
    return official, root, nll, nll_of


def approx_dict(d: dict):
    return {k: (pytest.approx(v, nan_ok=True) if isinstance(v, float) else
                [approx_dict(x) for x in v] if isinstance(v, list) else v) for k, v in d.items()}


@pytest.mark.parametrize("kind", ["lexical", "syntactic"])
def test_gold_csv_gives_the_official_aggregation_beside_the_plain_mean(tmp_path, kind):
    from trainer.eval.formats import load_zerospeech

    official, root, nll, nll_of = slamkit_zerospeech(tmp_path, kind, swap_first=False)
    ref_pairs = load_zerospeech(official / "gold.csv", official / "units.jsonl")
    ref = MetricResult.of_pairs("ref", ref_pairs, [nll[p["files"][0]] for p in ref_pairs],
                                [nll[p["files"][1]] for p in ref_pairs])
    r = scored(root.name, load_pairs(tmp_path, root.name), nll_of)
    assert r.task == kind and sorted(map(tuple, r.files)) == sorted(map(tuple, ref.files))
    assert r.accuracy == pytest.approx(LEX_ALL if kind == "lexical" else SYN_ALL, abs=1e-15)
    assert r.official() == approx_dict(ref.official())  # the existing official path, same items
    assert r.official()["pairs_mean"] == pytest.approx(float(np.mean(r.scores)))  # SlamKit's score beside it
    if kind == "lexical":
        assert r.official()["pairs_mean"] == pytest.approx(8 / 12) != pytest.approx(LEX_ALL)


def test_gold_csv_turns_a_swapped_slamkit_pair_round_and_warns(tmp_path):
    official, root, nll, nll_of = slamkit_zerospeech(tmp_path, "syntactic", swap_first=True)
    pairs, msgs = caught(lambda: load_pairs(tmp_path, root.name))
    assert len(msgs) == 1 and str(root) in msgs[0] and "1 of 7 SlamKit pairs" in msgs[0]
    r = scored(root.name, pairs, nll_of)
    assert r.accuracy == pytest.approx(SYN_ALL, abs=1e-15)
    (root / "gold.csv").write_text("filename,type,subtype,correct,id\nnope,a,b,1,1\nnada,a,b,0,1\n")
    with pytest.raises(ConfigError, match=r"gold.csv: field 'filename': item voiceA/0: no row has filename 's1A'"):
        load_pairs(tmp_path, root.name)


# -- one units file shared by several sets ---------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*SlamKit pairs these files by position")
def test_one_features_file_over_a_whole_reference_folder(tmp_path):
    from trainer.units.extract import list_audio

    ref = tmp_path / "reference"
    for s in ("sSC", "tSC"):  # the same file names in both sets
        for i in range(2):
            for k in ("correct", "incorrect"):
                wav(ref / s / f"{i}_{k}.wav")
    for i in range(4):
        wav(ref / "sblimp" / "sub" / f"{i}+the_cat_{i}.wav")
    listed = list_audio(ref)  # what a units extraction over the reference folder names its lines
    units = {f: [k, 1 + k % 3] for k, f in enumerate(listed)}
    features(ref / "features.jsonl", units)
    ssc, tsc = load_pairs(ref, "sSC"), load_pairs(ref, "tSC")
    assert ssc[1]["positive"] == sp(units[str(ref / "sSC" / "1_correct.wav")])
    assert tsc[1]["positive"] == sp(units[str(ref / "tSC" / "1_correct.wav")]) != ssc[1]["positive"]
    assert load_pairs(ref, "sblimp")[1]["negative"] == sp(units[str(ref / "sblimp" / "sub" / "3+the_cat_3.wav")])
    # the same shared file copied into a set's folder: still found by <set>/<relative path>
    features(ref / "tSC" / "features.jsonl", units)
    assert load_pairs(ref, "tSC") == tsc


# -- cross-modal defaults stated in the output -----------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(prepared, tmp_path_factory):
    import torch

    from scaling.datadir import DataDir
    from scaling.shapes import DEMO
    from trainer.data.tokenizer import load_tokenizer
    from trainer.model import build_model

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ckpt") / "model"
    build_model(DEMO["toy-xs"].with_vocab(DataDir.open(prepared).manifest["speech_model_vocab"]), 0).save_pretrained(str(out))
    load_tokenizer(prepared / "tokenizer").save_pretrained(str(out))
    return out


def test_cross_modal_defaults_are_stated_in_the_eval_json(checkpoint, tmp_path, capsys):
    from scaling.cli import main

    cm = tmp_path / "cm_tSC"
    names = []
    for spk in ("a", "b"):
        for b in range(2):
            for part in ("mutual", "correct", "incorrect"):
                names.append(f"{spk}/{b}_{part}.wav")
                (cm / spk).mkdir(parents=True, exist_ok=True)
                (cm / spk / f"{b}_{part}.txt").write_text(f"the {part} part of story {b}")
    slamkit_set(cm, names)
    for convention, want in (("ours", ("speech", "speech")), ("slamkit", ("text", "text"))):
        out = tmp_path / f"{convention}.json"
        assert main(["eval", str(checkpoint), "--data", str(tmp_path), "--benchmarks", "cm_tSC,cm_tSC_t2s",
                     "--convention", convention, "--json", str(out), "--resamples", "10"]) == 0
        res = json.loads(out.read_text())
        assert set(res["metrics"]) == {"cm_tSC", "cm_tSC_t2s"} and res["metrics"]["cm_tSC"]["items"] == 4
        m = res["modalities"]["cm_tSC"]
        assert (m["prompt"], m["ending"], m["cross_modal"]) == (*want, True)
        assert "default" in m["chosen_by"] and "text -> text" in m["chosen_by"]
        assert (res["modalities"]["cm_tSC_t2s"]["prompt"], res["modalities"]["cm_tSC_t2s"]["chosen_by"]) == \
            ("text", "the name's suffix")
        assert f"cm_tSC: {want[0]} -> {want[1]}, default" in capsys.readouterr().err
    assert math.isfinite(res["metrics"]["cm_tSC"]["accuracy"])
