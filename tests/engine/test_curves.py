"""The validation curve holds the validated epochs only, with no empty cells."""

import math

import pandas as pd

from pipeline.engine.curves import validation_rows


def test_only_validated_epochs_and_their_columns():
    history = pd.DataFrame([
        {"epoch": 0, "train_loss": 2.0, "wall_minutes": 0.5},
        {"epoch": 1, "train_loss": 1.5, "wall_minutes": 1.0, "val_AP50": 0.3, "val_fp_rate": 0.8},
        {"epoch": 2, "train_loss": 1.2, "wall_minutes": 1.5},
        {"epoch": 3, "train_loss": 1.0, "wall_minutes": 2.0, "val_AP50": 0.5, "val_fp_rate": 0.6},
    ])
    rows = validation_rows(history)
    assert list(rows.columns) == ["epoch", "wall_minutes", "val_AP50", "val_fp_rate"]
    assert rows["epoch"].tolist() == [1, 3] and not rows.isna().any().any()


def test_no_validation_yet_is_an_empty_table():
    rows = validation_rows(pd.DataFrame([{"epoch": 0, "train_loss": math.pi}]))
    assert rows.empty and list(rows.columns) == ["epoch"]
