"""The run directory: the one contract between training and everything downstream.

    runs/<run_id>/
      spec.yaml       the resolved run spec
      state.json      pending | running | done | failed, timestamps, attempts
      metrics.jsonl   one line per logged step / validation / evaluation
      result.json     the final record (flat keys = the results.csv columns, plus details)
      model/          HF save_pretrained folder with the tokenizer

Every file is written atomically, so a kill never leaves a torn record.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from scaling import atomic
from scaling.datadir import BENCHMARK_NAMES
from scaling.spec import RunSpec

STATES = ("pending", "running", "done", "failed")

# Columns of results.csv, in order (the analysis package reads these).
RESULT_COLUMNS = [
    "run_id", "arm", "model", "params", "non_embedding_params", "tokens", "flops", "flops_exact", "budget",
    "val_loss_speech", "val_loss_text", "val_loss_interleaved", *BENCHMARK_NAMES, "epochs", "status",
]


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    spec_path = property(lambda self: self.path / "spec.yaml")
    state_path = property(lambda self: self.path / "state.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    result_path = property(lambda self: self.path / "result.json")
    model_path = property(lambda self: self.path / "model")

    @property
    def run_id(self) -> str:
        return self.path.name

    def create(self, spec: RunSpec) -> "RunDir":
        self.path.mkdir(parents=True, exist_ok=True)
        atomic.write_yaml(self.spec_path, spec.dump())
        if not self.state_path.exists():
            self.set_state("pending")
        return self

    def spec(self) -> RunSpec:
        return RunSpec.load(self.spec_path)

    def state(self) -> dict:
        if not self.state_path.exists():
            return {"status": "pending", "attempts": 0}
        return json.loads(self.state_path.read_text(encoding="utf-8"))

    @property
    def status(self) -> str:
        return self.state().get("status", "pending")

    def set_state(self, status: str, **extra) -> None:
        assert status in STATES, status
        st = self.state() if self.state_path.exists() else {"attempts": 0}
        st["status"] = status
        st[f"{status}_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if status == "running":
            st["attempts"] = st.get("attempts", 0) + 1
        st.update(extra)
        atomic.write_json(self.state_path, st)

    def log(self, row: dict) -> None:
        atomic.append_jsonl(self.metrics_path, row)

    def metrics(self) -> list[dict]:
        return atomic.read_jsonl(self.metrics_path) if self.metrics_path.exists() else []

    def write_result(self, result: dict) -> None:
        atomic.write_json(self.result_path, result)

    def result(self) -> dict | None:
        if not self.result_path.exists():
            return None
        return json.loads(self.result_path.read_text(encoding="utf-8"))
