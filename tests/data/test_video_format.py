"""The ``video`` format (drone clips + annotations.json) on real mp4 files written with OpenCV."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.cli import UserError
from pipeline.config import DataConfig, DemoConfig
from pipeline.data.demo import generate_demo, video_id
from pipeline.data.formats import detect_format
from pipeline.data.formats.video import BadVideo, VideoFrames, read_video
from pipeline.data.ingest import ingest
from pipeline.data.manifest import has_target, read_manifest, template_list
from pipeline.paths import Paths
from pipeline.prepare import prepare
from tests.datasets import (
    demo_config,
    BOX,
    FRAME_SIZE,
    make_cpn_dataset,
    make_video_dataset,
    truncate,
    video_entry,
    write_video,
)


def _annotations(root: Path) -> Path:
    return root / "annotations" / "annotations.json"


def _rewrite(root: Path, entries: list) -> None:
    _annotations(root).write_text(json.dumps(entries))


def test_video_frames_reads_every_frame_and_counts(tmp_path):
    path = write_video(tmp_path / "v.mp4", 7)
    frames = VideoFrames(path, stride=3)
    got = [(n, bgr.shape) for n, bgr in frames]
    assert got == [(0, (96, 128, 3)), (3, (96, 128, 3)), (6, (96, 128, 3))]
    assert frames.count == 7 and frames.fps == pytest.approx(25.0)


def test_decoded_frames_match_the_video(tmp_path):
    root = make_video_dataset(tmp_path / "raw", videos=("a",), frames=4, present=(1,))
    read = read_video(root, tmp_path / "frames")
    assert [f.frame_index for f in read.frames] == [0, 1, 2, 3]
    direct = [bgr for _, bgr in VideoFrames(root / "samples/a/drone_video.mp4")]
    for i, frame in enumerate(read.frames):
        decoded = cv2.imread(str(frame.image)).astype(int)
        assert decoded.shape == direct[i].shape
        # a JPEG of its own video frame: far closer to it than to any other frame
        errors = [np.abs(decoded - bgr.astype(int)).mean() for bgr in direct]
        assert int(np.argmin(errors)) == i and errors[i] < 0.5 * min(e for j, e in enumerate(errors) if j != i)


def test_ingest_manifest_boxes_absent_frames_and_split_by_video(tmp_path):
    root = make_video_dataset(tmp_path / "raw", videos=("a", "b", "c", "d", "e"), frames=6, present=(1, 2, 3, 4))
    result = ingest(root, "auto", frames_dir=tmp_path / "frames", val_fraction=0.4)
    assert result.format == "video"
    m = result.manifest
    assert len(m) == 5 * 6
    assert (m["object_id"] == m["sequence_id"]).all()
    # frames without a box are "target absent", the others carry the annotated pixel box
    for _, row in m.iterrows():
        if row["frame_index"] in (1, 2, 3, 4):
            assert tuple(row[["x1", "y1", "x2", "y2"]]) == BOX
        else:
            assert not has_target(m.loc[[_]]).iloc[0]
    # split by video: every video wholly in one split, 2 of 5 in val
    assert m.groupby("sequence_id")["split"].nunique().max() == 1
    assert m.groupby("split")["sequence_id"].nunique().to_dict() == {"train": 3, "val": 2}
    # a video's object_images are its templates
    a = m[m["object_id"] == "a"].iloc[0]
    assert [Path(t).name for t in template_list(a["templates"])] == ["img_1.jpg", "img_2.jpg", "img_3.jpg"]
    assert (m["width"] == FRAME_SIZE[0]).all() and (m["height"] == FRAME_SIZE[1]).all()


def test_frame_stride_keeps_every_nth_video_frame(tmp_path):
    root = make_video_dataset(tmp_path / "raw", videos=("a", "b"), frames=7, present=(3, 4))
    m = ingest(root, "video", frames_dir=tmp_path / "frames", frame_stride=3).manifest
    assert m.groupby("sequence_id")["frame_index"].apply(list).to_dict() == {"a": [0, 3, 6], "b": [0, 3, 6]}
    assert has_target(m).tolist() == [False, True, False] * 2


def test_boxes_of_several_annotation_groups_are_merged(tmp_path):
    root = make_video_dataset(tmp_path / "raw", videos=("a", "b"), frames=5)
    _rewrite(root, [video_entry("a", {0: BOX, 3: BOX, 4: BOX}, groups=2), {"video_id": "b", "annotations": []}])
    m = ingest(root, "video", frames_dir=tmp_path / "frames").manifest
    present = m[has_target(m)].groupby("sequence_id")["frame_index"].apply(list).to_dict()
    assert present == {"a": [0, 3, 4]}


def test_own_split_folders_are_kept(tmp_path):
    root = make_video_dataset(tmp_path / "raw", videos=("a", "b", "c"), split=True)
    m = ingest(root, "auto", frames_dir=tmp_path / "frames").manifest
    assert m.groupby("split")["sequence_id"].unique().map(sorted).to_dict() == {"train": ["a"], "val": ["b", "c"]}


def test_auto_detection_and_mixed_layouts(tmp_path):
    assert detect_format(make_video_dataset(tmp_path / "v")) == "video"
    mixed = make_cpn_dataset(tmp_path / "mixed")
    make_video_dataset(mixed, videos=("a",))
    with pytest.raises(UserError, match="mixed data formats.*cpn.*video"):
        detect_format(mixed)


@pytest.mark.parametrize(
    "case, culprit, reason",
    [
        ("past the last frame", "annotations.json", "video b frame 6: past the last frame of .*b/drone_video.mp4 "
                                                    r"\(6 frames, 0..5\)"),
        ("missing x2", "annotations.json", "video a frame 2: missing or non-numeric key\\(s\\) 'x2'"),
        ("missing frame", "annotations.json", "video a: annotation 0 bbox 0: missing key 'frame'"),
        ("missing annotations", "annotations.json", "video a: missing key 'annotations'"),
        ("missing video_id", "annotations.json", "entry 0: missing key 'video_id'"),
        ("two boxes", "annotations.json", "video a frame 1: a second box"),
        ("not a video", "drone_video.mp4", "cannot open video"),
        ("truncated video", "drone_video.mp4", "cannot open video|no frame could be decoded"),
        ("no entry", "samples/b", "video b has no entry in"),
        ("no folder", "annotations.json", "video zz has no folder"),
        ("no object images", "object_images", "object of video a has no templates"),
        ("not json", "annotations.json", "not a readable JSON file"),
    ],
)
def test_bad_input_names_file_video_and_frame(tmp_path, case, culprit, reason):
    root = make_video_dataset(tmp_path / "raw", videos=("a", "b"), frames=6, present=(1, 2))
    entries = json.loads(_annotations(root).read_text())
    if case == "past the last frame":
        entries[1]["annotations"][0]["bboxes"].append({"frame": 6, "x1": 1, "y1": 1, "x2": 9, "y2": 9})
    elif case == "missing x2":
        del entries[0]["annotations"][0]["bboxes"][1]["x2"]
    elif case == "missing frame":
        del entries[0]["annotations"][0]["bboxes"][0]["frame"]
    elif case == "missing annotations":
        del entries[0]["annotations"]
    elif case == "missing video_id":
        del entries[0]["video_id"]
    elif case == "two boxes":
        entries[0]["annotations"].append({"bboxes": [{"frame": 1, "x1": 0, "y1": 0, "x2": 5, "y2": 5}]})
    elif case == "not a video":
        (root / "samples/a/drone_video.mp4").write_text("no video here")
    elif case == "truncated video":
        video = root / "samples/a/drone_video.mp4"
        video.write_bytes(video.read_bytes()[:300])
    elif case == "no entry":
        entries = entries[:1]
    elif case == "no folder":
        entries.append({"video_id": "zz", "annotations": []})
    elif case == "no object images":
        for p in (root / "samples/a/object_images").iterdir():
            p.unlink()
    if case == "not json":
        _annotations(root).write_text("[{")
    else:
        _rewrite(root, entries)
    with pytest.raises(UserError, match=reason) as info:
        ingest(root, "video", frames_dir=tmp_path / "frames")
    first = str(info.value).split(": ")[0]
    assert culprit in first, str(info.value)
    assert "\n" not in str(info.value)


def test_skip_mode_lists_bad_videos_and_boxes_in_rejected(tmp_path):
    root = make_video_dataset(tmp_path / "raw", videos=("a", "b", "c"), frames=5, present=(1, 2))
    entries = json.loads(_annotations(root).read_text())
    entries[1]["annotations"][0]["bboxes"].append({"frame": 9, "x1": 1, "y1": 1, "x2": 9, "y2": 9})
    del entries[2]["annotations"][0]["bboxes"][0]["y1"]  # frame 1 of c: dropped, the rest stays
    _rewrite(root, entries)
    (root / "samples/a/drone_video.mp4").write_bytes(b"\x00" * 100)
    result = ingest(root, "video", on_error="skip", frames_dir=tmp_path / "frames", path_str=lambda p: p.name)
    reasons = result.rejected["reason"].tolist()
    assert sorted(result.rejected["file"]) == ["annotations.json", "annotations.json", "drone_video.mp4"]
    assert any("video b frame 9: past the last frame" in r for r in reasons)
    assert any("video c frame 1" in r for r in reasons)
    m = result.manifest
    assert sorted(m["sequence_id"].unique()) == ["b", "c"]  # the unreadable video a is gone
    assert m[m["sequence_id"] == "b"]["frame_index"].tolist() == [0, 1, 2, 3, 4]
    assert m[m["sequence_id"] == "c"]["frame_index"].tolist() == [0, 2, 3, 4]
    assert result.stats["rejected"] == 3


def test_skip_mode_does_not_decode_a_video_without_usable_photos(tmp_path):
    root = make_video_dataset(tmp_path / "raw", videos=("a", "b", "c"), frames=4, present=(1, 2))
    for photo in (root / "samples/b/object_images").iterdir():
        photo.unlink()
    for photo in (root / "samples/c/object_images").iterdir():
        truncate(photo, 0.5)
    frames = tmp_path / "frames"
    result = ingest(root, "video", on_error="skip", frames_dir=frames,
                    path_str=lambda p: p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p))
    assert sorted(p.name for p in frames.iterdir()) == ["a"]  # b and c were never decoded
    assert sorted(result.manifest["sequence_id"].unique()) == ["a"]
    rejected = dict(zip(result.rejected["file"], result.rejected["reason"]))
    for vid in ("b", "c"):
        assert rejected[f"samples/{vid}/drone_video.mp4"] == f"video {vid}: not decoded, it has no usable reference photos"
    assert rejected["samples/b/object_images"] == "object of video b has no templates"
    assert all("cannot read image" in rejected[f"samples/c/object_images/img_{k}.jpg"] for k in (1, 2, 3))
    assert len(rejected) == 6  # no frame of b or c is listed: none was made


def test_box_outside_the_frame_names_video_and_frame(tmp_path):
    root = make_video_dataset(tmp_path / "raw", videos=("a", "b"), frames=3, present=(1,))
    _rewrite(root, [video_entry("a", {2: (100, 50, 140, 80)}), video_entry("b", {})])
    with pytest.raises(UserError, match=r"annotations.json: video a frame 2: box .* is outside the 128x96 image"):
        ingest(root, "video", frames_dir=tmp_path / "frames")


def test_prepare_writes_frames_into_the_prepared_folder(tmp_path):
    root = make_video_dataset(tmp_path / "raw", videos=("a", "b"), frames=4, present=(1, 2))
    paths = Paths(tmp_path / "work")
    stats = prepare(paths, DataConfig(source=str(root), format="video", frame_stride=2))
    m = read_manifest(paths.manifest)
    assert stats["train"]["frames"] + stats["val"]["frames"] == len(m) == 4
    assert sorted(m["frame_index"]) == [0, 0, 2, 2]
    for image in m["image"]:  # relative to the root, inside the prepared folder
        assert (paths.root / image).is_relative_to(paths.video_frames) and (paths.root / image).is_file()


def test_demo_video_layout_is_read_back_with_its_labels(tmp_path):
    cfg = demo_config(train_objects=1, val_objects=1, sequences_per_object=2, frames_per_sequence=3,
                     template_size=64, distractors=0, layout="video")
    generate_demo(tmp_path / "demo", cfg, seed=0, workers=1)
    for o, split in ((0, "val"), (1, "train")):
        sample = tmp_path / "demo" / split / "samples" / video_id(o)
        assert sorted(p.name for p in (sample / "object_images").iterdir()) == ["img_1.jpg", "img_2.jpg", "img_3.jpg"]
        frames = VideoFrames(sample / "drone_video.mp4")
        assert len(list(frames)) == frames.count == 6  # both sequences, one after the other
    m = ingest(tmp_path / "demo", "auto", frames_dir=tmp_path / "frames").manifest
    assert m.groupby("split")["sequence_id"].unique().map(list).to_dict() == {"train": ["video_01"], "val": ["video_00"]}
    # the same boxes as the cpn layout's labels: the frames are the same renders
    cpn = ingest(_cpn_demo(tmp_path / "cpn", cfg), "cpn").manifest
    video_boxes = m.sort_values(["object_id", "frame_index"])[["x1", "y1", "x2", "y2"]].to_numpy()
    cpn_boxes = cpn.sort_values(["object_id", "frame_index"])[["x1", "y1", "x2", "y2"]].to_numpy()
    np.testing.assert_allclose(video_boxes, cpn_boxes, atol=0.01)


def _cpn_demo(root: Path, cfg: DemoConfig) -> Path:
    from dataclasses import replace

    generate_demo(root, replace(cfg, layout="cpn"), seed=0, workers=1)
    return root


def test_default_demo_layout_is_unchanged_cpn():
    assert DemoConfig().layout == "cpn" and DataConfig().frame_stride == 1


def test_bad_video_is_bad_video(tmp_path):
    (tmp_path / "x.mp4").write_text("nope")
    with pytest.raises(BadVideo, match="cannot open video"):
        VideoFrames(tmp_path / "x.mp4")
    with pytest.raises(BadVideo, match="file not found"):
        VideoFrames(tmp_path / "missing.mp4")


def test_rejected_csv_from_prepare(tmp_path):
    root = make_video_dataset(tmp_path / "raw", videos=("a", "b", "c"), frames=3, present=(1,))
    (root / "samples/c/drone_video.mp4").write_text("broken")
    paths = Paths(tmp_path / "work")
    prepare(paths, DataConfig(source=str(root), format="video", on_error="skip"))
    rejected = pd.read_csv(paths.rejected)
    assert rejected["file"].tolist() == [str(root / "samples/c/drone_video.mp4")]
    assert "cannot open video" in rejected["reason"].iloc[0]
