"""Format readers and ``auto`` detection, on real files written by tests/datasets.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from pipeline.cli import UserError
from pipeline.data.formats import detect_format, format_markers, read_source
from pipeline.data.formats.coco import MAX_REFERENCES, read_coco
from pipeline.data.formats.common import read_box, sequence_numbers
from pipeline.data.formats.cpn import read_cpn
from pipeline.data.formats.refdet import read_refdet
from tests.datasets import BOX, FRAME_SIZE, FRAMES, coco_box, make_coco_dataset, make_cpn_dataset, make_refdet_dataset


def _by_name(frames):
    return {f.image.name: f for f in frames}


def all_train(ids: list[str]) -> dict[str, str]:
    return {i: "train" for i in ids}


# -- shared helpers -------------------------------------------------------------------------------


def test_sequence_numbers_split_at_gaps():
    assert sequence_numbers([11, 0, 2, 1, 10, 1000]) == {0: 0, 1: 0, 2: 0, 10: 1, 11: 1, 1000: 2}


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("0 0.5 0.5 0.1\n", 1, "expected 5 numbers, got 4"),
        ("0 0.5 abc 0.1 0.1\n", 1, "not a number"),
        ("\n\n0 0.5 0.5 0.1 nan\n", 3, "not a finite number"),
        ("0 0.5 0.5 0.1 0.1\n0 0.2 0.2 0.1 0.1\n", 2, "more than one box"),
    ],
)
def test_read_box_problems_name_the_line(tmp_path: Path, text, line, reason):
    label = tmp_path / "x.txt"
    label.write_text(text)
    values, got_line, problem = read_box(label, 5)
    assert values is None and got_line == line
    assert problem is not None and problem.file == label and problem.line == line and reason in problem.reason


def test_read_box_empty_file_means_absent(tmp_path: Path):
    label = tmp_path / "x.txt"
    label.write_text("\n  \n")
    assert read_box(label, 4) == (None, None, None)


# -- cpn ------------------------------------------------------------------------------------------


def test_read_cpn(cpn_root: Path):
    result = read_cpn(cpn_root)
    assert result.problems == []
    assert sorted(result.templates) == ["1", "2", "3", "4", "5"]
    assert [p.name for p in result.templates["2"]] == ["Class_2_ref_1.jpg", "Class_2_ref_2.jpg"]
    assert len(result.frames) == 5 * 5
    frames = _by_name(result.frames)
    f = frames["Class_4_frame_11.jpg"]
    assert (f.split, f.object_id, f.sequence_id, f.frame_index, f.normalized) == ("val", "4", "4_s1", 11, True)
    w, h = FRAME_SIZE
    assert f.box == pytest.approx((BOX[0] / w, BOX[1] / h, BOX[2] / w, BOX[3] / h), abs=1e-6)
    assert frames["Class_1_frame_2.jpg"].box is None
    assert frames["Class_1_frame_0.jpg"].sequence_id == frames["Class_1_frame_2.jpg"].sequence_id == "1_s0"


def test_read_cpn_without_split(tmp_path: Path):
    root = make_cpn_dataset(tmp_path / "d", split=False)
    result = read_cpn(root)
    assert result.problems == [] and len(result.frames) == 25
    assert {f.split for f in result.frames} == {None}


def test_read_cpn_zero_padded_demo_numbers(tmp_path: Path):
    root = make_cpn_dataset(tmp_path / "d", train=("7",), val=(), frames=(), templates=1)
    images, labels = root / "train/search/images", root / "train/search/labels"
    for n in ("000000", "000001", "001000"):
        shutil.copy(root / "train/templates/Class_7_ref_1.jpg", images / f"Class_7_frame_{n}.jpg")
        (labels / f"Class_7_frame_{n}.txt").write_text("")
    seqs = {f.frame_index: f.sequence_id for f in read_cpn(root).frames}
    assert seqs == {0: "7_s0", 1: "7_s0", 1000: "7_s1"}


def test_read_cpn_object_in_both_splits_is_a_problem(cpn_root: Path):
    shutil.copy(cpn_root / "val/templates/Class_4_ref_1.jpg", cpn_root / "train/templates/Class_4_ref_1.jpg")
    result = read_cpn(cpn_root)
    # the train copy wins; every val file of object 4 is reported and none is kept
    assert [p.relative_to(cpn_root).as_posix() for p in result.templates["4"]] == ["train/templates/Class_4_ref_1.jpg"]
    assert not [f for f in result.frames if f.object_id == "4"]
    reported = sorted(p.file.relative_to(cpn_root).as_posix() for p in result.problems)
    expected = ["val/templates/Class_4_ref_1.jpg", "val/templates/Class_4_ref_2.jpg"]
    expected += [f"val/search/images/Class_4_frame_{n}.jpg" for n in FRAMES]
    assert reported == sorted(expected)
    assert {p.reason for p in result.problems} == {"object 4 is also in split train"}


def test_read_cpn_missing_folder_is_a_layout_error(cpn_root: Path):
    shutil.rmtree(cpn_root / "val/search/labels")
    with pytest.raises(UserError, match=r"val/search/labels: missing folder"):
        read_cpn(cpn_root)


# -- refdet ---------------------------------------------------------------------------------------


def test_read_refdet(refdet_root: Path):
    result = read_refdet(refdet_root)
    assert result.problems == []
    assert sorted(result.templates) == [f"obj{i}" for i in range(1, 6)]
    assert len(result.frames) == 25
    f = _by_name(result.frames)["obj5_frame_10.jpg"]
    assert (f.split, f.object_id, f.sequence_id, f.frame_index, f.normalized) == ("val", "obj5", "obj5_s1", 10, False)
    assert f.box == BOX


def test_read_refdet_object_in_both_splits_is_a_problem(refdet_root: Path):
    for ext in ("images", "labels"):
        src = next((refdet_root / "train/search" / ext).glob("obj1_frame_0.*"))
        shutil.copy(src, refdet_root / "val/search" / ext / src.name.replace("_0.", "_50."))
    result = read_refdet(refdet_root)
    assert [(p.file.name, p.reason) for p in result.problems] == [("obj1_frame_50.jpg", "object obj1 is also in split train")]


def test_read_refdet_empty_template_folder(refdet_root: Path):
    shutil.rmtree(refdet_root / "templates/obj2")
    (refdet_root / "templates/obj2").mkdir()
    result = read_refdet(refdet_root)
    assert "obj2" not in result.templates
    assert [(p.file.name, p.reason) for p in result.problems] == [("obj2", "object obj2 has no templates")]


# -- coco -----------------------------------------------------------------------------------------


def test_read_coco_two_files(coco_root: Path, tmp_path: Path):
    split_of = {"1": "train", "2": "train", "3": "train", "4": "val", "5": "val"}
    crops = tmp_path / "crops"
    result = read_coco(coco_root, crops, lambda ids: {i: split_of[i] for i in ids})
    assert result.problems == []
    assert sorted(result.templates) == ["1", "2", "3", "4", "5"]
    for obj, refs in result.templates.items():
        assert len(refs) == MAX_REFERENCES
        assert all(p.is_file() and p.is_relative_to(crops / obj) for p in refs)
        frames = [f for f in result.frames if f.object_id == obj]
        assert len(frames) == 5 - MAX_REFERENCES  # the rest of the category's images in its split
        assert {f.split for f in frames} == {split_of[obj]}
        # references come from other images than the frames
        ref_images = {p.stem.split("_img")[1] for p in refs}
        assert not ref_images & {f.sequence_id.split("_img")[1] for f in frames}
        assert all(split_of[obj] in f.image.parent.name for f in frames)


def test_read_coco_references_are_largest_and_frames_use_largest_instance(tmp_path: Path):
    root = make_coco_dataset(tmp_path / "c", categories=(7,), images_per_category=5, splits=None)
    result = read_coco(root, tmp_path / "crops", all_train)
    refs = result.templates["7"]
    # images 1..3 have the largest main boxes (coco_box shrinks with the image index)
    assert [p.name for p in refs] == ["ref1_img1.jpg", "ref2_img2.jpg", "ref3_img3.jpg"]
    x, y, w, h = coco_box(0)
    with Image.open(refs[0]) as crop:
        assert w < crop.width <= w * 1.3 + 2 and h < crop.height <= h * 1.3 + 2
    frames = sorted(result.frames, key=lambda f: f.frame_index)
    assert [f.sequence_id for f in sorted(result.frames, key=lambda f: f.sequence_id)] == ["7_img4", "7_img5"]
    x, y, w, h = coco_box(3)
    assert _by_name(frames)["img_0004.jpg"].box == (x, y, x + w, y + h)
    assert {f.frame_index for f in frames} == {0}


def test_read_coco_keeps_one_frame_per_category(tmp_path: Path):
    root = make_coco_dataset(tmp_path / "c", categories=(1,), images_per_category=2, splits=None)
    result = read_coco(root, tmp_path / "crops", all_train)
    assert len(result.templates["1"]) == 1 and len(result.frames) == 1
    assert result.frames[0].image.name not in result.templates["1"][0].name


def test_read_coco_bad_annotations(tmp_path: Path):
    root = make_coco_dataset(tmp_path / "c", categories=(1,), images_per_category=4, splits=None)
    ann_file = root / "annotations/instances_all.json"
    doc = json.loads(ann_file.read_text())
    doc["annotations"][0]["bbox"] = [1, 2, 0, 5]
    doc["annotations"][3]["bbox"] = [1, "x", 3, 5]
    doc["annotations"].append({"id": 99, "image_id": 12345, "category_id": 1, "bbox": [0, 0, 5, 5]})
    ann_file.write_text(json.dumps(doc))
    result = read_coco(root, tmp_path / "crops", all_train)
    reasons = [(p.file.name, p.reason) for p in result.problems]
    assert reasons[0][0] == "instances_all.json" and "annotation 1: empty box" in reasons[0][1]
    assert "annotation 4: bbox must be 4 numbers" in reasons[1][1]
    assert "annotation 99: unknown image_id 12345" in reasons[2][1]


def test_read_coco_unreadable_reference_image_is_a_problem(tmp_path: Path):
    root = make_coco_dataset(tmp_path / "c", categories=(1,), images_per_category=5, splits=None)
    (root / "images/img_0001.jpg").write_bytes(b"not a jpeg")
    result = read_coco(root, tmp_path / "crops", all_train)
    assert [(p.file.name, "cannot read image" in p.reason) for p in result.problems] == [("img_0001.jpg", True)]
    assert [p.name for p in result.templates["1"]] == ["ref1_img2.jpg", "ref2_img3.jpg", "ref3_img4.jpg"]
    assert [f.image.name for f in result.frames] == ["img_0005.jpg"]


def test_read_coco_layout_errors(tmp_path: Path):
    with pytest.raises(UserError, match="no instances_"):
        read_coco(tmp_path, tmp_path / "crops", all_train)
    root = make_coco_dataset(tmp_path / "c", categories=(1,), images_per_category=2)
    shutil.rmtree(root / "images")
    with pytest.raises(UserError, match="no image folder"):
        read_coco(root, tmp_path / "crops", all_train)


# -- auto detection -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("builder", "fmt"), [(make_cpn_dataset, "cpn"), (make_refdet_dataset, "refdet"), (make_coco_dataset, "coco")]
)
def test_detect_format(tmp_path: Path, builder, fmt):
    assert detect_format(builder(tmp_path / "d")) == fmt


def test_detect_unsplit_layouts(tmp_path: Path):
    assert detect_format(make_cpn_dataset(tmp_path / "a", split=False)) == "cpn"
    assert detect_format(make_refdet_dataset(tmp_path / "b", split=False)) == "refdet"


def test_mixed_formats_name_both(cpn_root: Path, tmp_path: Path):
    make_refdet_dataset(cpn_root, train=("9",), val=())
    with pytest.raises(UserError, match="mixed data formats") as err:
        detect_format(cpn_root)
    assert "cpn (" in str(err.value) and "refdet (" in str(err.value)
    assert set(format_markers(cpn_root)) == {"cpn", "refdet"}


def test_unknown_layout(tmp_path: Path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(UserError, match="cannot detect the data format"):
        detect_format(tmp_path)


def test_read_source_missing_folder(tmp_path: Path):
    with pytest.raises(UserError, match="nowhere: data folder does not exist"):
        read_source(tmp_path / "nowhere", "auto", tmp_path / "crops", all_train)
