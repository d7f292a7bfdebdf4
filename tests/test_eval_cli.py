"""`scaling eval`: one model load for many metrics, the table, the JSON and the per-item CSVs."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from scaling.cli import main

NAMES = ["swuggy", "sblimp", "ssc", "tsc", "ssc_s2t", "ssc_t2s", "ssc_t2t"]


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
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.eval.benchmarks import evaluate
    from trainer.eval.suite import EvalSuite
    from trainer.model import load_model

    out = tmp_path / "r.json"
    assert main(["eval", str(checkpoint), "--data", str(prepared / "benchmarks"), "--benchmarks", "swuggy,ssc",
                 "--max-items", "5", "--norm", "sum", "--span", "continuation", "--json", str(out)]) == 0
    cli = {k: v["accuracy"] for k, v in json.loads(out.read_text())["metrics"].items()}
    tok = load_tokenizer(checkpoint)
    model = load_model(checkpoint)
    vocab = SpeechVocab.of(tok)
    direct = evaluate(model, tok, vocab, prepared / "benchmarks", ["swuggy", "ssc"], max_items=5, norm="sum",
                      span="continuation", batch_size=1)
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


def test_checkpoint_entry_for_run_records(checkpoint, prepared):
    from trainer.data.tokenizer import SpeechVocab, load_tokenizer
    from trainer.eval.suite import EvalSuite, checkpoint_entry
    from trainer.model import load_model

    tok = load_tokenizer(checkpoint)
    suite = EvalSuite.from_data(prepared / "benchmarks", ["swuggy", "tsc"], tok, SpeechVocab.of(tok), max_items=4)
    model = load_model(checkpoint)
    e = checkpoint_entry(suite, model, tokens=1000, flops=6e9, val_loss_speech=5.5, cooldown=True)
    assert e == {"tokens": 1000, "flops": 6e9, "val_loss_speech": 5.5, "cooldown": True, **suite.run(model)}
    assert set(e) >= {"swuggy", "tsc"} and all(0.0 <= e[k] <= 1.0 for k in ("swuggy", "tsc"))
    assert checkpoint_entry(None, model, tokens=1, flops=2.0) == {"tokens": 1, "flops": 2.0}
