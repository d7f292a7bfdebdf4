"""`scaling eval`: one model load for many metrics, the table, the JSON and the per-item CSVs."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from scaling.cli import main

from scaling.datadir import BENCHMARKS

NAMES = [n for n, b in BENCHMARKS.items() if b.kind == "pairs"]


@pytest.fixture(scope="module")
def checkpoint(prepared, tmp_path_factory):
    from scaling.shapes import DEMO
    from scaling.datadir import DataDir
    from trainer.data.tokenizer import load_tokenizer
    from trainer.model import build_model

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ckpt") / "model"
    model = build_model(DEMO["toy-xs"].with_vocab(DataDir.open(prepared).manifest["speech_model_vocab"]), 0)
    model.save_pretrained(str(out))
    load_tokenizer(prepared / "tokenizer").save_pretrained(str(out))
    return out


@pytest.fixture
def count_loads(monkeypatch):
    import trainer.model as m

    calls = []
    real = m.load_model

    def counted(path):
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(m, "load_model", counted)
    return calls


def test_eval_cli_loads_once_and_writes_table_json_csv(checkpoint, prepared, tmp_path, capsys, count_loads):
    out_json, per_item = tmp_path / "res.json", tmp_path / "items"
    rc = main(["eval", str(checkpoint), "--data", str(prepared), "--benchmarks", ",".join(NAMES),
               "--max-items", "6", "--batch-size", "5", "--json", str(out_json), "--per-item", str(per_item)])
    assert rc == 0
    assert len(count_loads) == 1  # 7 metrics, one model load
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["metric", "accuracy", "95%", "CI", "items"]
    assert [line.split()[0] for line in table[1:]] == NAMES
    res = json.loads(out_json.read_text())
    assert set(res["metrics"]) == set(NAMES) and res["norm"] == "mean" and res["span"] == "whole"
    for name in NAMES:
        m = res["metrics"][name]
        with open(per_item / f"{name}.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert list(rows[0]) == ["id", "nll_pos", "nll_neg", "n_tokens_pos", "n_tokens_neg", "score"]
        assert m["items"] == len(rows) == 6
        scores = [float(r["score"]) for r in rows]
        assert m["accuracy"] == pytest.approx(np.mean(scores))
        for r in rows:  # the score follows from the two NLLs
            p, q = float(r["nll_pos"]), float(r["nll_neg"])
            assert float(r["score"]) == (1.0 if p < q else 0.5 if p == q else 0.0)
        assert m["ci_low"] <= m["accuracy"] <= m["ci_high"]
        line = next(x for x in table if x.split()[0] == name)
        assert f"{m['accuracy']:.4f}" in line


def test_cli_matches_in_process_evaluate_and_suite_reuse(checkpoint, prepared, tmp_path):
    from scaling.datadir import count_column
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.eval.suite import EvalSuite
    from trainer.model import load_model

    out = tmp_path / "r.json"
    assert main(["eval", str(checkpoint), "--data", str(prepared / "benchmarks"), "--benchmarks", "swuggy,ssc",
                 "--max-items", "5", "--norm", "sum", "--span", "continuation", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    # the suite's columns: each accuracy and its item count (``<name>_n``, for binomial intervals)
    cli = {**{k: v["accuracy"] for k, v in metrics.items()}, **{count_column(k): v["items"] for k, v in metrics.items()}}
    assert set(cli) == {"swuggy", "ssc", "swuggy_n", "ssc_n"} and cli["ssc_n"] == 5
    tok = load_tokenizer(checkpoint)
    model = load_model(checkpoint)
    vocab = SpeechVocab.of(tok)
    direct = EvalSuite.from_data(prepared, ["swuggy", "ssc"], tok, vocab, max_items=5, norm="sum",
                                 span="continuation", batch_size=1).run(model)
    assert direct == cli
    suite = EvalSuite.from_data(prepared / "benchmarks", ["swuggy", "ssc"], tok, vocab, max_items=5, norm="sum",
                                span="continuation")
    assert suite.run(model) == suite.run(model) == cli


def test_checkpoint_without_speech_tokens_is_a_clear_error(checkpoint, prepared, tmp_path, capsys):
    import shutil

    from trainer.data.tokenizer import load_tokenizer

    bad = tmp_path / "textonly"
    shutil.copytree(checkpoint, bad)
    for f in bad.glob("*token*"):
        f.unlink()
    load_tokenizer(prepared / "tokenizer_text").save_pretrained(str(bad))
    assert main(["eval", str(bad), "--data", str(prepared), "--benchmarks", "swuggy"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "lacks the speech tokens" in err


def test_bad_benchmark_name_fails_before_loading_the_model(checkpoint, prepared, capsys, count_loads):
    assert main(["eval", str(checkpoint), "--data", str(prepared), "--benchmarks", "swuggy,sbliimp"]) == 2
    assert "benchmark 'sbliimp' not found" in capsys.readouterr().err
    assert count_loads == []


def test_eval_and_generate_registration_import_no_torch():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import argparse, sys; from trainer.eval import cli as e; from trainer.generate import cli as g; "
            "p = argparse.ArgumentParser(); sub = p.add_subparsers(); e.register(sub); g.register(sub); "
            "print([m for m in ('torch', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                         env={"PYTHONPATH": str(root)})
    assert out.stdout.strip() == "[]", out.stderr


def test_submission_from_scaling_eval_scores_as_the_official_toolkit(checkpoint, tmp_path, capsys):
    """A ZeroSpeech layout scored by the model: the submission files, fed to the official pandas steps,
    give the accuracy and in-vocab score `scaling eval` reports."""
    from helpers.zerospeech_official import official_from_submission

    rng = np.random.default_rng(0)
    data = tmp_path / "zr"
    units = {}
    rows = ["filename,id,voice,frequency,word,phones,length,correct"]
    for i in range(12):
        for v in ("A", "B", "C")[: 1 + i % 3]:  # 1 to 3 voices per id
            units[f"w{i}{v}"] = rng.integers(0, 500, 6).tolist()
            rows.append(f"w{i}{v},{i},{v},{[0, 2, 7, 40, 300][i % 5]},w,p,3,1")
            for k in range(1 + i % 2):  # 1 or 2 non-words per id and voice
                units[f"n{i}{v}{k}"] = rng.integers(0, 500, 6).tolist()
                rows.append(f"n{i}{v}{k},{i},{v},,n,p,3,0")
    (data / "swuggy").mkdir(parents=True)
    (data / "swuggy" / "gold.csv").write_text("\n".join(rows) + "\n")
    (data / "swuggy" / "units.jsonl").write_text("".join(json.dumps({"file_name": f"{k}.wav", "units": u}) + "\n"
                                                         for k, u in units.items()))
    out = tmp_path / "r.json"
    assert main(["eval", str(checkpoint), "--data", str(data), "--benchmarks", "swuggy", "--submission",
                 str(tmp_path / "sub"), "--json", str(out), "--resamples", "50", "--per-item", str(tmp_path / "items")]) == 0
    with open(tmp_path / "items" / "swuggy.csv", newline="") as fh:
        items = list(csv.DictReader(fh))
    sub = dict(line.split(" ") for line in (tmp_path / "sub" / "lexical" / "dev.txt").read_text().splitlines())
    for r in items:  # the submission holds the negated NLL of each pair's files
        assert float(sub[r["file_pos"]]) == -float(r["nll_pos"]) and float(sub[r["file_neg"]]) == -float(r["nll_neg"])
        assert r["group"] == r["id"].split("/")[0]
    m = json.loads(out.read_text())["metrics"]["swuggy"]
    all_, inv = official_from_submission(data / "swuggy" / "gold.csv", tmp_path / "sub" / "lexical" / "dev.txt", "lexical")
    assert m["accuracy"] == pytest.approx(all_, abs=1e-12) and m["in_vocab"] == pytest.approx(inv, abs=1e-12)
    assert [b["label"] for b in m["by_frequency"]] == ["oov", "1-5", "6-20", "21-100", ">100"]
    assert "swuggy inv" in capsys.readouterr().out
    assert main(["eval", str(checkpoint), "--data", str(data), "--benchmarks", "swuggy", "--submission",
                 str(tmp_path / "sub2"), "--max-items", "3"]) == 2
    assert not (tmp_path / "sub2").exists()


@pytest.mark.parametrize("convention", ["ours", "slamkit"])
def test_slamkit_storycloze_layouts_evaluate_without_conversion(checkpoint, tmp_path, convention):
    rng = np.random.default_rng(1)

    def units(root, names):
        (root / "units.jsonl").write_text("".join(json.dumps({"file_name": n, "units": rng.integers(0, 500, 5).tolist()})
                                                  + "\n" for n in names))

    flat, ms, cm = tmp_path / "ssc", tmp_path / "ms_tsc", tmp_path / "cm"
    names = []
    flat.mkdir()
    for i in range(3):
        for k in ("correct", "incorrect"):
            (flat / f"{i}_{k}.wav").write_bytes(b"")
            names.append(f"{i}_{k}.wav")
    units(flat, names)
    names = []
    for spk in ("a", "b"):
        (ms / spk).mkdir(parents=True)
        for i in range(2):
            for k in ("correct", "incorrect"):
                (ms / spk / f"{i}_{k}.wav").write_bytes(b"")
                names.append(f"{spk}/{i}_{k}.wav")
    units(ms, names)
    names = []
    cm.mkdir()
    for b in range(4):
        for part in ("mutual", "correct", "incorrect"):
            (cm / f"{b}_{part}.wav").write_bytes(b"")
            (cm / f"{b}_{part}.txt").write_text(f"the {part} part of story {b}")
            names.append(f"{b}_{part}.wav")
    units(cm, names)
    out = tmp_path / "r.json"
    assert main(["eval", str(checkpoint), "--data", str(tmp_path), "--benchmarks", "ssc,ms_tsc,cm,cm_s2t,cm_t2s,cm_t2t",
                 "--convention", convention, "--json", str(out), "--resamples", "20"]) == 0
    m = json.loads(out.read_text())["metrics"]
    assert {k: v["items"] for k, v in m.items()} == {"ssc": 3, "ms_tsc": 4, "cm": 4, "cm_s2t": 4, "cm_t2s": 4, "cm_t2t": 4}
    assert all(v["convention"] == convention and 0 <= v["accuracy"] <= 1 for v in m.values())
