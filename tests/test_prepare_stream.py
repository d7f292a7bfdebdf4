"""Streaming preparation: shards + merge, workers, resuming after a kill, datasets/parquet inputs, the checks,
split by utterance id, source mixtures, and the format-2 reader."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # nothing here may reach the network

from scaling.cli import main
from scaling.datadir import DataDir, PartedTokens
from scaling.errors import ConfigError
from trainer.data.mixture import Mixture
from trainer.data.prepare_real import prepare_real
from trainer.data.tokenizer import SpeechVocab, load_tokenizer, train_text_tokenizer

from conftest import REPO

N_UTT, N_TEXT = 36, 50


def _utterance(rng, k):
    n = int(rng.integers(6, 20))
    frames = rng.integers(5, 12, size=n)
    n_frames = int(frames.sum()) + 3
    raw = rng.integers(0, 500, size=n_frames)
    keep = np.concatenate([[True], raw[1:] != raw[:-1]])
    units = raw[keep]
    dur = np.diff(np.concatenate([np.flatnonzero(keep), [n_frames]]))
    bounds = np.concatenate([[0], np.cumsum(frames)]) * 0.04
    words = [f"w{int(i)}" for i in rng.integers(0, 40, size=n)]
    feat = {"file_name": f"audio/utt{k}.flac", "units": units.tolist(), "duration": dur.tolist()}
    aligned = [[" " + w, round(float(bounds[i]), 3), round(float(bounds[i + 1]), 3)] for i, w in enumerate(words)]
    return feat, {"file_name": f"utt{k}.flac", "aligned_text": aligned}


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(0)
    feats, aligns = zip(*[_utterance(rng, k) for k in range(N_UTT)])
    texts = [" ".join(f"w{int(i)}" for i in rng.integers(0, 40, size=int(rng.integers(5, 30)))) + "." for _ in range(N_TEXT)]
    _write_jsonl(root / "features.jsonl", feats)
    _write_jsonl(root / "align.jsonl", aligns)
    _write_jsonl(root / "text.jsonl", [{"text": t} for t in texts])
    train_text_tokenizer(texts, vocab_size=300).save_pretrained(str(root / "tok"))
    return root


def _kw(corpus, **kw):
    return dict(features=corpus / "features.jsonl", alignments=corpus / "align.jsonl", text=corpus / "text.jsonl",
                tokenizer=corpus / "tok", seed=3, val_fraction=0.2, chunk=5, log=lambda m: None) | kw


def _shard_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "shards").rglob("*.npy"))}


@pytest.fixture(scope="module")
def single(corpus):
    prepare_real(corpus / "single", **_kw(corpus))
    return corpus / "single"


def test_shard_and_merge_equal_one_run(corpus, single, tmp_path):
    out = tmp_path / "o"
    runs = [prepare_real(out, shard=(i, 3), **_kw(corpus)) for i in range(3)]
    assert sum(r["items_run"] for r in runs) == -(-N_UTT // 5) + -(-N_TEXT // 5)  # every item exactly once
    assert not out.exists()
    with pytest.raises(ConfigError, match="not done"):  # merging before every shard finished
        prepare_real(tmp_path / "p", merge_only=True, **_kw(corpus))
    m = prepare_real(out, merge_only=True, **_kw(corpus))
    ref = DataDir.open(single, verify="hash").manifest
    assert m["fingerprint"] == ref["fingerprint"] and m["tokens"] == ref["tokens"]
    assert _shard_files(out) == _shard_files(single)
    assert len(ref["tokens"]["speech_train"]["parts"]) > 1  # the index really spans several files


def test_workers_equal_one_run(corpus, single, tmp_path):
    m = prepare_real(tmp_path / "o", workers=2, **_kw(corpus))
    assert m["fingerprint"] == DataDir.open(single).fingerprint
    assert _shard_files(tmp_path / "o") == _shard_files(single)


def test_killed_preparation_resumes_to_identical_shards(corpus, single, tmp_path):
    """SIGKILL the process after 4 work items; the rerun skips them and ends with the same shards."""
    out = tmp_path / "o"
    script = f"""
import os, signal
import trainer.data.prepare_real as pr
real, n = pr._worker_run, [0]
def run(*a):
    real(*a)
    n[0] += 1
    if n[0] == 4:
        os.kill(os.getpid(), signal.SIGKILL)
pr._worker_run = run
pr.prepare_real({str(out)!r}, features={str(corpus / 'features.jsonl')!r}, alignments={str(corpus / 'align.jsonl')!r},
                text={str(corpus / 'text.jsonl')!r}, tokenizer={str(corpus / 'tok')!r}, seed=3, val_fraction=0.2, chunk=5)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    work = tmp_path / ".o.prepare"
    assert len(list((work / "done").glob("*.json"))) == 4 and not out.exists()
    logged = []
    m = prepare_real(out, **_kw(corpus, log=logged.append))
    assert any("resuming" in line and "4 work item(s) already done" in line for line in logged)
    assert m["fingerprint"] == DataDir.open(single).fingerprint
    assert _shard_files(out) == _shard_files(single)
    assert not work.exists() and not (out / "done").exists()


def test_datasets_and_parquet_inputs_match_jsonl(corpus, single, tmp_path):
    datasets = pytest.importorskip("datasets")  # the [test] extra installs it: skipped only outside it
    feats = [json.loads(line) for line in (corpus / "features.jsonl").read_text().splitlines()]
    texts = [json.loads(line)["text"] for line in (corpus / "text.jsonl").read_text().splitlines()]
    speech = datasets.Dataset.from_dict({k: [f[k] for f in feats] for k in ("file_name", "units", "duration")})
    text = datasets.Dataset.from_dict({"text": texts})
    speech.save_to_disk(str(tmp_path / "speech_ds"))
    text.save_to_disk(str(tmp_path / "text_ds"))
    (tmp_path / "pq").mkdir()
    speech.to_parquet(str(tmp_path / "pq" / "speech.parquet"))
    text.to_parquet(str(tmp_path / "text.parquet"))
    ref = DataDir.open(single).fingerprint
    m = prepare_real(tmp_path / "a", **_kw(corpus, features=tmp_path / "speech_ds", text=tmp_path / "text_ds"))
    assert m["fingerprint"] == ref
    m = prepare_real(tmp_path / "b", **_kw(corpus, features=tmp_path / "pq", text=tmp_path / "text.parquet"))
    assert m["fingerprint"] == ref
    m = prepare_real(tmp_path / "c", **_kw(corpus, features=f"hf:{tmp_path / 'pq'}", text=tmp_path / "text.parquet"))
    assert m["fingerprint"] == ref  # datasets.load_dataset(..., streaming=True)
    assert _shard_files(tmp_path / "c") == _shard_files(single)


def test_a_source_of_empty_documents_is_refused(corpus, tmp_path):
    (tmp_path / "t.jsonl").write_text('{"text": " "}\n{"text": ""}\n')
    with pytest.raises(ConfigError, match="t.jsonl: the text source 'text' gave no documents"):
        prepare_real(tmp_path / "o", **_kw(corpus, text=tmp_path / "t.jsonl"))
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.prepare").exists()


def test_audio_column_without_units_is_refused(corpus, tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"file_name": ["a.flac", "b.flac"], "audio": [[0.0, 0.1], [0.2]]}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(ConfigError, match="row 0 has audio but no units.*scaling data extract"):
        prepare_real(tmp_path / "o", **_kw(corpus, features=tmp_path / "ds", alignments=None))
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.prepare").exists()


def _ids_per_split(out: Path, corpus: Path) -> dict[str, set]:
    """Which utterance each speech document of each split decodes back to."""
    data = DataDir.open(out)
    vocab = SpeechVocab.of(load_tokenizer(out / "tokenizer"))
    by_units = {tuple(json.loads(line)["units"]): json.loads(line)["file_name"]
                for line in (corpus / "features.jsonl").read_text().splitlines()}
    got = {}
    for split in ("train", "val"):
        flat = np.asarray(data.tokens("speech", split))
        offs = list(data.doc_offsets("speech", split)) + [len(flat)]
        got[split] = [by_units[tuple((flat[a + 1:b - 1] - vocab.unit_offset).tolist())] for a, b in zip(offs, offs[1:])]
    return got


def test_split_by_utterance_id_without_overlap(corpus, single, tmp_path):
    got = _ids_per_split(single, corpus)
    train, val = set(got["train"]), set(got["val"])
    assert not train & val and len(train | val) == N_UTT
    assert len(val) == round(0.2 * N_UTT)
    # the split follows the ids, not the file order
    lines = (corpus / "features.jsonl").read_text().splitlines()
    (tmp_path / "f.jsonl").write_text("\n".join(lines[::-1]) + "\n")
    prepare_real(tmp_path / "o", **_kw(corpus, features=tmp_path / "f.jsonl"))
    other = _ids_per_split(tmp_path / "o", corpus)
    assert set(other["val"]) == val and set(other["train"]) == train


def _bad_alignments(corpus, tmp_path, edit):
    rows = [json.loads(line) for line in (corpus / "align.jsonl").read_text().splitlines()]
    edit(rows[4]["aligned_text"])
    return _write_jsonl(tmp_path / "bad_align.jsonl", rows)


@pytest.mark.parametrize("case,want", [
    ("order", ["words out of time order", "word 3", "utt4"]),
    ("overlap", ["overlapping words", "word 2", "utt4"]),
    ("beyond", ["outside the audio", "utt4"]),
    ("reversed", ["ends before it starts", "utt4"]),
])
def test_bad_alignments_are_errors_naming_the_file(corpus, tmp_path, capsys, case, want):
    def edit(al):
        if case == "order":
            al[2], al[3] = al[3], al[2]
        elif case == "overlap":
            al[2][1] = al[1][1]
        elif case == "beyond":
            al[-1][2] = al[-1][2] + 5.0
        else:
            al[1][1], al[1][2] = al[1][2], al[1][1]

    bad = _bad_alignments(corpus, tmp_path, edit)
    args = ["data", "prepare", "--features", str(corpus / "features.jsonl"), "--alignments", str(bad),
            "--tokenizer", str(corpus / "tok"), "--out", str(tmp_path / "o"), "--chunk", "5"]
    assert main(args) == 2
    err = capsys.readouterr().err
    for w in want + ["bad_align.jsonl", "aligned_text"]:
        assert w in err, (w, err)
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.prepare").exists()


def test_out_of_order_alignments_would_have_emptied_the_speech_share(corpus):
    """Why the order check exists: reversed word times map every speech span to no units."""
    from trainer.data.interleave import unit_range

    feat = json.loads((corpus / "features.jsonl").read_text().splitlines()[0])
    al = json.loads((corpus / "align.jsonl").read_text().splitlines()[0])["aligned_text"]
    i, j = unit_range(feat["duration"], al[3][1], al[1][2])  # a span from word 3 back to word 1
    assert j == i


def test_duplicate_ids_error_or_dropped_with_count(corpus, tmp_path, capsys):
    lines = (corpus / "features.jsonl").read_text().splitlines()
    dup = tmp_path / "dup.jsonl"
    dup.write_text("\n".join(lines + [lines[7], lines[7], lines[2]]) + "\n")
    with pytest.raises(ConfigError) as e:
        prepare_real(tmp_path / "o", **_kw(corpus, features=dup))
    msg = str(e.value)
    assert "'utt7' appears more than once" in msg and "line 8" in msg and "line 37" in msg and "3 duplicate" in msg
    assert "--dedup" in msg and not (tmp_path / "o").exists()
    logged = []
    m = prepare_real(tmp_path / "o", dedup=True, **_kw(corpus, features=dup, log=logged.append))
    assert m["checks"]["duplicates_dropped"] == 3 and any("dropped 3 duplicate" in line for line in logged)
    src = m["sources"]["speech"]
    assert src["records"] == N_UTT + 3 and src["train"] + src["val"] == N_UTT
    assert m["tokens"]["speech_train"]["documents"] + m["tokens"]["speech_val"]["documents"] == N_UTT


def test_audio_outside_aligned_words_warns_with_counts(corpus, tmp_path, capsys):
    def edit(al):
        del al[3:]  # a transcript covering 3 words of the recording

    bad = _bad_alignments(corpus, tmp_path, edit)
    assert main(["data", "prepare", "--features", str(corpus / "features.jsonl"), "--alignments", str(bad),
                 "--tokenizer", str(corpus / "tok"), "--out", str(tmp_path / "o"), "--chunk", "5",
                 "--val-fraction", "0.2"]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 of 36 aligned utterances have more than 50% of their audio outside aligned words" in err
    assert "utt4" in err
    checks = DataDir.open(tmp_path / "o").manifest["checks"]
    assert checks["utterances_mostly_unaligned"] == 1 and checks["aligned_utterances"] == N_UTT
    assert 0 < checks["audio_share_outside_words"] < 0.2


def test_speech_sources_with_weights_reported_per_source(corpus, tmp_path, capsys):
    lines = (corpus / "features.jsonl").read_text().splitlines()
    (tmp_path / "real.jsonl").write_text("\n".join(lines[:20]) + "\n")
    (tmp_path / "synth.jsonl").write_text("\n".join(lines[20:]) + "\n")
    args = ["data", "prepare", "--features", f"real={tmp_path / 'real.jsonl'}", "--features",
            f"synth={tmp_path / 'synth.jsonl'}", "--weight", "synth=2", "--alignments", str(corpus / "align.jsonl"),
            "--tokenizer", str(corpus / "tok"), "--out", str(tmp_path / "o"), "--val-fraction", "0.2"]
    assert main(args) == 0
    assert "source synth (speech, weight 2)" in capsys.readouterr().out
    m = DataDir.open(tmp_path / "o").manifest
    real, synth = m["sources"]["real"], m["sources"]["synth"]
    assert real["weight"] == 1.0 and synth["weight"] == 2.0
    assert m["tokens"]["speech_train"]["documents"] == real["train"] + 2 * synth["train"]
    assert m["tokens"]["speech_val"]["documents"] == real["val"] + synth["val"]  # validation is never reweighted
    for stream in ("speech_train", "interleaved_train"):
        assert real["tokens"][stream] + synth["tokens"][stream] == m["tokens"][stream]["tokens"]
        assert real["share"][stream] + synth["share"][stream] == pytest.approx(1.0)
    assert main(args[:-2] + ["--out", str(tmp_path / "p"), "--weight", "other=1"]) == 2
    assert "unknown source" in capsys.readouterr().err


def test_parted_tokens_read_like_one_array(single):
    data = DataDir.open(single)
    toks = data.tokens("speech", "train")
    assert isinstance(toks, PartedTokens) and len(toks.arrays) > 1
    flat = np.asarray(toks)
    assert len(flat) == len(toks) == data.counts("speech", "train")["tokens"]
    cut = int(toks.starts[1])
    for a, b in [(0, 5), (cut - 3, cut + 4), (cut - 1, len(flat)), (len(flat) - 2, len(flat) + 9)]:
        assert toks[a:b].tolist() == flat[a:b].tolist()
    assert toks[cut] == flat[cut] and toks[-1] == flat[-1]
    streams = {"speech": toks, "interleaved": data.tokens("interleaved", "train")}
    plain = {k: np.asarray(v) for k, v in streams.items()}
    a, sa = Mixture(streams, {"speech": 1, "interleaved": 1}, 16, 0).sequences(0, 40)
    b, sb = Mixture(plain, {"speech": 1, "interleaved": 1}, 16, 0).sequences(0, 40)
    assert (a == b).all() and (sa == sb).all()
    from trainer.validate import val_windows

    assert (val_windows(toks, 16, 5) == val_windows(flat, 16, 5)).all()
    assert (val_windows(toks, 10 ** 6, 5) == val_windows(flat, 10 ** 6, 5)).all()  # fewer tokens than one window
    offs = data.doc_offsets("speech", "train")
    assert offs[0] == 0 and (np.diff(offs) > 0).all() and flat[offs[1] - 1] == flat[-1]  # documents end with eos


def test_format1_folder_still_reads(prepared):
    data = DataDir.open(prepared, verify="hash")
    assert data.format == 1 and data.fingerprint
    assert isinstance(data.tokens("speech", "train"), np.memmap)


def test_truncated_part_is_an_error(corpus, single, tmp_path):
    import shutil

    shutil.copytree(single, tmp_path / "d")
    part = sorted((tmp_path / "d" / "shards" / "text_train").glob("*[0-9].npy"))[1]
    part.write_bytes(part.read_bytes()[:-8])
    with pytest.raises(ConfigError, match="truncated or corrupt"):
        DataDir.open(tmp_path / "d")


def test_format2_index_checks(single, tmp_path):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(single, d)
    m = json.loads((d / "data.json").read_text())
    part = m["tokens"]["speech_train"]["parts"][1]
    p = d / "shards" / "speech_train" / f"{part['name']}.npy"
    arr = np.load(p)
    arr[3] += 1  # same size, other content: only the hash sees it
    np.save(p, arr)
    DataDir.open(d)
    with pytest.raises(ConfigError, match=f"speech_train/{part['name']}.npy.*differs from its sha256"):
        DataDir.open(d, verify="hash")
    bad = json.loads(json.dumps(m))
    bad["tokens"]["speech_train"]["tokens"] += 1
    (d / "data.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="tokens.speech_train.tokens.*parts hold"):
        DataDir.open(d)
    bad = dict(m, format=3)
    (d / "data.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="reads formats \\[1, 2\\]"):
        DataDir.open(d)


def test_cli_shard_then_merge(corpus, single, tmp_path, capsys):
    args = ["data", "prepare", "--features", str(corpus / "features.jsonl"), "--alignments", str(corpus / "align.jsonl"),
            "--text", str(corpus / "text.jsonl"), "--tokenizer", str(corpus / "tok"), "--seed", "3", "--val-fraction", "0.2",
            "--chunk", "5", "--out", str(tmp_path / "o")]
    assert main(args + ["--shard", "2/2"]) == 2
    assert "field 'shard'" in capsys.readouterr().err
    assert main(args + ["--shard", "1/2"]) == 0 and main(args + ["--shard", "0/2"]) == 0
    assert "run the same command with --merge" in capsys.readouterr().out
    assert main(args + ["--merge"]) == 0
    assert "source speech (speech, weight 1)" in capsys.readouterr().out
    assert DataDir.open(tmp_path / "o").fingerprint == DataDir.open(single).fingerprint


def test_training_runs_on_a_parted_folder(single, tmp_path):
    """The trainer reads a format-2 folder (several parts per stream) through DataDir like a format-1 one."""
    from scaling.rundir import RunDir
    from scaling.shapes import DEMO
    from scaling.spec import RunSpec, TrainConfig
    from trainer.execute import execute

    data = DataDir.open(single)
    assert len(data.parts("interleaved", "train")) > 1
    spec = RunSpec(arm="interleaved", model="toy-xs", shape=DEMO["toy-xs"].with_vocab(data.speech_model_vocab), tokens=640,
                   streams={"text": 1.0, "interleaved": 1.0, "speech": 1.0}, init="random",
                   data_fingerprint=data.fingerprint, data_dir=str(single),
                   train=TrainConfig(seq_len=32, batch_size=4, val_sequences=4))
    rec = execute(RunDir(tmp_path / "runs" / spec.run_id).create(spec))
    assert rec["tokens"] == 640 and np.isfinite(rec["val_loss_interleaved"])
