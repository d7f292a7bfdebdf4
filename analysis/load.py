"""Load the results table from a CSV or from run directories: one row per point (a run's final
state, and each cooldown branch of a wsd run: scaling.points), ``point_id`` unique, ``run_id`` the
run a point came from.

One reader and one set of rules for every command: :func:`load_table` gives numpy columns
(:class:`analysis.table.Table`, what ``scaling fit`` uses: no pandas import, which alone would
cost half its one-second budget); :func:`load_results` gives the same table as a pandas DataFrame
(report, figures). A CSV is read with the csv module; a ``result.json``'s values are first written
as results.csv writes them (``sweeps.local.write_results``), so both sources are parsed and
validated by the same code.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from scaling.datadir import BENCHMARK_NAMES
from scaling.errors import ConfigError
from scaling.flops import flops_6nd
from scaling.textio import read_text

from .table import Table

#: Any one of these is enough for a table to be fittable.
LOSS_COLUMNS = ("val_loss_speech", "val_loss_text", "val_loss_interleaved", "loss")
#: Benchmark accuracies: the registry's names (scaling.datadir.BENCHMARKS) are the results columns.
METRIC_COLUMNS = BENCHMARK_NAMES
#: Columns that must hold numbers when present (empty cells become NaN).
NUMERIC_COLUMNS = ("params", "non_embedding_params", "tokens", "flops", "flops_exact", "budget", "epochs",
                   *LOSS_COLUMNS, *METRIC_COLUMNS)
#: Columns that hold text even when every value looks like a number (a run id "7" stays "7").
TEXT_COLUMNS = ("run_id", "arm", "model", "point_id", "kind", "status")
#: Cells that mean "no value", in any column: pandas' defaults, so a table reads as it always has.
NA_CELLS = frozenset(("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                      "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"))
_TRUE, _FALSE = frozenset(("True", "TRUE", "true")), frozenset(("False", "FALSE", "false"))


def load_table(path, *, only_done: bool = True) -> Table:
    """Read and validate a results table; numpy columns (:class:`analysis.table.Table`).

    ``path`` is a CSV file, a directory holding ``results.csv``, or a directory holding
    ``runs/*/result.json`` (flat dicts with the CSV's column names; a wsd run gives one row per
    cooldown branch and one for its end, as results.csv does). A table without ``point_id`` (one row
    per run, written before points) gets the run ids; duplicate point ids are an error. Rows whose ``status`` is not
    ``done`` are dropped when ``only_done``. Numeric columns are parsed (empty -> NaN); a
    non-numeric value, a missing required column or a non-positive params/tokens raises
    :class:`ConfigError` naming the file, the column and the value. ``flops`` is filled with
    6 * params * tokens where absent. Other columns hold numbers when every value is one, else text.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "results.csv").is_file():
            path = path / "results.csv"
        elif (path / "runs").is_dir():
            return _validate(*_read_runs_dir(path / "runs"), str(path / "runs"), only_done)
        elif any(path.glob("*/result.json")):
            return _validate(*_read_runs_dir(path), str(path), only_done)
        else:
            raise ConfigError("directory holds neither results.csv nor runs/*/result.json", source=str(path))
    if not path.is_file():
        raise ConfigError("results file not found", source=str(path))
    header, rows = _read_csv(path)
    return _validate(header, rows, None, str(path), only_done)


def load_results(path, *, only_done: bool = True):
    """:func:`load_table` as a pandas DataFrame (``attrs["source"]``: the file it was read from)."""
    return load_table(path, only_done=only_done).to_pandas()


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    lines, line_nos = [], []
    text = read_text(path, what="results file")  # not UTF-8: the error names the line and the byte offset
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        for r in reader:
            if r and not (len(r) == 1 and not r[0].strip()):  # blank lines are skipped
                lines.append(r)
                line_nos.append(reader.line_num)
    except csv.Error as exc:
        raise ConfigError(f"cannot parse CSV: {exc}", source=str(path)) from None
    if not lines:
        raise ConfigError("cannot parse CSV: the file is empty (no header row)", source=str(path))
    header, rows = lines[0], lines[1:]
    n = len(header)
    for i, r in enumerate(rows):
        if len(r) > n:
            if any(c.strip() for c in r[n:]):
                raise ConfigError(f"cannot parse CSV: line {line_nos[i + 1]} has {len(r)} fields, the header {n}",
                                  source=str(path))
            del r[n:]  # empty trailing fields (a trailing comma)
        elif len(r) < n:
            r += [""] * (n - len(r))  # a short row: the missing cells are empty
    return header, rows


def _cell(v) -> str:
    """A result.json value as results.csv holds it (sweeps.local.write_results)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return repr(v) if isinstance(v, float) else str(v)


def _read_runs_dir(runs: Path) -> tuple[list[str], list[list[str]], list[str]]:
    # imported here: scaling.points brings scaling.rundir and scaling.spec, which a CSV does not need
    from scaling.points import point_rows

    records, sources = [], []
    for p in sorted(runs.glob("*/result.json")):
        try:
            rec = json.loads(read_text(p))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not valid JSON ({exc.msg} at line {exc.lineno})", source=str(p)) from None
        if not isinstance(rec, dict):
            raise ConfigError("result.json must hold a JSON object", source=str(p), value=type(rec).__name__)
        rec.setdefault("run_id", p.parent.name)
        for r in point_rows(rec):
            records.append(r)
            sources.append(str(p))
    if not records:
        raise ConfigError("no runs/*/result.json files found", source=str(runs))
    header = list(dict.fromkeys(k for r in records for k in r))
    return header, [[_cell(r.get(k)) for k in header] for r in records], sources


def _number(text: str) -> float:
    """A cell as a float: NaN for a missing value; ValueError for anything but a decimal number
    (Python's float() would also take "1_000")."""
    if text in NA_CELLS:
        return math.nan
    if "_" in text:
        raise ValueError(text)
    return float(text)


def _infer(cells: list[str]) -> np.ndarray:
    """A column no rule names: integers, floats (NaN where missing) or booleans when every value
    is one, else text (None where missing): the types pandas' CSV reader would give it."""
    if cells and not any(c in NA_CELLS for c in cells):  # pandas: integers and booleans only without gaps
        if all(c in _TRUE or c in _FALSE for c in cells):
            return np.array([c in _TRUE for c in cells])
        try:
            if not any("_" in c for c in cells):
                return np.array([int(c) for c in cells], dtype=np.int64)
        except (ValueError, OverflowError):
            pass
    try:
        return np.array([_number(c) for c in cells], dtype=float)
    except ValueError:
        return _text(cells)


def _text(cells: list[str]) -> np.ndarray:
    """A text column: the cells, None where missing."""
    return _objects([None if c in NA_CELLS else c for c in cells])


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)  # np.array would make a fixed-width str array
    out[:] = values
    return out


def _validate(header: list[str], rows: list[list[str]], sources: list[str] | None, source: str,
              only_done: bool) -> Table:
    """The rules every table follows, whatever it was read from. ``rows``: cells as text, one
    list per row; ``sources``: the file of each row when they differ (run directories)."""
    names = [str(c).strip() for c in header]
    names = [n or f"Unnamed: {j}" for j, n in enumerate(names)]  # pandas' name for a column without one
    dup = next((n for j, n in enumerate(names) if n in names[:j]), None)
    if dup is not None:
        raise ConfigError("the column appears twice in the header", source=source, field=dup)
    for col in ("params", "tokens"):
        if col not in names:
            raise ConfigError(f"required column '{col}' is missing (columns: {', '.join(names)})",
                              source=source, field=col)
    if not any(c in names for c in LOSS_COLUMNS):
        raise ConfigError(f"no loss column: need one of {', '.join(LOSS_COLUMNS)}", source=source, field="loss")
    cells = {n: [r[j] for r in rows] for j, n in enumerate(names)}
    keep = list(range(len(rows)))  # the data row (from 1: i + 1) of each kept row, for messages
    if only_done and "status" in cells:
        status = [None if c in NA_CELLS else c.strip().lower() for c in cells["status"]]
        keep = [i for i, s in enumerate(status) if s == "done"]
        if not keep:
            counts: dict = {}
            for s in status:
                if s is not None:
                    counts[s] = counts.get(s, 0) + 1
            listed = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "no rows"
            raise ConfigError(f"no run has status 'done' ({listed}): nothing to fit", source=source, field="status")
        cells = {n: [col[i] for i in keep] for n, col in cells.items()}
    if not keep:
        raise ConfigError("the results table has no rows", source=source)
    run_ids = cells.get("run_id")

    def where(k: int) -> tuple[str, str]:  # (file, "(run id)" or "(row n)") of kept row k
        rid = f" (run {run_ids[k]})" if run_ids is not None else f" (row {keep[k] + 1})"
        return (sources[keep[k]] if sources else source), rid

    cols: dict = {}
    for n, col in cells.items():
        if n in NUMERIC_COLUMNS:
            values = np.empty(len(col))
            for k, c in enumerate(col):
                try:
                    values[k] = _number(c)
                except ValueError:
                    file, rid = where(k)
                    raise ConfigError(f"non-numeric value{rid}", source=file, field=n, value=c) from None
            cols[n] = values
        elif n in TEXT_COLUMNS:
            cols[n] = _text(col)
        else:
            cols[n] = _infer(col)
    for n in ("params", "tokens"):
        bad = np.flatnonzero(~(cols[n] > 0))
        if bad.size:
            file, rid = where(int(bad[0]))
            raise ConfigError(f"must be a positive number{rid}", source=file, field=n, value=float(cols[n][bad[0]]))
    six_nd = flops_6nd(cols["params"], cols["tokens"])
    cols["flops"] = np.where(np.isnan(cols["flops"]), six_nd, cols["flops"]) if "flops" in cols else six_nd
    if "arm" in cols:
        missing = [k for k, a in enumerate(cols["arm"]) if a is None or not a.strip()]
        if missing:
            file, rid = where(missing[0])
            raise ConfigError(f"empty arm{rid}: every row of a table with an 'arm' column needs one",
                              source=file, field="arm")
        cols["arm"] = _objects([a.strip() for a in cols["arm"]])
    _point_ids(cols, source)
    return Table(cols, {"source": source})


def _point_ids(cols: dict, source: str) -> None:
    """Fill ``point_id`` (and ``kind``) in an older one-row-per-run table; refuse duplicates, which
    every per-point step (dropped-row notes, figures, the comparison of arms) relies on not having."""
    n = len(cols["params"])
    run_ids = [r if r is not None else f"row {k + 1}" for k, r in enumerate(cols.get("run_id", [None] * n))]
    if "point_id" not in cols:
        seen: dict = {}
        ids = []
        for i in run_ids:
            seen[i] = seen.get(i, 0) + 1  # a run listed twice (hand-made tables): the second is "id#2"
            ids.append(i if seen[i] == 1 else f"{i}#{seen[i]}")
    else:  # a missing point id is its run's (the run's final point)
        ids = [(p if p is not None and p.strip() else run_ids[k]).strip() for k, p in enumerate(cols["point_id"])]
    cols["point_id"] = _objects(ids)
    if "kind" not in cols:
        cols["kind"] = _objects(["final"] * n)
    seen_ids: set = set()
    for p in ids:
        if p in seen_ids:
            raise ConfigError("duplicate point id: each row must be one point", source=source, field="point_id", value=p)
        seen_ids.add(p)
