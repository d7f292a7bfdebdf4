"""Training curves and checkpoint evaluations from run directories, as tidy tables.

``runs/<run_id>/metrics.jsonl`` holds one line per training step (``step, tokens, flops, lr,
loss, ...``) and validation lines (those with ``val_loss_speech``); ``result.json`` holds
``evals``, one entry per evaluated checkpoint (several per run with cooldowns from checkpoints).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.atomic import read_jsonl
from scaling.textio import read_text
from scaling.errors import ConfigError
from scaling.flops import flops_6nd

#: Run-level columns copied onto every curve / checkpoint row.
RUN_COLUMNS = ("run_id", "arm", "model", "params", "non_embedding_params", "budget", "status")


def _runs_dir(path) -> Path:
    path = Path(path)
    if (path / "runs").is_dir():
        return path / "runs"
    if any(path.glob("*/result.json")):
        return path
    raise ConfigError("no runs/ directory with */result.json (training curves need run directories)", source=str(path))


def _records(path):
    for p in sorted(_runs_dir(path).glob("*/result.json")):
        try:
            rec = json.loads(read_text(p))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not valid JSON ({exc.msg} at line {exc.lineno})", source=str(p)) from None
        if not isinstance(rec, dict):
            raise ConfigError("result.json must hold a JSON object", source=str(p), value=type(rec).__name__)
        rec.setdefault("run_id", p.parent.name)
        yield p.parent, rec


def load_curves(path, *, only_done: bool = True) -> pd.DataFrame:
    """One row per logged line of every run: run columns, ``kind`` ("train" or "val"; an evaluation's
    own kind, periodic / cooldown / final, is ``eval_kind``), ``curve`` (the run id, or
    ``<run_id>@<tokens>`` for a cooldown branch's lines), and the line's values."""
    rows = []
    for run_dir, rec in _records(path):
        if only_done and str(rec.get("status", "done")).lower() != "done":
            continue
        base = {k: rec.get(k) for k in RUN_COLUMNS}
        mfile = run_dir / "metrics.jsonl"
        if not mfile.is_file():
            continue
        try:  # the run-directory reader: a torn last line (a killed run) is skipped, not an error
            lines = read_jsonl(mfile)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"line {exc.lineno} is not valid JSON", source=str(mfile)) from None
        for d in lines:
            # a wsd run logs each cooldown branch (rows with "branch": its token budget) beside its
            # main trajectory: each is its own curve, or sorting by tokens would zig-zag between them
            curve = base["run_id"] if d.get("branch") is None else f"{base['run_id']}@{d['branch']}"
            rows.append({**base, **d, "kind": "val" if "val_loss_speech" in d else "train", "eval_kind": d.get("kind"),
                         "curve": curve})
    if not rows:
        raise ConfigError("no metrics.jsonl lines found", source=str(path))
    df = pd.DataFrame(rows)
    for c in df.columns:
        if c not in ("run_id", "arm", "model", "status", "kind", "eval_kind", "curve", "event", "checkpoint"):
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def load_checkpoints(path, *, only_done: bool = True) -> pd.DataFrame:
    """One row per (run, evaluated checkpoint) from ``result.json`` ``evals``: params (all and
    non-embedding), tokens, flops (6ND from the checkpoint's tokens, and the logged exact count),
    losses and metrics. A run without ``evals`` contributes its final row."""
    rows = []
    for _, rec in _records(path):
        if only_done and str(rec.get("status", "done")).lower() != "done":
            continue
        base = {k: rec.get(k) for k in RUN_COLUMNS}
        evals = rec.get("evals") or [{k: v for k, v in rec.items() if k != "evals"}]
        final_tokens = rec.get("tokens")
        # exact FLOPs are linear in tokens at a fixed shape and context: scale the run's count
        per_token = rec["flops_exact"] / final_tokens if rec.get("flops_exact") and final_tokens else np.nan
        for j, ev in enumerate(evals):
            row = {**base, **{k: v for k, v in ev.items() if k not in RUN_COLUMNS}, "checkpoint": j}
            row["final"] = bool(final_tokens is not None and ev.get("tokens") == final_tokens)
            row["flops_exact"] = per_token * ev["tokens"] if ev.get("tokens") is not None else np.nan
            rows.append(row)
    if not rows:
        raise ConfigError("no runs with status 'done'", source=str(path))
    df = pd.DataFrame(rows)
    for c in df.columns:
        if c not in ("run_id", "arm", "model", "status", "final"):
            df[c] = pd.to_numeric(df[c], errors="coerce")
    df["flops_6nd"] = flops_6nd(df["params"], df["tokens"])
    return df
