"""Reading back the CSV files the stages write, with ids as text.

pandas' defaults turn cells such as ``NA``, ``nan``, ``null``, ``None`` or ``N/A`` into missing
values and ``007`` into 7; both are valid object and sequence names, so every id column is read
as the exact text written. Only an empty cell of another column (an absent box, a metric with no
value) is a missing value.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd


def read_csv(path: str | Path, text_columns: Iterable[str]) -> pd.DataFrame:
    """The CSV at ``path``; ``text_columns`` as ``str`` exactly as written (empty = ``""``), empty
    cells of the other columns as NaN. pandas' errors pass through (``EmptyDataError`` etc.)."""
    text = list(text_columns)
    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(
        path,
        dtype={c: str for c in text},
        keep_default_na=False,
        na_values={c: [""] for c in header if c not in text},
    )
