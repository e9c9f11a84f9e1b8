"""Ids that pandas would take for missing values (``NA``, ``null``, ...) stay names, end to end."""

from __future__ import annotations

import math

from pathlib import Path

from pipeline.config import DataConfig, TemplatesConfig
from pipeline.data.dataset import load_split
from pipeline.data.manifest import read_manifest, read_templates
from pipeline.paths import Paths
from pipeline.prepare import prepare
from pipeline.resize_templates import folder_name, resize_templates
from pipeline.tables import read_csv
from tests.datasets import make_cpn_dataset

# Each is a missing value to pandas' default reader; "007" would become 7 without a text dtype.
TRAIN_IDS = ("NA", "null", "<NA>", "007")
VAL_IDS = ("None", "nan")


def test_text_columns_keep_their_text_and_other_empty_cells_are_missing(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("object_id,x1,note\nNA,,N/A\nnan,1.5,\n,2,null\n")
    frame = read_csv(path, ("object_id", "note"))
    assert frame["object_id"].tolist() == ["NA", "nan", ""]
    assert frame["note"].tolist() == ["N/A", "", "null"]
    assert math.isnan(frame["x1"][0]) and frame["x1"].tolist()[1:] == [1.5, 2.0]


def test_object_ids_like_na_survive_prepare_resize_templates_and_loading(tmp_path):
    root = make_cpn_dataset(tmp_path / "raw", train=TRAIN_IDS, val=VAL_IDS)
    paths = Paths(tmp_path / "work")
    prepare(paths, DataConfig(source=str(root), format="cpn"))
    assert set(read_manifest(paths.manifest)["object_id"]) == {*TRAIN_IDS, *VAL_IDS}
    resize_templates(paths, TemplatesConfig(size=32, workers=1))
    templates = read_templates(paths.templates_manifest)
    assert sorted(set(templates["object_id"])) == sorted({*TRAIN_IDS, *VAL_IDS})

    samples = load_split(paths, None)
    by_object = {s.object_id: s for s in samples}
    assert set(by_object) == {*TRAIN_IDS, *VAL_IDS}
    for object_id, sample in by_object.items():  # each object with its own two resized photos
        assert [Path(t).parent.name for t in sample.templates] == [folder_name(object_id)] * 2
    train = {s.object_id for s in load_split(paths, "train")}
    assert train == set(TRAIN_IDS)
