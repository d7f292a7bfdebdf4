"""`scaling data prepare` on real-format corpora: the SlamKit example, round trips, errors, atomicity."""
import filecmp
import json
import shutil

import numpy as np
import pytest

from scaling.cli import main
from scaling.errors import ConfigError
from scaling.datadir import DataDir
from trainer.data import shards
from trainer.data.ingest import read_features
from trainer.data.interleave import plan_spans, unit_range
from trainer.data.mixture import mixture_report
from trainer.data.prepare_real import prepare_real
from trainer.data.streams import build_streams
from trainer.data.tokenizer import SpeechVocab, load_tokenizer, train_text_tokenizer

from conftest import SLAMKIT_EXAMPLE

EX = SLAMKIT_EXAMPLE
N_WORDS = 30


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    texts = [f"the little fox number {i} ran to the {['red', 'blue', 'old'][i % 3]} house and slept" for i in range(60)]
    (root / "text.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    train_text_tokenizer(texts, vocab_size=300).save_pretrained(str(root / "tok"))
    (root / "al").mkdir()
    for u in read_features(EX / "features.jsonl"):
        seconds = int(u["durations"].sum()) * 0.04
        step = seconds / N_WORDS
        aligned = [[f" w{k}", round(k * step + 0.01, 3), round((k + 1) * step - 0.01, 3)] for k in range(N_WORDS)]
        (root / "al" / f"{u['id']}.json").write_text(json.dumps({"aligned_text": aligned}))
    return root


def _prepare_args(inputs, out, features=EX / "features.jsonl", **kw):
    args = ["data", "prepare", "--features", str(features), "--alignments", str(inputs / "al"),
            "--text", str(inputs / "text.jsonl"), "--tokenizer", str(inputs / "tok"), "--out", str(out)]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


@pytest.fixture(scope="module")
def out(inputs):
    out = inputs / "prepared"
    assert main(_prepare_args(inputs, out)) == 0
    return out


def _docs(data_dir, stream, split):
    data = DataDir.open(data_dir)
    flat = np.asarray(data.tokens(stream, split))
    offs = data.doc_offsets(stream, split).tolist() + [len(flat)]
    return [flat[a:b] for a, b in zip(offs, offs[1:])]


def test_slamkit_example_decodes_back(out, capsys):
    tok = load_tokenizer(out / "tokenizer")
    vocab = SpeechVocab.of(tok)
    utts = {u["id"]: u for u in read_features(EX / "features.jsonl")}
    words = [f"w{k}" for k in range(N_WORDS)]
    seen_speech, seen_inter = set(), set()
    for split in ("train", "val"):
        for doc in _docs(out, "speech", split):
            assert doc[0] == vocab.speech and doc[-1] == vocab.eos
            units = doc[1:-1] - vocab.unit_offset
            match = [k for k, u in utts.items() if np.array_equal(u["units"], units)]
            assert len(match) == 1
            seen_speech.add(match[0])
        for doc in _docs(out, "interleaved", split):
            assert doc[-1] == vocab.eos
            doc = doc[:-1].tolist()
            cut = [i for i, t in enumerate(doc) if t in (vocab.speech, vocab.text)] + [len(doc)]
            assert cut[0] == 0
            segs = [(doc[a], doc[a + 1:b]) for a, b in zip(cut, cut[1:])]
            # which utterance: the one whose units contain the first speech segment
            first = next(s for m, s in segs if m == vocab.speech)
            key = next(k for k, u in utts.items()
                       if any(u["units"][i:i + len(first)].tolist() == [t - vocab.unit_offset for t in first]
                              for i in range(len(u["units"]))))
            u = utts[key]
            seen_inter.add(key)
            pos, n_speech = 0, 0
            for k, (mark, ids) in enumerate(segs):
                if mark == vocab.text:
                    got = tok.decode(ids).split()
                    assert got == words[pos:pos + len(got)]
                    pos += len(got)
                else:
                    end = words.index(tok.decode(segs[k + 1][1]).split()[0]) if k + 1 < len(segs) else N_WORDS
                    starts = [round(j * u["durations"].sum() * 0.04 / N_WORDS + 0.01, 3) for j in range(N_WORDS)]
                    ends = [round((j + 1) * u["durations"].sum() * 0.04 / N_WORDS - 0.01, 3) for j in range(N_WORDS)]
                    i, j = unit_range(u["durations"], starts[pos], ends[end - 1])
                    assert [t - vocab.unit_offset for t in ids] == u["units"][i:j].tolist()
                    assert j > i
                    n_speech += end - pos
                    pos = end
            assert pos == N_WORDS and n_speech == 9  # exactly 30% of 30 words
    assert seen_speech == seen_inter == set(utts)


def test_output_is_a_data_folder(out, inputs, prepared):
    m = DataDir.open(out, verify="hash").manifest
    synth = DataDir.open(prepared).manifest
    assert set(synth) - {"tokens", "source"} <= set(m)
    assert m["streams"] == ["textlm", "text", "speech", "interleaved"]
    for stream in m["streams"]:
        for split in ("train", "val"):
            assert m["tokens"][f"{stream}_{split}"]["documents"] >= 1
            assert len(DataDir.open(out).tokens(stream, split)) == m["tokens"][f"{stream}_{split}"]["tokens"]
    assert m["tokens"]["text_val"]["documents"] == 1  # 2% of 60, at least one
    given = load_tokenizer(inputs / "tok")
    assert len(load_tokenizer(out / "tokenizer_text")) == len(given) == m["text_vocab_size"]
    assert len(load_tokenizer(out / "tokenizer")) == len(given) + 502 == m["speech_vocab_size"]
    assert filecmp.cmpfiles(inputs / "tok", out / "tokenizer_text", ["tokenizer.json"], shallow=False)[0] == ["tokenizer.json"]
    assert m["unit_offset"] == len(given)
    for split in ("train", "val"):
        fr = m["speech_fractions"][split]
        assert fr["speech_word_fraction"] == pytest.approx(0.3)
        assert 0.3 < fr["speech_token_fraction"] < 0.9
    mix = m["mixture"]
    expected = {s: mix["document_sampling_ratios"][s] * m["tokens"][f"{s}_train"]["tokens"] / m["tokens"][f"{s}_train"]["documents"]
                for s in ("text", "interleaved", "speech")}
    assert max(expected.values()) / min(expected.values()) == pytest.approx(1.0, abs=1e-4)
    assert mix["tokens_before_repeat"] == 3 * min(m["tokens"][f"{s}_train"]["tokens"] for s in ("text", "interleaved", "speech"))


def test_cli_prints_fractions_and_counts(inputs, tmp_path, capsys):
    assert main(_prepare_args(inputs, tmp_path / "o", seed=3)) == 0
    text = capsys.readouterr().out
    assert "30.0% of words" in text and "% of tokens are speech" in text
    assert "interleaved_train" in text and "speech_val" in text and "document sampling ratios" in text


def test_seeded(inputs, tmp_path, out):
    prepare_real(tmp_path / "a", features=EX / "features.jsonl", alignments=inputs / "al", text=inputs / "text.jsonl",
                 tokenizer=inputs / "tok", seed=0)
    prepare_real(tmp_path / "b", features=EX / "features.jsonl", alignments=inputs / "al", text=inputs / "text.jsonl",
                 tokenizer=inputs / "tok", seed=1)
    assert DataDir.open(tmp_path / "a").fingerprint == DataDir.open(out).fingerprint
    assert DataDir.open(tmp_path / "b").fingerprint != DataDir.open(out).fingerprint


def test_tokens_jsonl(inputs, tmp_path, capsys):
    assert main(_prepare_args(inputs, tmp_path / "o", features=EX / "tokens.jsonl")) == 2
    assert "no durations" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["data", "prepare", "--features", str(EX / "tokens.jsonl"), "--tokenizer", str(inputs / "tok"),
                 "--text", str(inputs / "text.jsonl"), "--out", str(tmp_path / "o")]) == 0
    m = DataDir.open(tmp_path / "o").manifest
    assert m["streams"] == ["textlm", "text", "speech"]
    assert "no word alignments" in capsys.readouterr().out


def _reference_interleaving(u, tok, vocab, rng):
    """The interleaving format spelled out one utterance at a time (REFERENCE section 1): a marker at the start
    and at every switch, a speech span = the units covering its words' time range, text spans joined by spaces."""
    ids = []
    for sp in plan_spans(len(u["words"]), rng, 0.3, 10.0):
        if sp.modality == "speech":
            i, j = unit_range(u["durations"], u["starts"][sp.start], u["ends"][sp.end - 1])
            ids += [vocab.speech] + vocab.units_to_ids(u["units"][i:j])
        else:
            t = " ".join(u["words"][sp.start:sp.end])
            ids += [vocab.text] + tok(t if sp.start == 0 else " " + t, add_special_tokens=False)["input_ids"]
    return ids + [vocab.eos]


def test_one_interleaver_matches_the_format_spelled_out(prepared):
    """The batched interleaver (both builders use it) gives the same ids as the per-utterance definition."""
    tok = DataDir.open(prepared).load_tokenizer()
    vocab = SpeechVocab.of(tok)
    rows = [json.loads(line) for line in (prepared / "corpus" / "speech_val.jsonl").read_text().splitlines()]
    got, stats = build_streams([], rows, tok, vocab, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    ref = [_reference_interleaving(r, tok, vocab, rng) for r in rows]
    assert [d.tolist() for d in got["interleaved"]] == ref
    assert [d.tolist() for d in got["speech"]] == [[vocab.speech] + vocab.units_to_ids(r["units"]) + [vocab.eos] for r in rows]
    assert "text" not in got and "textlm" not in got
    n_speech = sum(1 for d in ref for t in d if vocab.unit_offset <= t < vocab.unit_offset + 500)
    assert stats["speech_token_fraction"] == pytest.approx(n_speech / sum(len(d) - 1 for d in ref))


def test_our_schema_with_embedded_alignments(prepared, inputs, tmp_path):
    m = prepare_real(tmp_path / "o", features=prepared / "corpus" / "speech_val.jsonl", tokenizer=prepared / "tokenizer_text",
                     text=prepared / "corpus" / "text_val.jsonl", seed=0, val_fraction=0.1)
    assert m["streams"] == ["textlm", "text", "speech", "interleaved"]
    assert abs(m["speech_fractions"]["train"]["speech_word_fraction"] - 0.3) < 0.02


def _bad_features(tmp_path, field, value):
    rows = [json.loads(line) for line in (EX / "features.jsonl").read_text().splitlines()]
    rows[1][field][5] = value
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("case", ["unit_range", "time_range", "empty_text", "empty_features", "no_eos", "bad_tokens"])
def test_errors_exit_2_and_write_nothing(inputs, tmp_path, capsys, case):
    out = tmp_path / "o"
    if case == "unit_range":
        args = _prepare_args(inputs, out, features=_bad_features(tmp_path, "units", 731))
        want = ["bad.jsonl", "field 'units'", "731", "line 2"]
    elif case == "time_range":
        al = tmp_path / "al"
        shutil.copytree(inputs / "al", al)
        obj = json.loads((al / "audio1.json").read_text())
        obj["aligned_text"][-1][2] = 15.5  # audio1 is 14.08 s
        (al / "audio1.json").write_text(json.dumps(obj))
        args = _prepare_args(inputs, out)
        args[args.index("--alignments") + 1] = str(al)
        want = ["audio1.json", "aligned_text", "15.5", "14.08 s"]
    elif case == "empty_text":
        (tmp_path / "t.jsonl").write_text("\n")
        args = _prepare_args(inputs, out)
        args[args.index("--text") + 1] = str(tmp_path / "t.jsonl")
        want = ["t.jsonl", "empty"]
    elif case == "empty_features":
        (tmp_path / "f.jsonl").write_text("")
        args = _prepare_args(inputs, out, features=tmp_path / "f.jsonl")
        want = ["f.jsonl", "empty"]
    elif case == "no_eos":
        from transformers import PreTrainedTokenizerFast

        t = load_tokenizer(inputs / "tok")
        PreTrainedTokenizerFast(tokenizer_object=t.backend_tokenizer).save_pretrained(str(tmp_path / "tok"))
        args = _prepare_args(inputs, out)
        args[args.index("--tokenizer") + 1] = str(tmp_path / "tok")
        want = ["tok", "eos_token"]
    else:  # a tokenizer that already has some unit tokens, out of order: cannot take the 502 consecutively
        t = load_tokenizer(inputs / "tok")
        t.add_tokens(["<Un7>"])
        t.save_pretrained(str(tmp_path / "tok"))
        args = _prepare_args(inputs, out)
        args[args.index("--tokenizer") + 1] = str(tmp_path / "tok")
        want = ["tok", "added_tokens", "consecutive"]
    assert main(args) == 2
    err = capsys.readouterr().err
    for w in want:
        assert w in err, (w, err)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]


def test_failure_mid_write_keeps_previous_output_and_resumes(inputs, tmp_path, monkeypatch):
    """A failure that is not bad input (a full disk, a kill) leaves the previous output in place and the work
    folder behind; the same call then resumes and gives what an uninterrupted run gives."""
    kw = dict(features=EX / "features.jsonl", alignments=inputs / "al", text=inputs / "text.jsonl", tokenizer=inputs / "tok")
    out = tmp_path / "o"
    prepare_real(out, **kw)
    before = (out / "data.json").read_text()
    calls = []
    real = shards.write_part

    def boom(*a):
        calls.append(a[1])
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*a)

    monkeypatch.setattr(shards, "write_part", boom)
    with pytest.raises(OSError):
        prepare_real(out, seed=5, chunk=1, **kw)
    assert (out / "data.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".o.prepare", "o"]
    monkeypatch.setattr(shards, "write_part", real)
    resumed = prepare_real(out, seed=5, chunk=1, **kw)
    clean = prepare_real(tmp_path / "clean", seed=5, chunk=1, **kw)
    assert resumed["fingerprint"] == clean["fingerprint"] != json.loads(before)["fingerprint"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean", "o"]


def test_refuses_foreign_output_folder(inputs, tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "mine.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not a prepared data folder"):
        prepare_real(tmp_path / "o", features=EX / "features.jsonl", tokenizer=inputs / "tok")
    assert (tmp_path / "o" / "mine.txt").read_text() == "keep"


def test_mixture_report_balances_expected_tokens():
    counts = {"text_train": {"tokens": 1000, "documents": 10}, "interleaved_train": {"tokens": 600, "documents": 20},
              "speech_train": {"tokens": 3000, "documents": 10}}
    mix = mixture_report(counts)
    r = mix["document_sampling_ratios"]
    assert sum(r.values()) == pytest.approx(1.0)
    assert r["text"] * 100 == pytest.approx(r["interleaved"] * 30, rel=1e-4) == pytest.approx(r["speech"] * 300, rel=1e-4)
    assert mix["tokens_before_repeat"] == 1800


def test_units_flag_sets_the_inventory_and_refuses_units_outside_it(inputs, tmp_path, capsys):
    """`--units N`: the tokenizer gets <Un0>..<Un{N-1}> + 2 markers and data.json records N; a feature unit
    >= N is refused with the file, the line, the field and the value."""
    out = tmp_path / "u1000"
    assert main(_prepare_args(inputs, out, units=1000)) == 0
    m = DataDir.open(out).manifest
    given = len(load_tokenizer(inputs / "tok"))
    assert m["n_units"] == 1000 and m["speech_vocab_size"] == given + 1002
    assert SpeechVocab.of(DataDir.open(out).load_tokenizer()).n_units == 1000
    small = tmp_path / "u400"
    assert main(_prepare_args(inputs, small, units=400)) == 2  # the example holds units up to 498
    err = capsys.readouterr().err
    assert "features.jsonl" in err and "line 1" in err and "'units'" in err and "outside 0..399" in err
    assert not small.exists()
