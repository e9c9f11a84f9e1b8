"""The canonical manifest every format is turned into (``data/prepared/manifest.csv``).

One row per search frame:

============  ======  ===========================================================================
column        type    meaning
============  ======  ===========================================================================
split         str     ``train`` or ``val``
object_id     str     identity of the target object (templates are per object)
sequence_id   str     video/sequence the frame belongs to; never in both splits
frame_index   int     position of the frame in its sequence
image         str     path of the frame (relative to the repo root when inside it)
width,height  int     frame size in pixels
x1,y1,x2,y2   float   target box in pixels, ``x2 > x1``, ``y2 > y1``; all empty = target absent
templates     str     the object's reference photo paths, joined by ``|``
============  ======  ===========================================================================
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.tables import read_csv

COLUMNS = [
    "split",
    "object_id",
    "sequence_id",
    "frame_index",
    "image",
    "width",
    "height",
    "x1",
    "y1",
    "x2",
    "y2",
    "templates",
]
BOX = ["x1", "y1", "x2", "y2"]
TEMPLATE_SEP = "|"
SPLITS = ("train", "val")

#: Columns of ``data/templates/templates.csv`` written by ``resize_templates``.
TEMPLATE_COLUMNS = ["object_id", "index", "source", "path", "source_width", "source_height"]
#: Columns that hold names and paths: always text, ``NA`` or ``007`` included.
TEXT_COLUMNS = ("split", "object_id", "sequence_id", "image", "templates")
TEMPLATE_TEXT_COLUMNS = ("object_id", "source", "path")


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest written by ``prepare``; ids and paths stay text (:mod:`pipeline.tables`)."""
    frame = read_csv(path, TEXT_COLUMNS)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a needle manifest, missing columns {missing}")
    return frame


def read_templates(path: str | Path) -> pd.DataFrame:
    """Read ``templates.csv`` written by ``resize_templates``; ids and paths stay text."""
    return read_csv(path, TEMPLATE_TEXT_COLUMNS)


def has_target(frame: pd.DataFrame) -> pd.Series:
    """Boolean mask of rows whose frame contains the target."""
    return frame[BOX].notna().all(axis=1)


def template_list(value: str) -> list[str]:
    """Split the ``templates`` cell into paths."""
    return [p for p in str(value).split(TEMPLATE_SEP) if p]
