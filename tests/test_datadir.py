"""The data folder contract (scaling.datadir): checked manifest, shards checked against it, tokenizers
checked against the vocabulary block, and `scaling train` refusing a damaged folder before its first step."""
from __future__ import annotations

import json
import shutil

import pytest

from helpers.runs import toy_spec
from scaling.cli import main
from scaling.datadir import PAIR_BENCHMARKS, DataDir, check_benchmarks, higher_is_better, shard_name
from scaling.errors import ConfigError
from scaling.rundir import RunDir
from trainer.data.tokenizer import add_speech_tokens, train_text_tokenizer


@pytest.fixture
def data(prepared, tmp_path):
    """A private copy of the session's prepared folder, free to damage."""
    out = tmp_path / "data"
    shutil.copytree(prepared, out)
    return out


def _edit_manifest(data, **changes):
    m = json.loads((data / "data.json").read_text())
    m.update(changes)
    (data / "data.json").write_text(json.dumps(m))


def test_open_reads_a_prepared_folder(prepared):
    d = DataDir.open(prepared, verify="hash")
    assert d.streams == ["textlm", "text", "speech", "interleaved"]
    toks = d.tokens("speech", "val")
    offs = d.doc_offsets("speech", "val")
    assert len(toks) == d.counts("speech", "val")["tokens"] and len(offs) == d.counts("speech", "val")["documents"]
    assert d.load_tokenizer().convert_ids_to_tokens(d.manifest["unit_offset"]) == "<Un0>"


def test_missing_folder_and_bad_manifest_are_clear_errors(data, tmp_path):
    with pytest.raises(ConfigError, match="no data.json"):
        DataDir.open(tmp_path / "nowhere")
    (data / "data.json").write_text("{not json")
    with pytest.raises(ConfigError, match="data.json: not valid JSON"):
        DataDir.open(data)


@pytest.mark.parametrize("change, field", [
    ({"format": 99}, "format"), ({"fingerprint": 5}, "fingerprint"), ({"unit_offset": "x"}, "unit_offset"),
    ({"tokens": {"speech_test": {"tokens": 5, "documents": 1}}}, "tokens"),
    ({"tokens": {"speech_val": {"tokens": 0, "documents": 1}}}, "tokens.speech_val"),
])
def test_manifest_fields_are_checked(data, change, field):
    _edit_manifest(data, **change)
    with pytest.raises(ConfigError) as e:
        DataDir.open(data, verify="none")
    assert f"field '{field}'" in str(e.value) and "data.json" in str(e.value)


def test_truncated_shard_is_named(data):
    p = data / "shards" / "speech_train.npy"
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(ConfigError, match="speech_train.npy.*truncated"):
        DataDir.open(data)


def test_shard_from_another_stream_is_refused(data):
    shutil.copy(data / "shards" / "text_train.npy", data / "shards" / "speech_train.npy")
    with pytest.raises(ConfigError, match="speech_train.npy.*does not belong"):
        DataDir.open(data)


def test_hash_verification_finds_changed_content(data):
    p = data / "shards" / "speech_val.npy"
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 1  # same size, one token different
    p.write_bytes(bytes(raw))
    DataDir.open(data)  # sizes still agree
    with pytest.raises(ConfigError, match="speech_val.npy.*sha256"):
        DataDir.open(data, verify="hash")


def _foreign_tokenizer(data, same_size: bool):
    """A speech tokenizer made elsewhere: trained on other text (same size or not) + the 502 tokens."""
    m = DataDir.open(data).manifest
    texts = [f"another corpus entirely, line {i} with words {i * 7} and more" for i in range(300)]
    tok = train_text_tokenizer(texts, vocab_size=m["text_vocab_size"] if same_size else m["text_vocab_size"] - 40)
    add_speech_tokens(tok)
    if same_size:
        assert len(tok) == m["speech_vocab_size"]
    shutil.rmtree(data / "tokenizer")
    tok.save_pretrained(str(data / "tokenizer"))


@pytest.mark.parametrize("same_size, field", [(False, "vocab_size"), (True, "tokenizer_sha")])
def test_tokenizer_of_another_folder_is_refused(data, same_size, field):
    _foreign_tokenizer(data, same_size)
    with pytest.raises(ConfigError) as e:
        DataDir.open(data).load_tokenizer()
    assert "tokenizer" in str(e.value) and f"field '{field}'" in str(e.value) and "another data folder" in str(e.value)


def _train_cli(data, tmp_path, capsys, *extra):
    spec = toy_spec(data, tokens=64 * 4 * 3)
    run = RunDir(tmp_path / "runs" / spec.run_id).create(spec)
    rc = main(["train", str(run.path), *extra])
    out = capsys.readouterr()
    return rc, out, run


@pytest.mark.parametrize("damage", ["truncated shard", "foreign tokenizer"])
def test_train_stops_before_the_first_step(data, tmp_path, capsys, damage):
    if damage == "truncated shard":
        p = data / "shards" / "speech_train.npy"
        p.write_bytes(p.read_bytes()[:-5])
        named = "speech_train.npy"
    else:
        _foreign_tokenizer(data, same_size=True)
        named = str(data / "tokenizer")
    rc, out, run = _train_cli(data, tmp_path, capsys)
    assert rc == 2
    assert out.err.startswith("error: ") and named in out.err
    assert not run.metrics_path.exists() and not (run.path / "checkpoints").exists()
    assert run.state()["status"] == "failed" and named in run.state()["error"]


def test_train_prints_progress_unless_quiet(prepared, tmp_path, capsys):
    rc, out, run = _train_cli(prepared, tmp_path / "a", capsys)
    assert rc == 0
    lines = [l for l in out.out.splitlines() if l.startswith("step ")]
    assert lines and lines[-1].startswith("step 3/3 | tokens 768/768 (100.0%)") and "tok/s" in lines[-1] and "ETA" in lines[-1]
    rc, out, _ = _train_cli(prepared, tmp_path / "b", capsys, "--quiet")
    assert rc == 0 and not [l for l in out.out.splitlines() if l.startswith("step ")]


def test_benchmark_registry():
    assert check_benchmarks(["swuggy", "ssc_t2s"]) == ["swuggy", "ssc_t2s"]
    with pytest.raises(ConfigError, match="unknown benchmark"):
        check_benchmarks(["swuggy", "nope"], source="s.yaml")
    with pytest.raises(ConfigError, match="must be a list"):
        check_benchmarks("swuggy")
    assert all(higher_is_better(n) for n in PAIR_BENCHMARKS) and higher_is_better("genppl") is False
    assert higher_is_better("val_loss_speech") is False and higher_is_better("genppl") is False
    assert higher_is_better("my_new_column") is None
    with pytest.raises(ConfigError, match="unknown stream"):
        shard_name("audio", "train")


def test_prepare_again_leaves_no_stale_manifest_when_interrupted(data, monkeypatch):
    """data.json is removed first and written last: a killed rebuild never pairs an old manifest with new shards."""
    from trainer.data import prepare_synthetic

    def boom(*a, **k):
        raise KeyboardInterrupt("killed while writing shards")

    monkeypatch.setattr(prepare_synthetic, "pack", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare_synthetic.prepare_corpus(data, vocab_size=320, seed=0)
    with pytest.raises(ConfigError, match="no data.json"):
        DataDir.open(data)


def test_synth_reuses_a_folder_built_from_the_same_settings_only(data):
    """`scaling data synth` skips work only for a complete, undamaged folder of the same corpus, seed and vocabulary."""
    from conftest import TINY_SYNTH
    from trainer.data.prepare_synthetic import is_prepared
    from trainer.data.synthetic import SynthConfig

    cfg = SynthConfig(seed=0, **TINY_SYNTH).to_dict()
    assert is_prepared(data, cfg, vocab_size=320, seed=0).fingerprint == DataDir.open(data).fingerprint
    assert is_prepared(data, cfg, vocab_size=512, seed=0) is None
    assert is_prepared(data, cfg, vocab_size=320, seed=1) is None
    assert is_prepared(data, dict(cfg, n_speakers=2), vocab_size=320, seed=0) is None
    assert is_prepared(data, cfg, vocab_size=320, seed=0, n_units=96) is None
    assert is_prepared(data, cfg, vocab_size=320, seed=0, text_alphabet="corpus") is None
    # a folder written before data.json recorded the inventory and the alphabet holds the defaults: reused
    m = json.loads((data / "data.json").read_text())
    assert m["n_units"] == 500 and m["source"] == {"corpus": "synthetic", "vocab_size": 320, "units": 500,
                                                    "text_alphabet": "bytes"}
    del m["n_units"]
    m["source"] = {"corpus": "synthetic", "vocab_size": 320}
    (data / "data.json").write_text(json.dumps(m))
    assert DataDir.open(data).n_units == 500
    assert is_prepared(data, cfg, vocab_size=320, seed=0) is not None
    assert is_prepared(data, cfg, vocab_size=320, seed=0, n_units=96) is None
    p = data / "shards" / "text_val.npy"
    p.write_bytes(p.read_bytes()[:-4])  # a damaged folder is rebuilt, not reused
    assert is_prepared(data, cfg, vocab_size=320, seed=0) is None
