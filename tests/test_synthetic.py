"""Tests for the built-in synthetic corpus and benchmarks (trainer.data.*)."""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from scaling.errors import ConfigError
from trainer.data import benchmarks as B
from trainer.data import speech as S
from trainer.data import stories as ST
from trainer.data.synthetic import SynthConfig, generate

SMALL = dict(n_text_stories=60, n_speech_stories=40, n_val_stories=10, n_speakers=4,
             n_bench_items=24)
CORPUS_FILES = ["corpus/text_train.jsonl", "corpus/text_val.jsonl", "corpus/speech_train.jsonl",
                "corpus/speech_val.jsonl"] + [f"benchmarks/{n}.jsonl" for n in B.BENCHMARKS]


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    manifest = generate(SynthConfig(seed=3, **SMALL), out)
    return out, manifest


# ---------------------------------------------------------------- determinism
def test_same_seed_byte_identical_and_different_seed_differs(small, tmp_path):
    out, _ = small
    again = tmp_path / "again"
    generate(SynthConfig(seed=3, **SMALL), again)
    for f in CORPUS_FILES:
        assert (out / f).read_bytes() == (again / f).read_bytes(), f
    other = tmp_path / "other"
    generate(SynthConfig(seed=4, **SMALL), other)
    for f in CORPUS_FILES:
        assert (out / f).read_bytes() != (other / f).read_bytes(), f


def test_manifest_and_counts(small):
    out, m = small
    assert json.loads((out / "corpus/manifest.json").read_text())["config"] == m["config"]
    assert m["splits"]["text_train"]["stories"] == 60
    assert len(_read(out / "corpus/text_train.jsonl")) == 60
    assert len(_read(out / "corpus/speech_train.jsonl")) == 40
    assert len(_read(out / "corpus/speech_val.jsonl")) == 10
    assert m["benchmarks"] == {n: 24 for n in B.BENCHMARKS}
    assert 5.0 <= m["mean_units_per_word"] <= 10.0
    assert m["generation_seconds"] >= 0


def test_splits_are_disjoint_draws(small):
    out, _ = small
    sets = {f: {r["text"] for r in _read(out / f"corpus/{f}.jsonl")}
            for f in ("text_train", "text_val", "speech_train", "speech_val")}
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not (sets[a] & sets[b]), (a, b)
    train = set().union(*sets.values())
    for name in ("ssc", "tsc", "ssc_t2t"):
        for it in _read(out / f"benchmarks/{name}.jsonl"):
            ctx, end, _ = it["texts"]
            assert f"{ctx} {end}" not in train


# ---------------------------------------------------------------- speech invariants
def _check_rendering(units, durs, starts, ends, n_words):
    assert len(units) == len(durs) > 0
    assert all(0 <= u < S.N_UNITS for u in units)
    assert all(a != b for a, b in zip(units, units[1:])), "consecutive repeated unit"
    assert all(isinstance(d, int) and d >= 1 for d in durs)
    assert len(starts) == len(ends) == n_words
    total = sum(durs) * S.FRAME_S
    assert all(s < e for s, e in zip(starts, ends))
    assert all(e <= s2 + 1e-9 for e, s2 in zip(ends, starts[1:])), "overlap / unsorted"
    assert starts[0] >= 0 and ends[-1] <= total + 1e-9


def test_speech_corpus_invariants(small):
    out, _ = small
    for split in ("speech_train", "speech_val"):
        for r in _read(out / f"corpus/{split}.jsonl"):
            assert set(r) == {"id", "speaker", "text", "words", "starts", "ends", "units",
                              "durations"}
            assert r["words"] == r["text"].split()
            assert 0 <= r["speaker"] < SMALL["n_speakers"]
            _check_rendering(r["units"], r["durations"], r["starts"], r["ends"], len(r["words"]))


def test_render_word_times_are_exact_frame_positions():
    rng = random.Random(0)
    words = "the the the cat sat on the mat.".split()
    for spk in range(6):
        r = S.render(words, spk, rng)
        _check_rendering(r.units, r.durations, r.starts, r.ends, len(words))
        for t in r.starts + r.ends:
            assert abs(t / S.FRAME_S - round(t / S.FRAME_S)) < 1e-6
        # each word lasts at least one frame per sub-state of its pronunciation
        for w, s, e in zip(words, r.starts, r.ends):
            assert round((e - s) / S.FRAME_S) >= len(S.word_units(w, spk))


def test_phonology_is_corpus_independent():
    assert S.phonemes("Forest.") == S.phonemes("forest")
    assert S.phonemes("ship") == ("SH", "I", "P")
    assert S.word_units("forest", 0) == S.word_units("forest", 0)
    # a speaker's voice does not depend on the rng passed to render
    assert S.speaker_profile(2) == S.speaker_profile(2)


def test_speaker_variation():
    words = "once upon a time there was a little fox named Max.".split()
    a = S.render(words, 0, random.Random(7))
    b = S.render(words, 1, random.Random(7))
    assert a.units != b.units
    assert S.word_units("forest", 0) != S.word_units("forest", 1) or \
        S.word_units("elephant", 0) != S.word_units("elephant", 1)
    a2 = S.render(words, 0, random.Random(7))
    assert a == a2
    with pytest.raises(ValueError):
        S.render(words, -1, random.Random(0))


# ---------------------------------------------------------------- stories
def test_story_shape_and_entity_persistence():
    rng = random.Random(11)
    lex = ST.lexicon()
    assert 250 <= len(lex) <= 600
    for _ in range(300):
        s = ST.make_story(rng)
        assert 5 <= len(s.sentences) <= 9
        n = len(s.text.split())
        assert 35 <= n <= 100
        assert s.text == f"{s.context} {s.ending}"
        assert all(ST.norm(w) in lex for w in s.text.split())
        end = {ST.norm(w) for w in s.ending.split()}
        ctx = {ST.norm(w) for w in s.context.split()}
        name, obj, col = ST.norm(s.ctx["N"]), s.ctx["obj"], s.ctx["col"]
        assert name in end and obj in end, s.ending
        # the entities named in the ending were established in the context
        assert name in ctx and obj in ctx and col in ctx
        assert s.sentences[0].split()[0][0].isupper()
        assert s.ctx["N"] in s.sentences[0].replace(".", " ").replace(",", " ").split()


def test_wrong_ending_contradicts_story():
    rng = random.Random(5)
    kinds = Counter()
    for _ in range(300):
        s = ST.make_story(rng)
        wrong, kind = s.wrong_ending(rng)
        kinds[kind] += 1
        assert wrong != s.ending
        assert len(wrong.split()) == len(s.ending.split())
        diff = [(a, b) for a, b in zip(s.ending.split(), wrong.split()) if a != b]
        assert len(diff) == 1
        new = ST.norm(diff[0][1])
        if kind in ("obj", "col", "place", "N"):
            assert new not in {ST.norm(w) for w in s.text.split()}
        else:
            assert new in ST.EMO_NEG
    assert set(kinds) == set(ST.WRONG_KINDS)


# ---------------------------------------------------------------- benchmarks
def test_benchmark_well_formed(small):
    out, _ = small
    lex = ST.lexicon()
    for name in B.BENCHMARKS:
        items = _read(out / f"benchmarks/{name}.jsonl")
        assert len(items) == SMALL["n_bench_items"]
        ids = [it["id"] for it in items]
        assert len(set(ids)) == len(ids) and all(i.startswith(f"{name}-") for i in ids)
        for it in items:
            pos, neg = it["positive"], it["negative"]
            assert pos != neg
            assert 0 <= it["speaker"] < SMALL["n_speakers"]
            for seg in pos + neg:
                if seg["modality"] == "speech":
                    assert set(seg) == {"modality", "units"} and seg["units"]
                    assert all(0 <= u < S.N_UNITS for u in seg["units"])
                else:
                    assert seg["modality"] == "text" and set(seg) == {"modality", "text"}
                    assert seg["text"]
            mods = [s["modality"] for s in pos]
            assert mods == [s["modality"] for s in neg]
            if name in ("swuggy", "sblimp"):
                assert mods == ["speech"]
            else:
                assert mods == list(B.REGISTRY[name].modalities)
                assert pos[0] == neg[0], "context must be shared"
                assert pos[1] != neg[1]
        if name == "swuggy":
            for it in items:
                w, nw = it["words"]
                assert w in lex and nw not in lex and len(w) == len(nw)
                assert sum(a != b for a, b in zip(w, nw)) == 1
        if name == "sblimp":
            for it in items:
                good, bad = (t.split() for t in it["texts"])
                g, b = [ST.norm(x) for x in good], [ST.norm(x) for x in bad]
                assert g != b and len(g) == len(b)
                one_sub = sum(x != y for x, y in zip(g, b)) == 1
                assert sorted(g) == sorted(b) or one_sub
        if name == "tsc":
            for it in items:
                ctx, end, wrong = it["texts"]
                assert ST.norm(wrong.split()[0]) != "" and wrong != end


def test_storycloze_text_segments_match_texts(small):
    out, _ = small
    for it in _read(out / "benchmarks/ssc_t2t.jsonl"):
        ctx, end, wrong = it["texts"]
        assert it["positive"] == [{"modality": "text", "text": ctx},
                                  {"modality": "text", "text": end}]
        assert it["negative"][1] == {"modality": "text", "text": wrong}


def test_make_nonword():
    rng = random.Random(0)
    lex = ST.lexicon()
    for w in sorted(x for x in lex if len(x) >= 3)[:100]:
        nw = B.make_nonword(w, rng)
        assert nw not in lex and S.phonemes(nw) != S.phonemes(w)


def test_sblimp_violation_kinds():
    rng = random.Random(1)
    seen = set()
    for _ in range(200):
        sent = ST.make_story(rng).sentences[0]
        bad, kind = ST.sblimp_violation(sent, rng)
        seen.add(kind)
        assert bad != sent and len(bad.split()) == len(sent.split())
    assert {"swap", "article"} <= seen
    bad, kind = ST.sblimp_violation("The fox was sad.", random.Random(0))
    assert bad != "The fox was sad."


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("field,value", [("n_text_stories", 0), ("n_speech_stories", -1),
                                         ("n_val_stories", 0), ("n_speakers", 0),
                                         ("n_bench_items", 0), ("seed", -2),
                                         ("n_speakers", 2.5), ("n_text_stories", True)])
def test_config_validation_names_field(field, value):
    cfg = SynthConfig(**{field: value})
    with pytest.raises(ConfigError, match=field):
        cfg.validate()
    with pytest.raises(ConfigError, match=field):
        generate(cfg, "/nonexistent/should/not/be/created")


def test_config_from_dict_and_quick():
    assert SynthConfig.from_dict({"seed": 2, "n_speakers": 3}).n_speakers == 3
    with pytest.raises(ConfigError, match="n_stories"):
        SynthConfig.from_dict({"n_stories": 3})
    q = SynthConfig.quick(seed=5)
    q.validate()
    assert q.seed == 5 and q.n_text_stories < SynthConfig().n_text_stories


def _item_key(it: dict) -> str:
    return json.dumps(it.get("words") or it.get("texts"))


def test_default_benchmarks_have_1000_distinct_items_outside_the_corpus():
    """The default data's benchmarks: >= 1,000 items each (a 95% interval of about +-3 points), no two
    alike, no story of the training / validation corpora (the same exclusion generate() applies)."""
    from trainer.data.synthetic import _stories

    cfg = SynthConfig()
    assert cfg.n_bench_items >= 1000
    corpus = {t for stream in ("text:train", "speech:train") for t in _stories(cfg.seed, stream, 3000)}
    benches = B.build_benchmarks(cfg.n_bench_items, cfg.n_speakers, cfg.seed, exclude_texts=corpus)
    assert set(benches) == set(B.BENCHMARKS)
    for name, items in benches.items():
        assert len(items) == cfg.n_bench_items, name
        keys = [_item_key(it) for it in items]
        assert len(set(keys)) == len(keys), f"{name}: repeated items"
        for it in items:
            texts = it.get("texts", [])
            if len(texts) == 3:  # StoryCloze: context, ending, wrong ending
                assert f"{texts[0]} {texts[1]}" not in corpus


def test_too_few_distinct_items_is_a_clear_error(monkeypatch):
    # one word with one non-word: one distinct sWUGGY item exists, a second cannot be drawn
    monkeypatch.setattr(B, "lexicon", lambda: frozenset({"cat"}))
    monkeypatch.setattr(B, "make_nonword", lambda w, rng, lex=None: "cax")
    assert [it["words"] for it in B.build_swuggy(1, 2, random.Random(0))] == [["cat", "cax"]]
    with pytest.raises(ValueError, match="swuggy: cannot draw a distinct item 1"):
        B.build_swuggy(2, 2, random.Random(0))
