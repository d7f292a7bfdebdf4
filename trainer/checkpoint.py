"""Resumable training state: model, optimizer, data position, RNG.

    checkpoints/step_00000120/
      model.pt, optimizer.pt   one process: full state dicts keyed by parameter name
      .metadata, __*_*.distcp  several processes: a sharded torch.distributed.checkpoint (DCP),
                               each rank writing its own shards (no gather to one host)
      rng.pt                   torch CPU (and CUDA) RNG states
      state.json               step, tokens consumed, sequence position, periodic evaluations
      checksums.json           every other file's size and sha256, written last

State dicts go through torch.distributed.checkpoint's state-dict API, keyed by parameter name,
so a run may resume with another number of processes (DCP reshards on load). Plain files are
read back with ``torch.load(weights_only=True)``. A checkpoint folder is written under a temporary name and
renamed when complete, so a kill never leaves a half-written checkpoint; the two newest are kept.

Integrity: ``checksums.json`` records the size and sha256 of every file of the folder (DCP: the shards of
every rank too; the files are hashed after the barrier, split over the ranks, and recorded by rank 0),
written inside the temporary folder before its rename. sha256 rather than sizes alone: a size catches a
truncated file but not a block of zeros or a flipped bit, and at ~1.6 GB/s per core it costs a fraction of
writing the file. :func:`latest` uses the newest checkpoint whose files all match their record; one that
does not (a file truncated, changed or missing, no record) is moved aside as ``.step_<n>.corrupt`` with a
warning naming it and the file, and the next older one is tried; with none intact the run starts over
(the same run, from its first step). The caller checks that the state is finite before saving
(``trainer.loop``): a checkpoint is never written from non-finite parameters.

A full disk or quota, a read-only file system or a missing permission while saving is a
:class:`scaling.rundir.ResourceError` naming the file; the temporary folder is removed (freeing its space).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

from scaling import atomic
from scaling.rundir import ResourceError, as_resource_error, writing
from trainer.parallel import barrier, broadcast_object, distributed, is_main, world

KEEP = 2
RECORD = "checksums.json"
RECORD_FORMAT = 1


def _dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if p.is_dir())


def _entry(path: Path) -> dict:
    return {"size": path.stat().st_size, "sha256": atomic.sha256_file(path)}


def check(path: Path) -> str | None:
    """Why the checkpoint folder ``path`` cannot be resumed from (a file missing, truncated or changed, no
    record), else None."""
    rec_path = path / RECORD
    try:
        rec = json.loads(rec_path.read_text(encoding="utf-8"))
        files = rec["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not an object")
    except FileNotFoundError:
        return f"it has no {RECORD} (written before checkpoints recorded their files, or not by this trainer)"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"its {RECORD} is damaged ({type(e).__name__}: {e})"
    needed = ["state.json", "rng.pt"] + ([".metadata"] if ".metadata" in files else ["model.pt", "optimizer.pt"])
    for name in needed:
        if name not in files:
            return f"its {RECORD} does not list {name}"
    for name, want in files.items():
        p = path / name
        if "/" in name or name.startswith(".."):
            return f"its {RECORD} lists a file outside the folder ({name!r})"
        if not p.is_file():
            return f"{p} is missing"
        size = p.stat().st_size
        if not isinstance(want, dict) or size != want.get("size"):
            return f"{p} has {size} bytes, not the {want.get('size') if isinstance(want, dict) else '?'} recorded (truncated?)"
        if atomic.sha256_file(p) != want.get("sha256"):
            return f"{p} does not match its recorded sha256 (changed after it was written)"
    return None


def set_aside(path: Path) -> Path:
    """Move a checkpoint that failed :func:`check` out of the way (kept for inspection, never resumed from)."""
    aside = path.with_name(f".{path.name}.corrupt")
    shutil.rmtree(aside, ignore_errors=True)
    path.rename(aside)
    return aside


def latest(root: Path, *, verify: bool = True, warn=None) -> Path | None:
    """The newest checkpoint under ``root`` (``verify``: the newest intact one; each damaged one on the way is
    set aside with a warning naming it). Rank 0 alone calls it (and broadcasts the choice)."""
    for d in reversed(_dirs(root)):
        if not verify:
            return d
        why = check(d)
        if why is None:
            return d
        try:
            where = f"moved aside to {set_aside(d)}"
        except OSError as e:
            where = f"left in place ({e.strerror})"
        msg = f"warning: checkpoint {d} is not intact: {why}; {where}; falling back to the next older checkpoint"
        (warn or (lambda m: print(m, file=sys.stderr, flush=True)))(msg)
    return None


def _torch_save(obj, path: Path) -> None:
    """torch.save through a Python file: a full disk is then an OSError(ENOSPC) naming the file (torch's own
    path writer reports it as a RuntimeError without an errno)."""
    with writing(path), open(path, "wb") as fh:
        torch.save(obj, fh)


def _gather(obj) -> list:
    if not distributed():
        return [obj]
    out = [None] * world()[1]
    torch.distributed.all_gather_object(out, obj)
    return out


def save(root: Path, model, optimizer, state: dict) -> Path:
    """Collective: every rank calls it; sharded runs write one shard per rank, rank 0 the rest."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    final = root / f"step_{state['step']:08d}"
    tmp = root / f".{final.name}.tmp"
    rank, size = world()
    try:
        failed = None
        if is_main():
            try:
                with writing(tmp):
                    root.mkdir(parents=True, exist_ok=True)
                    shutil.rmtree(tmp, ignore_errors=True)
                    tmp.mkdir()
            except BaseException as e:
                failed = e
        _agree(failed, final)
        if size > 1:
            with writing(tmp):
                dcp.save({"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)},
                         checkpoint_id=str(tmp))
        else:
            opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
            _torch_save(get_model_state_dict(model, options=opts), tmp / "model.pt")
            _torch_save(get_optimizer_state_dict(model, optimizer, options=opts), tmp / "optimizer.pt")
        barrier()
        if is_main():
            try:
                rng = {"cpu": torch.get_rng_state()}
                if torch.cuda.is_available():
                    rng["cuda"] = torch.cuda.get_rng_state_all()
                _torch_save(rng, tmp / "rng.pt")
                with writing(tmp / "state.json"):
                    (tmp / "state.json").write_text(json.dumps(state, indent=2))
            except BaseException as e:
                failed = e
        _agree(failed, final)
        # the record: every file of the folder (every rank's shards), hashed by the ranks in turn, kept by rank 0
        names = broadcast_object(sorted(p.name for p in tmp.iterdir() if p.is_file()) if is_main() else None)
        mine = {n: _entry(tmp / n) for n in names[rank::size]}
        files = {}
        for part in _gather(mine):
            files.update(part)
        if is_main():
            try:
                with writing(tmp / RECORD):
                    atomic.write_json(tmp / RECORD, {"format": RECORD_FORMAT, "files": dict(sorted(files.items()))})
                with writing(final):
                    atomic.replace_dir(tmp, final)
                for old in _dirs(root)[:-KEEP]:
                    shutil.rmtree(old, ignore_errors=True)
            except BaseException as e:
                failed = e
        _agree(failed, final)
    except BaseException:
        if is_main():
            shutil.rmtree(tmp, ignore_errors=True)  # a partial checkpoint is never resumed from; free its space
        raise
    return final


def _agree(err: BaseException | None, final: Path) -> None:
    """After a step only rank 0 did: every rank learns whether it failed, so all raise together (rank 0 its
    own error, the others a ResourceError naming the same file, or a RuntimeError) instead of waiting in a
    collective rank 0 never reaches."""
    if not distributed():
        if err is not None:
            raise err
        return
    said = None
    if is_main() and err is not None:
        res = as_resource_error(err, final)
        said = (res.errno, res.path) if res is not None else f"{type(err).__name__}: {err}"
    said = broadcast_object(said)
    if err is not None:
        raise err
    if isinstance(said, tuple):
        raise ResourceError(said[0], said[1])
    if said is not None:
        raise RuntimeError(f"rank 0 could not write checkpoint {final}: {said}")


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
