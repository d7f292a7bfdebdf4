"""Resumable training state: model, optimizer, data position, RNG.

    checkpoints/step_00000120/
      model.safetensors   model state (shared tensors handled by safetensors' save_model)
      optimizer.pt        optimizer state dict (loaded with weights_only=True)
      rng.pt              torch CPU (and CUDA) RNG states
      state.json          step, tokens consumed, sequence position, and what the run has recorded

A checkpoint folder is written under a temporary name and renamed when complete, so a kill
never leaves a half-written checkpoint; the two newest are kept.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from scaling import atomic

KEEP = 2


def _dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if p.is_dir() and (p / "state.json").is_file())


def latest(root: Path) -> Path | None:
    d = _dirs(root)
    return d[-1] if d else None


def save(root: Path, model, optimizer, state: dict) -> Path:
    from safetensors.torch import save_model

    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{state['step']:08d}"
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    atomic.replace_dir(tmp, final)
    for old in _dirs(root)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load(path: Path, model, optimizer) -> dict:
    from safetensors.torch import load_model

    load_model(model, str(path / "model.safetensors"))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    rng = torch.load(path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return json.loads((path / "state.json").read_text())
