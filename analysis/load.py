"""Load the results table from a CSV or from run directories: one row per point (a run's final
state, and each cooldown branch of a wsd run: scaling.points), ``point_id`` unique, ``run_id`` the
run a point came from."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.datadir import BENCHMARK_NAMES
from scaling.errors import ConfigError
from scaling.flops import flops_6nd
from scaling.points import point_rows

#: Any one of these is enough for a table to be fittable.
LOSS_COLUMNS = ("val_loss_speech", "val_loss_text", "val_loss_interleaved", "loss")
#: Benchmark accuracies: the registry's names (scaling.datadir.BENCHMARKS) are the results columns.
METRIC_COLUMNS = BENCHMARK_NAMES
#: Columns that must hold numbers when present (empty cells become NaN).
NUMERIC_COLUMNS = ("params", "non_embedding_params", "tokens", "flops", "flops_exact", "budget",
                   *LOSS_COLUMNS, *METRIC_COLUMNS)


def _read_runs_dir(runs: Path) -> pd.DataFrame:
    rows = []
    for p in sorted(runs.glob("*/result.json")):
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not valid JSON ({exc.msg} at line {exc.lineno})", source=str(p)) from None
        if not isinstance(rec, dict):
            raise ConfigError("result.json must hold a JSON object", source=str(p), value=type(rec).__name__)
        rec.setdefault("run_id", p.parent.name)
        rows += [{**r, "_source": str(p)} for r in point_rows(rec)]
    if not rows:
        raise ConfigError("no runs/*/result.json files found", source=str(runs))
    return pd.DataFrame(rows)


def load_results(path, *, only_done: bool = True) -> pd.DataFrame:
    """Read and validate a results table.

    ``path`` is a CSV file, a directory holding ``results.csv``, or a directory holding
    ``runs/*/result.json`` (flat dicts with the CSV's column names; a wsd run gives one row per
    cooldown branch and one for its end, as results.csv does). A table without ``point_id`` (one row
    per run, written before points) gets the run ids; duplicate point ids are an error. Rows whose ``status`` is not
    ``done`` are dropped when ``only_done``. Numeric columns are coerced (empty -> NaN); a
    non-numeric value, a missing required column or a non-positive params/tokens raises
    :class:`ConfigError` naming the file, the column and the value. ``flops`` is filled with
    6 * params * tokens where absent.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "results.csv").is_file():
            path = path / "results.csv"
        elif (path / "runs").is_dir():
            df = _read_runs_dir(path / "runs")
            source = str(path / "runs")
            return _validate(df, source, only_done)
        elif any(path.glob("*/result.json")):
            return _validate(_read_runs_dir(path), str(path), only_done)
        else:
            raise ConfigError("directory holds neither results.csv nor runs/*/result.json", source=str(path))
    if not path.is_file():
        raise ConfigError("results file not found", source=str(path))
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot parse CSV: {exc}", source=str(path)) from None
    return _validate(df, str(path), only_done)


def _validate(df: pd.DataFrame, source: str, only_done: bool) -> pd.DataFrame:
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    for col in ("params", "tokens"):
        if col not in df.columns:
            raise ConfigError(f"required column '{col}' is missing (columns: {', '.join(df.columns)})",
                              source=source, field=col)
    if not any(c in df.columns for c in LOSS_COLUMNS):
        raise ConfigError(f"no loss column: need one of {', '.join(LOSS_COLUMNS)}", source=source,
                          field="loss")
    if only_done and "status" in df.columns:
        status = df["status"].astype(str).str.strip().str.lower()
        if not (status == "done").any():
            counts = ", ".join(f"{k} {v}" for k, v in status.value_counts().items()) or "no rows"
            raise ConfigError(f"no run has status 'done' ({counts}): nothing to fit", source=source, field="status")
        df = df[status == "done"].reset_index(drop=True)
    if df.empty:
        raise ConfigError("the results table has no rows", source=source)
    for col in NUMERIC_COLUMNS:
        if col not in df.columns:
            continue
        raw = df[col]
        num = pd.to_numeric(raw, errors="coerce")
        bad = num.isna() & raw.notna()
        if bad.any():  # the string test only then: converting a column to strings costs ~2 ms
            bad &= raw.astype(str).str.strip() != ""
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            where = df["_source"].iloc[i] if "_source" in df.columns else source
            rid = f" (run {df['run_id'].iloc[i]})" if "run_id" in df.columns else f" (row {i + 1})"
            raise ConfigError(f"non-numeric value{rid}", source=where, field=col, value=raw.iloc[i])
        df[col] = num.astype(float)
    for col in ("params", "tokens"):
        x = df[col].to_numpy()
        bad = ~(x > 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            where = df["_source"].iloc[i] if "_source" in df.columns else source
            rid = f" (run {df['run_id'].iloc[i]})" if "run_id" in df.columns else f" (row {i + 1})"
            raise ConfigError(f"must be a positive number{rid}", source=where, field=col, value=float(x[i]))
    six_nd = flops_6nd(df["params"], df["tokens"])
    df["flops"] = df["flops"].fillna(six_nd) if "flops" in df.columns else six_nd
    if "arm" in df.columns:
        df["arm"] = df["arm"].astype(str).str.strip()
    _point_ids(df, source)
    df = df.drop(columns=["_source"], errors="ignore")
    df.attrs["source"] = source
    return df


def _point_ids(df: pd.DataFrame, source: str) -> None:
    """Fill ``point_id`` (and ``kind``) in an older one-row-per-run table; refuse duplicates, which
    every per-point step (dropped-row notes, figures, the comparison of arms) relies on not having."""
    if "point_id" not in df.columns:
        ids = df["run_id"].astype(str) if "run_id" in df.columns else pd.Series([f"row {i + 1}" for i in range(len(df))])
        k = ids.groupby(ids).cumcount().to_numpy()  # a run listed twice (hand-made tables): second is "id#2"
        df["point_id"] = [i if j == 0 else f"{i}#{j + 1}" for i, j in zip(ids, k)]
    else:
        missing = df["point_id"].isna() | (df["point_id"].astype(str).str.strip() == "")
        if missing.any() and "run_id" in df.columns:
            df.loc[missing, "point_id"] = df.loc[missing, "run_id"]
        df["point_id"] = df["point_id"].astype(str).str.strip()
    if "kind" not in df.columns:
        df["kind"] = "final"
    dup = df["point_id"].duplicated()
    if dup.any():
        raise ConfigError("duplicate point id: each row must be one point", source=source, field="point_id",
                          value=df["point_id"][dup].iloc[0])
