"""The results table as numpy columns, for ``scaling fit``: importing pandas (and the pyarrow it
pulls in) costs about half a second, half of the command's one-second budget.

:class:`Table` offers the few operations the fitting code (analysis.study, analysis.compare) uses,
with pandas' spelling, so that code takes a Table or a pandas DataFrame alike:

- ``t.columns``, ``col in t`` and ``len(t)``;
- ``t[name]``: one column as a numpy array (floats for numbers, objects for text, None for a
  missing text);
- ``t[mask]``: the rows where a boolean array is true; ``t.take(positions)``: rows by position;
- ``t.attrs``: metadata (``source``: the file the table was read from).

``scaling report`` and ``scaling figures`` draw from :meth:`Table.to_pandas`. Tables are made by
:func:`analysis.load.load_table`, which owns the parsing and validation rules.
"""
from __future__ import annotations

import numpy as np


class Table:
    def __init__(self, columns: dict, attrs: dict | None = None, n_rows: int | None = None):
        self._cols = {str(k): np.asarray(v) for k, v in columns.items()}
        lengths = {len(v) for v in self._cols.values()}
        if n_rows is not None:
            lengths.add(n_rows)
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        self._n = lengths.pop() if lengths else 0
        self.attrs = dict(attrs or {})

    @property
    def columns(self) -> list[str]:
        return list(self._cols)

    @property
    def empty(self) -> bool:
        return self._n == 0

    def __len__(self) -> int:
        return self._n

    def __contains__(self, name) -> bool:
        return name in self._cols

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._cols[key]
        mask = np.asarray(key)
        if mask.dtype != bool or mask.shape != (self._n,):  # as pandas: t[...] selects rows by mask only
            raise TypeError(f"a Table takes a column name or a boolean mask of length {self._n}")
        return self.take(np.flatnonzero(mask))

    def take(self, positions) -> Table:
        idx = np.asarray(positions, dtype=np.intp)
        return Table({k: v[idx] for k, v in self._cols.items()}, self.attrs, n_rows=len(idx))

    def __repr__(self) -> str:
        return f"Table({self._n} rows: {', '.join(self._cols)})"

    def to_pandas(self):
        """The same table as a pandas DataFrame (a fresh RangeIndex; ``attrs`` copied)."""
        import pandas as pd

        df = pd.DataFrame(dict(self._cols), index=pd.RangeIndex(self._n))
        df.attrs.update(self.attrs)
        return df
