"""The number of speech units is a property of the data folder (data.json ``n_units``), not a constant:
a small synthetic corpus at 96 units with a corpus-alphabet BPE of 158 tokens gives 256 embedding rows,
every reader checks units against the folder's inventory, and planning without data takes ``units``."""
from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import yaml

from scaling.cli import main
from scaling.datadir import DataDir, check_manifest
from scaling.errors import ConfigError
from trainer.data.tokenizer import SpeechVocab, add_speech_tokens, check_round_trip, train_text_tokenizer

UNITS, TEXT_VOCAB = 96, 158
SMALL = dict(n_text_stories=300, n_speech_stories=120, n_val_stories=20, n_speakers=3, n_bench_items=8)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A prepared synthetic folder at 96 units, 158 text tokens over the corpus's own characters."""
    from trainer.data.prepare_synthetic import prepare_corpus
    from trainer.data.synthetic import SynthConfig, generate

    out = tmp_path_factory.mktemp("units96")
    generate(SynthConfig(seed=0, n_units=UNITS, **SMALL), out)
    prepare_corpus(out, vocab_size=TEXT_VOCAB, seed=0, text_alphabet="corpus")
    return out


@pytest.fixture
def data(small, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(small, out)
    return out


def test_small_inventory_gives_the_tokenizer_and_rows_asked_for(small):
    d = DataDir.open(small, verify="hash")
    m = d.manifest
    assert d.n_units == m["n_units"] == UNITS
    assert m["text_vocab_size"] == TEXT_VOCAB and m["speech_vocab_size"] == TEXT_VOCAB + UNITS + 2
    assert m["speech_model_vocab"] == 256
    assert m["source"] == {"corpus": "synthetic", "vocab_size": TEXT_VOCAB, "units": UNITS, "text_alphabet": "corpus"}
    tok, text_tok = d.load_tokenizer(), d.load_tokenizer(speech=False)
    added = [t for t in tok.get_vocab() if t not in text_tok.get_vocab()]
    assert sorted(added) == sorted([f"<Un{i}>" for i in range(UNITS)] + ["<speech>", "<text>"])
    v = SpeechVocab.of(tok)
    assert v.n_units == UNITS and v.unit_offset == m["unit_offset"] == TEXT_VOCAB
    # the corpus alphabet: no byte symbol the text never holds (a "bytes" BPE starts from all 256)
    assert len(text_tok) == TEXT_VOCAB < 256


def test_every_unit_in_the_shards_and_benchmarks_is_in_the_inventory(small):
    d = DataDir.open(small)
    v = SpeechVocab.of(d.load_tokenizer())
    for split in ("train", "val"):
        toks = np.asarray(d.tokens("speech", split))
        units = toks[(toks != v.speech) & (toks != v.eos)]
        assert units.size and units.min() >= v.unit_offset and units.max() < v.unit_offset + UNITS
        assert len(np.unique(units)) > UNITS // 2  # the phonology spreads over the small inventory
        inter = np.asarray(d.tokens("interleaved", split))
        assert inter.max() < d.manifest["speech_vocab_size"]
    corpus = [json.loads(line) for line in (small / "corpus" / "speech_train.jsonl").read_text().splitlines()]
    assert max(max(r["units"]) for r in corpus) < UNITS
    for f in (small / "benchmarks").glob("*.jsonl"):
        for line in f.read_text().splitlines():
            row = json.loads(line)
            for seg in row["positive"] + row["negative"]:
                assert seg["modality"] == "text" or max(seg["units"]) < UNITS, f


def test_a_model_trains_on_the_small_inventory(small, tmp_path):
    from helpers.runs import toy_spec, train_spec

    spec = toy_spec(small, arm="interleaved", tokens=256)  # one step of 4 x 64 tokens, all three streams
    assert spec.shape.vocab_size == 256
    run, rec = train_spec(tmp_path, spec)
    assert rec["steps"] == 1 and np.isfinite(rec["val_loss_speech"])


def test_units_outside_the_inventory_are_refused_with_file_field_and_value(small, tmp_path):
    from trainer.eval.benchmarks import load_pairs
    from trainer.eval.formats import UnitIndex

    units = tmp_path / "units.jsonl"
    units.write_text(json.dumps({"file_name": "a.wav", "units": [3, UNITS]}) + "\n")
    assert UnitIndex.load(units).get("a", item="x") == [3, UNITS]  # the default inventory (500) holds it
    with pytest.raises(ConfigError, match=rf"line 1 \(a\.wav\): unit {UNITS} is outside 0..{UNITS - 1}") as e:
        UnitIndex.load(units, n_units=UNITS)
    assert (e.value.source, e.value.field, e.value.value) == (str(units), "units", UNITS)
    # a registry pair file of the folder, read with the tokenizer's inventory
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    row = {"id": "p0", "positive": [{"modality": "speech", "units": [1, 2]}],
           "negative": [{"modality": "speech", "units": [1, UNITS + 4]}]}
    (bench / "swuggy.jsonl").write_text(json.dumps(row) + "\n")
    assert len(load_pairs(tmp_path, "swuggy")) == 1
    with pytest.raises(ConfigError, match=f"unit {UNITS + 4} is outside") as e:
        load_pairs(tmp_path, "swuggy", n_units=UNITS)
    assert (e.value.source, e.value.field, e.value.value) == (str(bench / "swuggy.jsonl"), "negative[0].units", UNITS + 4)
    # scoring and sampling use the tokenizer's inventory
    from trainer.generate.sampling import allowed_ids

    v = SpeechVocab.of(DataDir.open(small).load_tokenizer())
    with pytest.raises(ConfigError, match=f"unit {UNITS} is outside 0..{UNITS - 1}"):
        v.units_to_ids([0, UNITS])
    assert allowed_ids(v, "speech") == list(range(v.unit_offset, v.unit_offset + UNITS)) + [v.eos]


def test_load_tokenizer_refuses_a_tokenizer_of_another_inventory(data):
    from trainer.data.tokenizer import save_tokenizer

    d = DataDir.open(data)
    tok = d.load_tokenizer(speech=False)
    add_speech_tokens(tok, UNITS - 1)
    tok.add_tokens(["<other>"])  # same size and unit offset as the folder's: only the inventory differs
    assert len(tok) == d.manifest["speech_vocab_size"]
    save_tokenizer(tok, d.tokenizer_dir())
    with pytest.raises(ConfigError, match=f"{UNITS - 1} unit tokens .* use {UNITS}") as e:
        d.load_tokenizer()
    assert (e.value.source, e.value.field, e.value.value) == (str(d.tokenizer_dir()), "n_units", UNITS - 1)


@pytest.mark.parametrize("value", [1, 65537, "96", True])
def test_manifest_n_units_is_checked(small, value):
    m = json.loads((small / "data.json").read_text())
    m["n_units"] = value
    with pytest.raises(ConfigError) as e:
        check_manifest(m, "data.json")
    assert (e.value.field, e.value.value) == ("n_units", value)


def test_manifest_units_must_fit_the_speech_vocabulary(small):
    m = json.loads((small / "data.json").read_text())
    m["n_units"] = UNITS + 3  # unit_offset + n_units > speech_vocab_size
    with pytest.raises(ConfigError, match="exceeds speech_vocab_size"):
        check_manifest(m, "data.json")


def test_corpus_alphabet_refuses_a_text_it_cannot_round_trip(tmp_path):
    tok = train_text_tokenizer(["the cat sat on the mat"] * 20, vocab_size=40, alphabet="corpus")
    check_round_trip(tok, [("line 1", "the mat sat")], source="ok.jsonl")
    assert tok.decode(tok("the cat~")["input_ids"]) == "the cat"  # what the check guards against: a silent drop
    with pytest.raises(ConfigError, match=r"line 2: .* first lost character is '~'") as e:
        check_round_trip(tok, [("line 1", "the cat"), ("line 2", "the cat~ sat")], source="val.jsonl")
    assert (e.value.source, e.value.field, e.value.value) == ("val.jsonl", "text", "~")
    full = train_text_tokenizer(["the cat sat on the mat"] * 20, vocab_size=300, alphabet="bytes")
    check_round_trip(full, [("line 1", "the cat~ sat é")], source="val.jsonl")
    with pytest.raises(ConfigError, match="unknown text alphabet"):
        train_text_tokenizer(["a"], vocab_size=40, alphabet="ascii")


def test_prepare_refuses_a_benchmark_text_outside_the_corpus_alphabet(data):
    from trainer.data.prepare_synthetic import prepare_corpus

    f = data / "benchmarks" / "ssc_t2t.jsonl"
    rows = [json.loads(line) for line in f.read_text().splitlines()]
    rows[2]["negative"][1]["text"] += " ¤"
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    with pytest.raises(ConfigError, match=r"line 3 \(id ssc_t2t-00002\): .* '¤'") as e:
        prepare_corpus(data, vocab_size=TEXT_VOCAB, seed=0, text_alphabet="corpus")
    assert (e.value.source, e.value.value) == (str(f), "¤")
    with pytest.raises(ConfigError, match="no data.json"):  # no half-prepared folder passes as complete
        DataDir.open(data)


def test_synth_cli_takes_units_and_alphabet_and_refuses_a_too_small_inventory(tmp_path, capsys):
    from trainer.data import speech

    out = tmp_path / "d"
    assert main(["data", "synth", "--out", str(out), "--units", str(speech.MIN_UNITS - 1)]) == 2
    err = capsys.readouterr().err
    assert "--units" in err and str(speech.MIN_UNITS) in err and not out.exists()
    with pytest.raises(ConfigError) as e:
        speech.phonology(speech.MIN_UNITS - 1)
    assert e.value.field == "n_units"
    # the smallest inventory renders, inside its range
    r = speech.render("the quick brown fox".split(), 0, random.Random(0), speech.MIN_UNITS)
    assert max(r.units) < speech.MIN_UNITS


def test_default_inventory_keeps_the_corpus_manifest_config(tmp_path):
    from trainer.data.synthetic import SynthConfig, generate

    assert "n_units" not in SynthConfig().to_dict()  # folders made before n_units existed still match
    m = generate(SynthConfig(seed=1, n_units=UNITS, n_text_stories=2, n_speech_stories=2, n_val_stories=1,
                             n_speakers=1, n_bench_items=1), tmp_path)
    assert m["config"]["n_units"] == m["unit_vocab"] == UNITS


def _plan(tmp_path, **over):
    from sweeps.grid import resolve
    from sweeps.schema import load_sweep

    cfg = {"name": "p", "output": ".", "grid": "isoflop", "models": ["toy-xs"], "budgets": [2.0e9],
           "arms": ["interleaved", "textless"], "vocab": TEXT_VOCAB,
           "train": {"seq_len": 64, "batch_size": 4}, "text_pretrain": {"tokens": 4096}, **over}
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return resolve(load_sweep(p))


def test_planning_without_data_takes_the_unit_inventory(tmp_path, prepared):
    small = _plan(tmp_path, units=UNITS)
    speech = [s for s in small if s.arm != "textlm"]
    assert speech and {s.shape.vocab_size for s in speech} == {256}  # padded(158 + 96 + 2)
    assert {s.shape.vocab_size for s in small if s.arm == "textlm"} == {192}  # padded(158)
    assert {s.data_fingerprint for s in speech} == {f"tokenizer:vocab:{TEXT_VOCAB}+units:{UNITS}"}
    default = _plan(tmp_path)
    assert {s.shape.vocab_size for s in default if s.arm != "textlm"} == {704}  # padded(158 + 502)
    assert {s.data_fingerprint for s in default} == {f"tokenizer:vocab:{TEXT_VOCAB}"}  # the run ids planned before
    with pytest.raises(ConfigError) as e:
        _plan(tmp_path, units=1)
    assert (e.value.field, e.value.value) == ("units", 1)
    with pytest.raises(ConfigError, match="for planning without data") as e:
        _plan(tmp_path, units=UNITS, vocab=None, data=str(prepared))
    assert e.value.field == "units"
