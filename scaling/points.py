"""The points of a run record: the rows it gives the results table.

A run trained with cooldown branches (``train.schedule: wsd``) gives one point per branch and one
for its final state: each branch ends with its learning rate decayed over its own budget, so its end
is an (N, D) point as good as a separately trained run of that length (Hägele et al. 2024). Periodic
evaluations are not points: they sit mid-schedule, at the stable learning rate.

One function for both readers of finished runs (``sweeps.local.write_results`` -> results.csv and
``analysis.load.load_results`` on ``runs/*/result.json``), so the two tables cannot disagree.
"""
from __future__ import annotations

import math

from scaling.datadir import BENCHMARK_NAMES, BENCHMARKS
from scaling.flops import flops_6nd
from scaling.rundir import RESULT_COLUMNS

#: Columns of results.csv, in order: the run's columns, a point's id and kind ("final": the run's
#: end; "cooldown": a branch end), ``status`` last as before points (run_id first and status last
#: keep scripts that read the CSV by position working). :func:`columns` adds item counts.
assert RESULT_COLUMNS[-1] == "status"
POINT_COLUMNS = [*RESULT_COLUMNS[:-1], "point_id", "kind", "status"]
#: Columns a branch shares with its run (the run's model and state).
RUN_LEVEL = ("run_id", "arm", "model", "params", "non_embedding_params", "status")
#: Per-benchmark item counts: the binomial intervals of the figures need them.
ITEM_COUNT_COLUMNS = tuple(f"{b}_n" for b in BENCHMARK_NAMES)
_VALUES = set(RESULT_COLUMNS) - set(RUN_LEVEL) - {"tokens", "flops", "flops_exact", "budget", "epochs"}

#: What each results.csv column holds, for every column :func:`point_rows` may write (the docs' column
#: reference is rendered from it; tests/test_docs.py fails on a column without an entry or an entry
#: without a column). Benchmark columns take their meaning from the registry (``scaling.datadir``).
COLUMN_HELP = {
    "run_id": "the run's id: `<arm>-<model>-<budget>-<hash of the spec>`",
    "arm": "the arm (every figure, fit and table groups by it)",
    "model": "the model shape's name",
    "params": "all parameters, embeddings included (rows padded to a multiple of 64)",
    "non_embedding_params": "parameters without the input embeddings and an untied LM head (N of the fits)",
    "tokens": "training tokens of the point (D): the run's, or a cooldown branch's own",
    "flops": "6 N D with N = params (the budget convention)",
    "flops_exact": "D x (6 x matmul parameters incl. the LM head + 6 x layers x seq x hidden)",
    "budget": "the compute budget C the point was planned for",
    "val_loss_speech": "validation loss on the speech stream",
    "val_loss_text": "validation loss on the text stream",
    "val_loss_interleaved": "validation loss on the interleaved stream",
    **{b.name: (f"{b.label}: {b.description} ({'accuracy' if b.kind == 'pairs' else 'generation metric'}, "
                f"{'higher' if b.higher_is_better else 'lower'} is better)") for b in BENCHMARKS.values()},
    "epochs": "the most passes the point made over any one training stream (a branch: its run's, scaled by its "
              "tokens; result.json has each stream's as `epochs_per_stream`); empty in records written before it",
    "point_id": "`run_id` for a run's end, `<run_id>@<tokens>` for a cooldown branch",
    "kind": "`final` (a run's end) or `cooldown` (a wsd branch end, a point as good as a separate run of its length)",
    **{f"{b}_n": f"items the `{b}` score was computed on (for binomial intervals)" for b in BENCHMARK_NAMES},
    "status": "the run's state (`done`, `failed`, ...)",
}


def columns(counts=()) -> list[str]:
    """POINT_COLUMNS with the item-count columns ``counts`` (``<bench>_n``) before ``status``."""
    return [*POINT_COLUMNS[:-1], *counts, "status"]


def branch_point_id(run_id: str, tokens: int) -> str:
    return f"{run_id}@{tokens}"


def _finite(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def point_rows(rec: dict) -> list[dict]:
    """The results-table rows of one run record (result.json or a planned run's stub): one per
    cooldown branch (tokens of the branch, ``budget`` the C it was planned for when the record
    carries it, ``flops`` = 6 N D of the branch, ``flops_exact`` scaled from the run's exact count,
    its losses and accuracies), then the final row (point id = run id). Columns: POINT_COLUMNS and
    the item counts present."""
    run_id = str(rec.get("run_id"))
    counts = [c for c in ITEM_COUNT_COLUMNS if c in rec or any(c in e for e in rec.get("evals") or [])]
    cols = columns(counts)
    rows = []
    params, final_tokens = _finite(rec.get("params")), _finite(rec.get("tokens"))
    exact = _finite(rec.get("flops_exact"))
    # exact FLOPs are linear in tokens at a fixed shape and context: scale the run's count; so are the
    # passes over each stream, which the mixture draws in fixed shares (to within one sequence)
    per_token = exact / final_tokens if exact is not None and final_tokens else None
    epochs = _finite(rec.get("epochs"))
    epochs_per_token = epochs / final_tokens if epochs is not None and final_tokens else None
    branches = sorted((e for e in rec.get("evals") or [] if isinstance(e, dict) and e.get("kind") == "cooldown"),
                      key=lambda e: e.get("tokens") or 0)
    for ev in branches:
        t = ev.get("tokens")
        row = {c: rec.get(c) for c in RUN_LEVEL}
        row.update({c: ev.get(c) for c in (*_VALUES, *counts)})
        row.update(point_id=branch_point_id(run_id, t), kind="cooldown", tokens=t, budget=ev.get("budget"),
                   flops=flops_6nd(params, t) if params is not None and t is not None else None,
                   flops_exact=per_token * t if per_token is not None and t is not None else None,
                   epochs=round(epochs_per_token * t, 4) if epochs_per_token is not None and t is not None else None)
        rows.append({c: row.get(c) for c in cols})
    final = {c: rec.get(c) for c in cols}
    final.update(point_id=run_id, kind="final")
    rows.append(final)
    return rows
