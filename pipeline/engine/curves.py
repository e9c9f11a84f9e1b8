"""The training history as DVC plot tables: validation metrics only at the epochs that validated.

``train_curve.csv`` has one row per epoch, and its ``val_*`` cells are empty between validations
(``train.val_every``); a plot of it draws those gaps as drops to 0. ``val_curve.csv`` holds the
validated epochs only: ``epoch``, ``wall_minutes`` and the ``val_*`` columns, no empty cells.
"""

from __future__ import annotations

import pandas as pd

VAL_PREFIX = "val_"
KEEP = ("epoch", "wall_minutes")


def validation_rows(history: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``history`` (one per epoch) that hold validation metrics, with those columns."""
    val = [c for c in history.columns if c.startswith(VAL_PREFIX)]
    columns = [c for c in KEEP if c in history.columns] + val
    if not val:
        return pd.DataFrame(columns=columns)
    return history.loc[history[val].notna().any(axis=1), columns].reset_index(drop=True)
