"""`scaling data prepare --submit local --array N`: a submitit job array of --shard i/N tasks, then the merge."""
import json
import numpy as np
import pytest

from scaling.cli import main
from scaling.datadir import DataDir
from trainer.data.prepare_real import prepare_real
from trainer.data.tokenizer import train_text_tokenizer

from conftest import REPO


@pytest.mark.slow
def test_prepare_job_array_equals_one_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("submitit")  # in the [test] extra
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the array tasks are fresh processes importing this checkout
    rng = np.random.default_rng(1)
    texts = [" ".join(f"w{int(i)}" for i in rng.integers(0, 30, size=12)) for _ in range(30)]
    (tmp_path / "text.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    rows = [{"id": f"u{k}", "units": rng.integers(0, 500, size=20).tolist(), "durations": [2] * 20} for k in range(12)]
    (tmp_path / "speech.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    train_text_tokenizer(texts, vocab_size=280).save_pretrained(str(tmp_path / "tok"))
    args = ["data", "prepare", "--features", str(tmp_path / "speech.jsonl"), "--text", str(tmp_path / "text.jsonl"),
            "--tokenizer", str(tmp_path / "tok"), "--chunk", "4", "--val-fraction", "0.2"]
    assert main(args + ["--out", str(tmp_path / "arr"), "--submit", "local", "--array", "2", "--timeout-min", "10"]) == 0
    out = capsys.readouterr().out
    assert "submitted 2 array tasks" in out and "work items run by 2 tasks" in out
    one = prepare_real(tmp_path / "one", features=tmp_path / "speech.jsonl", text=tmp_path / "text.jsonl",
                       tokenizer=tmp_path / "tok", chunk=4, val_fraction=0.2, log=lambda m: None)
    assert DataDir.open(tmp_path / "arr", verify="hash").fingerprint == one["fingerprint"]
    results = sorted((tmp_path / ".arr.slurm").rglob("*_result.pkl"))
    assert len(results) == 2  # one per array task
