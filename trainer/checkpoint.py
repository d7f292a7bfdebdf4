"""Resumable training state: model, optimizer, data position, RNG.

    checkpoints/step_00000120/
      model.pt       full model state dict, keyed by parameter name
      optimizer.pt   full optimizer state dict, keyed by parameter name
      rng.pt         torch CPU (and CUDA) RNG states
      state.json     step, tokens consumed, sequence position, periodic evaluations

State dicts go through torch.distributed.checkpoint's full-state-dict API, so the same files
serve a single process and an FSDP2-sharded run (gathered to rank 0 when saving, loaded on every
rank), and a run may resume with another number of processes. Files are read back with
``torch.load(weights_only=True)``. A checkpoint folder is written under a temporary name and
renamed when complete, so a kill never leaves a half-written checkpoint; the two newest are kept.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from scaling import atomic
from trainer.parallel import barrier, is_main

KEEP = 2


def _dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if p.is_dir() and (p / "state.json").is_file())


def latest(root: Path) -> Path | None:
    d = _dirs(root)
    return d[-1] if d else None


def save(root: Path, model, optimizer, state: dict) -> Path:
    """Collective: every rank calls it; rank 0 writes."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    msd = get_model_state_dict(model, options=opts)
    osd = get_optimizer_state_dict(model, optimizer, options=opts)
    final = root / f"step_{state['step']:08d}"
    if is_main():
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        torch.save(msd, tmp / "model.pt")
        torch.save(osd, tmp / "optimizer.pt")
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=2))
        atomic.replace_dir(tmp, final)
        for old in _dirs(root)[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load(path: Path, model, optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, torch.load(path / "model.pt", weights_only=True), options=opts)
    set_optimizer_state_dict(model, optimizer, torch.load(path / "optimizer.pt", weights_only=True), options=opts)
    rng = torch.load(path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return json.loads((path / "state.json").read_text())
