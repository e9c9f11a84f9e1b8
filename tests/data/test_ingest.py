"""Validation, rejected list, split and statistics of pipeline.data.ingest."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from pipeline.cli import UserError
from pipeline.data.ingest import (
    REJECTED_COLUMNS,
    ingest,
    path_formatter,
    split_objects,
    validate_manifest,
)
from pipeline.data.manifest import COLUMNS, has_target, template_list
from tests.datasets import (
    BOX,
    FRAME_SIZE,
    FRAMES,
    TEMPLATE_SIZE,
    make_coco_dataset,
    make_cpn_dataset,
    make_refdet_dataset,
    truncate,
    write_image,
)

# -- bad inputs: each case breaks one thing and says where and what the report must name ---------

Case = Callable[[Path], tuple[str, int | None, str]]


def _label(root: Path, rel: str, text: str) -> tuple[str, int | None]:
    (root / rel).write_text(text)
    return rel, None


def truncated_frame(root: Path):
    truncate(root / "train/search/images/Class_1_frame_1.jpg")
    return "train/search/images/Class_1_frame_1.jpg", None, "image file is truncated"


def unreadable_template(root: Path):
    (root / "train/templates/Class_2_ref_1.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    return "train/templates/Class_2_ref_1.jpg", None, "cannot read image"


def wrong_field_count(root: Path):
    (root / "train/search/labels/Class_1_frame_0.txt").write_text("0 0.5 0.5 0.1\n")
    return "train/search/labels/Class_1_frame_0.txt", 1, "expected 5 numbers, got 4"


def not_a_number_on_line_2(root: Path):
    (root / "val/search/labels/Class_4_frame_10.txt").write_text("\n0 0.5 half 0.1 0.1\n")
    return "val/search/labels/Class_4_frame_10.txt", 2, "not a number"


def non_integer_class(root: Path):
    (root / "train/search/labels/Class_1_frame_0.txt").write_text("0.5 0.5 0.5 0.1 0.1\n")
    return "train/search/labels/Class_1_frame_0.txt", 1, "class 0.5 is not an integer"


def zero_width_box(root: Path):
    (root / "train/search/labels/Class_3_frame_1.txt").write_text("0 0.5 0.5 0 0.1\n")
    return "train/search/labels/Class_3_frame_1.txt", 1, "empty box"


def box_outside(root: Path):
    (root / "train/search/labels/Class_3_frame_1.txt").write_text("0 0.95 0.5 0.2 0.1\n")
    return "train/search/labels/Class_3_frame_1.txt", 1, "outside the 128x96 image"


def object_without_templates(root: Path):
    for path in (root / "train/templates").glob("Class_3_ref_*"):
        path.unlink()
    return "train/search/images/Class_3_frame_0.jpg", None, "object 3 has no templates"


def duplicate_stem(root: Path):
    write_image(root / "train/search/images/Class_1_frame_0.png")
    return "train/search/images/Class_1_frame_0.jpg", None, "duplicate name: Class_1_frame_0.jpg and Class_1_frame_0.png"


def object_in_both_splits(root: Path):
    for sub, ext in (("images", "jpg"), ("labels", "txt")):
        shutil.copy(root / f"train/search/{sub}/Class_1_frame_0.{ext}", root / f"val/search/{sub}/Class_1_frame_50.{ext}")
    return "val/search/images/Class_1_frame_50.jpg", None, "object 1 is also in split train"


def missing_label(root: Path):
    (root / "val/search/labels/Class_5_frame_11.txt").unlink()
    return "val/search/images/Class_5_frame_11.jpg", None, "no label file"


def orphan_label(root: Path):
    (root / "val/search/labels/Class_5_frame_99.txt").write_text("")
    return "val/search/labels/Class_5_frame_99.txt", None, "label file without an image"


def misnamed_frame(root: Path):
    write_image(root / "train/search/images/frame_7.jpg")
    return "train/search/images/frame_7.jpg", None, "unexpected frame name"


def stray_file(root: Path):
    (root / "train/templates/notes.txt").write_text("hi")
    return "train/templates/notes.txt", None, "unexpected file"


CPN_CASES: list[Case] = [
    truncated_frame,
    unreadable_template,
    wrong_field_count,
    not_a_number_on_line_2,
    non_integer_class,
    zero_width_box,
    box_outside,
    object_without_templates,
    duplicate_stem,
    object_in_both_splits,
    missing_label,
    orphan_label,
    misnamed_frame,
    stray_file,
]


def refdet_negative_box(root: Path):
    (root / "train/search/labels/obj1_frame_1.txt").write_text("50 20 30 40\n")
    return "train/search/labels/obj1_frame_1.txt", 1, "empty box"


def refdet_box_outside(root: Path):
    (root / "val/search/labels/obj4_frame_0.txt").write_text("10 10 50 100\n")
    return "val/search/labels/obj4_frame_0.txt", 1, "outside the 128x96 image"


def refdet_empty_template_folder(root: Path):
    shutil.rmtree(root / "templates/obj2")
    (root / "templates/obj2").mkdir()
    return "templates/obj2", None, "object obj2 has no templates"


def refdet_frames_without_templates(root: Path):
    shutil.rmtree(root / "templates/obj2")
    return "train/search/images/obj2_frame_0.jpg", None, "object obj2 has no templates"


def refdet_duplicate_template(root: Path):
    write_image(root / "templates/obj1/photo_1.png", TEMPLATE_SIZE)
    return "templates/obj1/photo_1.jpg", None, "duplicate name"


REFDET_CASES: list[Case] = [
    refdet_negative_box,
    refdet_box_outside,
    refdet_empty_template_folder,
    refdet_frames_without_templates,
    refdet_duplicate_template,
]


def coco_empty_box(root: Path):
    import json

    path = root / "annotations/instances_train.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["bbox"][3] = 0
    path.write_text(json.dumps(doc))
    return "annotations/instances_train.json", None, "annotation 1: empty box"


def coco_truncated_frame(root: Path):
    # the smallest main box of category 1 (train file): a frame, not a reference
    truncate(root / "images/train/img_0005.jpg")
    return "images/train/img_0005.jpg", None, "image file is truncated"


def coco_box_outside(root: Path):
    import json

    path = root / "annotations/instances_train.json"
    doc = json.loads(path.read_text())
    main = next(a for a in doc["annotations"] if a["image_id"] == 5 and a["bbox"][0] == 10.0)
    main["bbox"] = [100.0, 8.0, 60.0, 30.0]  # ends at x=160 in a 128 wide image
    path.write_text(json.dumps(doc))
    return "annotations/instances_train.json", None, f"annotation {main['id']}: box"


COCO_CASES: list[Case] = [coco_empty_box, coco_truncated_frame, coco_box_outside]

ALL_CASES = (
    [("cpn", c) for c in CPN_CASES] + [("refdet", c) for c in REFDET_CASES] + [("coco", c) for c in COCO_CASES]
)
BUILDERS = {"cpn": make_cpn_dataset, "refdet": make_refdet_dataset, "coco": make_coco_dataset}
COCO_SPLIT_SEED = 0  # with 5 categories and val_fraction 0.4, category 1 lands in train


def _ingest(root: Path, tmp_path: Path, **kwargs):
    kwargs.setdefault("val_fraction", 0.4)
    return ingest(root, crop_dir=tmp_path / "crops", **kwargs)


@pytest.mark.parametrize(("fmt", "case"), ALL_CASES, ids=[f"{f}-{c.__name__}" for f, c in ALL_CASES])
def test_bad_input_raises_naming_file_and_line(tmp_path: Path, fmt: str, case: Case):
    root = BUILDERS[fmt](tmp_path / "data")
    rel, line, reason = case(root)
    with pytest.raises(UserError) as err:
        _ingest(root, tmp_path, on_error="raise")
    message = str(err.value)
    where = str(root / rel) + (f":{line}: " if line else ": ")
    assert where in message and reason in message
    assert "on_error: skip" in message  # the way out is named too


@pytest.mark.parametrize(("fmt", "case"), ALL_CASES, ids=[f"{f}-{c.__name__}" for f, c in ALL_CASES])
def test_bad_input_skipped_and_listed(tmp_path: Path, fmt: str, case: Case, caplog):
    root = BUILDERS[fmt](tmp_path / "data")
    rel, line, reason = case(root)
    with caplog.at_level(logging.WARNING):
        result = _ingest(root, tmp_path, on_error="skip")
    rejected = result.rejected
    assert list(rejected.columns) == REJECTED_COLUMNS
    rows = rejected[rejected["file"] == str(root / rel)]
    assert len(rows) >= 1, rejected.to_string()
    row = rows.iloc[0]
    assert (pd.isna(row["line"]) if line is None else row["line"] == line)
    assert reason in row["reason"]
    assert result.stats["rejected"] == len(rejected)
    assert f"{len(rejected)} bad inputs skipped" in caplog.text
    # what was rejected is not in the manifest, and the rest is
    assert str(root / rel) not in set(result.manifest["image"])
    assert len(result.manifest) > 0
    validate_manifest(result.manifest)


def test_skip_lists_every_bad_input(cpn_root: Path, tmp_path: Path):
    expected = {str(cpn_root / c(cpn_root)[0]) for c in (truncated_frame, wrong_field_count, box_outside, orphan_label)}
    result = _ingest(cpn_root, tmp_path, on_error="skip")
    assert set(result.rejected["file"]) == expected
    assert len(result.manifest) == 25 - 3


def test_unusable_templates_reject_their_frames(cpn_root: Path, tmp_path: Path):
    for k in (1, 2):
        truncate(cpn_root / f"val/templates/Class_5_ref_{k}.jpg")
    result = _ingest(cpn_root, tmp_path, on_error="skip")
    reasons = dict(zip(result.rejected["file"], result.rejected["reason"]))
    assert len(reasons) == 2 + len(FRAMES)
    assert reasons[str(cpn_root / "val/search/images/Class_5_frame_0.jpg")] == "object 5 has no usable templates"
    assert "5" not in set(result.manifest["object_id"])


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_missing_source_and_mixed_formats_always_stop(tmp_path: Path, on_error: str):
    with pytest.raises(UserError, match="does not exist"):
        _ingest(tmp_path / "nope", tmp_path, on_error=on_error)
    root = make_cpn_dataset(tmp_path / "mixed")
    make_coco_dataset(root, categories=(1,), images_per_category=2)
    with pytest.raises(UserError, match=r"mixed data formats, found cpn .* and coco"):
        _ingest(root, tmp_path, on_error=on_error)


def test_nothing_usable_is_an_error(tmp_path: Path):
    root = make_cpn_dataset(tmp_path / "d", train=("1",), val=(), frames=(0,))
    truncate(root / "train/search/images/Class_1_frame_0.jpg")
    with pytest.raises(UserError, match="no usable frames"):
        _ingest(root, tmp_path, on_error="skip")


# -- the manifest ---------------------------------------------------------------------------------


def test_cpn_manifest(cpn_root: Path, tmp_path: Path):
    result = _ingest(cpn_root, tmp_path)
    m = result.manifest
    assert result.format == "cpn" and list(m.columns) == COLUMNS and len(m) == 25
    assert result.rejected.empty and list(result.rejected.columns) == REJECTED_COLUMNS
    assert (m["width"] == FRAME_SIZE[0]).all() and (m["height"] == FRAME_SIZE[1]).all()
    target = m[has_target(m)]
    assert len(target) == 20 and set(m[~has_target(m)]["frame_index"]) == {2}
    for col, value in zip(["x1", "y1", "x2", "y2"], BOX):
        assert target[col].tolist() == pytest.approx([value] * 20, abs=1e-3)
    row = m[m["image"] == str(cpn_root / "val/search/images/Class_4_frame_11.jpg")].iloc[0]
    assert (row["split"], row["object_id"], row["sequence_id"], row["frame_index"]) == ("val", "4", "4_s1", 11)
    assert template_list(row["templates"]) == [str(cpn_root / f"val/templates/Class_4_ref_{k}.jpg") for k in (1, 2)]
    assert list(m["split"]) == ["train"] * 15 + ["val"] * 10


def test_refdet_manifest_and_relative_paths(refdet_root: Path, tmp_path: Path):
    result = _ingest(refdet_root, tmp_path, path_str=path_formatter(tmp_path))
    m = result.manifest
    assert result.format == "refdet" and len(m) == 25
    assert m["image"].str.startswith("refdet/").all()
    assert m.loc[has_target(m), ["x1", "y1", "x2", "y2"]].drop_duplicates().values.tolist() == [list(BOX)]
    assert sorted(m[m["split"] == "val"]["object_id"].unique()) == ["obj4", "obj5"]


def test_coco_manifest(coco_root: Path, tmp_path: Path):
    result = _ingest(coco_root, tmp_path, val_fraction=0.4, seed=COCO_SPLIT_SEED)
    m = result.manifest
    assert result.format == "coco" and len(m) == 5 * 2  # 5 images per category, 3 used as references
    assert m.groupby("split")["object_id"].nunique().to_dict() == {"train": 3, "val": 2}
    for _, row in m.iterrows():
        refs = template_list(row["templates"])
        assert len(refs) == 3 and all(Path(p).is_relative_to(tmp_path / "crops") for p in refs)
        assert row["split"] in Path(row["image"]).parent.name  # frames from the split's own file
    assert has_target(m).all()


def test_validate_manifest_catches_a_sequence_in_both_splits(cpn_root: Path, tmp_path: Path):
    m = _ingest(cpn_root, tmp_path).manifest.copy()
    m.loc[0, "split"] = "val"
    with pytest.raises(AssertionError, match="in both splits"):
        validate_manifest(m)


# -- split ----------------------------------------------------------------------------------------


def test_split_objects_rules():
    assert split_objects(["a"], 0.5, 0) == {"a": "train"}
    for seed in range(20):
        two = split_objects(["a", "b"], 0.01, seed)
        assert sorted(two.values()) == ["train", "val"]
    assert sorted(split_objects("abc", 0.99, 0).values()) == ["train", "val", "val"]
    ids = [str(i) for i in range(10)]
    assert split_objects(ids, 0.2, 3) == split_objects(list(reversed(ids)), 0.2, 3)
    assert list(split_objects(ids, 0.2, 3).values()).count("val") == 2


def test_split_by_object_identity_when_data_has_none(tmp_path: Path):
    objects = tuple(str(i) for i in range(10))
    root = make_cpn_dataset(tmp_path / "d", train=objects, val=(), split=False)
    a = _ingest(root, tmp_path, val_fraction=0.3, seed=1).manifest
    b = _ingest(root, tmp_path, val_fraction=0.3, seed=1).manifest
    c = _ingest(root, tmp_path, val_fraction=0.3, seed=2).manifest
    pd.testing.assert_frame_equal(a, b)  # deterministic
    assert a.groupby("object_id")["split"].nunique().max() == 1  # no object in both splits
    assert a.groupby("sequence_id")["split"].nunique().max() == 1
    assert a.groupby("split")["object_id"].nunique().to_dict() == {"train": 7, "val": 3}
    assert set(a[a.split == "val"]["object_id"]) != set(c[c.split == "val"]["object_id"])


def test_data_split_is_kept(cpn_root: Path, tmp_path: Path):
    m = _ingest(cpn_root, tmp_path, val_fraction=0.9, seed=5).manifest
    assert sorted(m[m["split"] == "val"]["object_id"].unique()) == ["4", "5"]


# -- stats ----------------------------------------------------------------------------------------


def test_stats(cpn_root: Path, tmp_path: Path):
    stats = _ingest(cpn_root, tmp_path).stats
    assert stats["rejected"] == 0
    assert stats["train"] == {
        "objects": 3,
        "sequences": 6,
        "frames": 15,
        "frames_without_target": 3,
        "templates": 6,
        "templates_per_object_min": 2,
        "templates_per_object_mean": 2.0,
        "templates_per_object_max": 2,
        "box_long_side_lt16": 0,
        "box_long_side_16_32": 0,
        "box_long_side_32_64": 12,
        "box_long_side_64_128": 0,
        "box_long_side_ge128": 0,
    }
    assert (stats["val"]["objects"], stats["val"]["frames"], stats["val"]["box_long_side_32_64"]) == (2, 10, 8)


def test_stats_box_histogram_bins(tmp_path: Path):
    root = make_refdet_dataset(tmp_path / "d", train=("1",), val=(), frames=(0, 1, 2, 3, 4, 5), absent=())
    labels = root / "train/search/labels"
    # long sides 15.9, 16, 40, 64, 127, 128 -> one in <16, 16-32, 32-64 ... the edges go up
    for n, (w, h) in enumerate([(15.9, 4), (16, 3), (10, 40), (64, 2), (127, 5), (128, 90)]):
        (labels / f"obj1_frame_{n}.txt").write_text(f"0 0 {w} {h}\n")
    stats = _ingest(root, tmp_path).stats["train"]
    bins = {k: v for k, v in stats.items() if k.startswith("box_long_side")}
    assert bins == {
        "box_long_side_lt16": 1,
        "box_long_side_16_32": 1,
        "box_long_side_32_64": 1,
        "box_long_side_64_128": 2,
        "box_long_side_ge128": 1,
    }
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in stats.values())


def test_empty_split_stats_are_zero(tmp_path: Path):
    root = make_cpn_dataset(tmp_path / "d", train=("1",), val=())
    shutil.rmtree(root / "val", ignore_errors=True)
    stats = _ingest(root, tmp_path).stats
    assert stats["val"]["frames"] == 0 and stats["val"]["templates_per_object_mean"] == 0.0


# -- paths ----------------------------------------------------------------------------------------


def test_path_formatter(tmp_path: Path):
    fmt = path_formatter(tmp_path / "repo", {tmp_path / "repo/data/.stage": tmp_path / "repo/data/prepared"})
    assert fmt(tmp_path / "repo/raw/a.jpg") == "raw/a.jpg"
    assert fmt(tmp_path / "repo/data/.stage/demo/b.jpg") == "data/prepared/demo/b.jpg"
    assert fmt(tmp_path / "elsewhere/c.jpg") == str(tmp_path / "elsewhere/c.jpg")
