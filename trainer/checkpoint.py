"""Resumable training state: model, optimizer, data position, RNG.

    checkpoints/step_00000120/
      model.pt, optimizer.pt   one process: full state dicts keyed by parameter name
      .metadata, __*_*.distcp  several processes: a sharded torch.distributed.checkpoint (DCP),
                               each rank writing its own shards (no gather to one host)
      rng.pt                   torch CPU (and CUDA) RNG states
      state.json               step, tokens consumed, sequence position, periodic evaluations

State dicts go through torch.distributed.checkpoint's state-dict API, keyed by parameter name,
so a run may resume with another number of processes (DCP reshards on load). Plain files are
read back with ``torch.load(weights_only=True)``. A checkpoint folder is written under a temporary name and
renamed when complete, so a kill never leaves a half-written checkpoint; the two newest are kept.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from scaling import atomic
from trainer.parallel import barrier, is_main, world

KEEP = 2


def _dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if p.is_dir() and (p / "state.json").is_file())


def latest(root: Path) -> Path | None:
    d = _dirs(root)
    return d[-1] if d else None


def save(root: Path, model, optimizer, state: dict) -> Path:
    """Collective: every rank calls it; sharded runs write one shard per rank, rank 0 the rest."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    final = root / f"step_{state['step']:08d}"
    tmp = root / f".{final.name}.tmp"
    if is_main():
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    barrier()
    if world()[1] > 1:
        dcp.save({"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}, checkpoint_id=str(tmp))
    else:
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        torch.save(get_model_state_dict(model, options=opts), tmp / "model.pt")
        torch.save(get_optimizer_state_dict(model, optimizer, options=opts), tmp / "optimizer.pt")
    barrier()
    if is_main():
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
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                         set_model_state_dict, set_optimizer_state_dict)

    if (path / ".metadata").is_file():  # sharded (DCP): loads into any number of processes
        sd = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
        dcp.load(sd, checkpoint_id=str(path))
        set_model_state_dict(model, sd["model"])
        set_optimizer_state_dict(model, optimizer, sd["optim"])
    else:
        opts = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, torch.load(path / "model.pt", weights_only=True), options=opts)
        set_optimizer_state_dict(model, optimizer, torch.load(path / "optimizer.pt", weights_only=True), options=opts)
    rng = torch.load(path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return json.loads((path / "state.json").read_text())
