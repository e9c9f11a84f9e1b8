"""A short mp4 written with OpenCV goes through prepare, ``predict --video`` / ``--dataset`` and
``evaluate``, with a real (tiny, untrained) checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline.cli import UserError
from pipeline.config import TemporalConfig, TrackConfig, to_raw
from pipeline.data.formats.video import VideoFrames
from pipeline.detector import build_detector
from tests.models import model_config
from pipeline.engine.checkpoint import save_checkpoint
from pipeline.evaluate import main as evaluate_main
from pipeline.inference import Detector
from pipeline.inference.temporal import smooth_track
from pipeline.inference.stream import fill_between
from pipeline.inference.tracker import Candidates, track
from pipeline.metrics.stiou import score_submission
from pipeline.predict import main as predict_main
from tests.datasets import make_video_dataset

TINY_MODEL = model_config(search_size=[128, 96], head={"box_prior": 24.0})
# Everything fires (an untrained model scores low), so the ST-IoU depends on the boxes.
TEMPORAL = {"method": "smooth", "on_threshold": 0.0, "off_threshold": 0.0, "min_on_frames": 2, "score_ema": 0.3,
            "box_ema": 0.5}


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    work = tmp_path / "work"
    (work / "models").mkdir(parents=True)
    params = {"templates": {"size": 32, "workers": 1}, "evaluate": {"gallery_frames": 2, "score_threshold": 0.0},
              "temporal": TEMPORAL}
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    torch.manual_seed(0)
    save_checkpoint(work / "models" / "best.pt", {"model": build_detector(TINY_MODEL).state_dict(),
                                                  "model_config": to_raw(TINY_MODEL),
                                                  "template_size": 32, "epoch": 0})
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def videos(tmp_path) -> Path:
    """Three 8-frame clips; the object is on frames 2-5."""
    return make_video_dataset(tmp_path / "clips", videos=("clip_a", "clip_b", "clip_c"), frames=8,
                              present=(2, 3, 4, 5))


def _expected_answers(clip: Path, cfg: TemporalConfig | None, threshold: float = 0.3) -> list:
    """What predict must answer for ``clip``: the Detector API on every decoded frame, then the filter."""
    det = Detector.from_checkpoint("models/best.pt", score_threshold=0.0 if cfg else threshold, max_detections=1,
                                   amp="auto")  # predict's --amp default
    det.set_templates(sorted((clip.parent / "object_images").iterdir()))
    frames = [cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) for _, bgr in VideoFrames(clip)]
    found = det.predict(frames)
    boxes = [d.boxes[0] if len(d.scores) else None for d in found]
    scores = [float(d.scores[0]) if len(d.scores) else 0.0 for d in found]
    if cfg is None:
        return [b if b is not None and s >= threshold else None for b, s in zip(boxes, scores)]
    return smooth_track(boxes, scores, cfg)


def _submitted(entry: dict, frames: int) -> list:
    out: list = [None] * frames
    for group in entry["detections"]:
        for b in group["bboxes"]:
            out[b["frame"]] = [b["x1"], b["y1"], b["x2"], b["y2"]]
    return out


def test_predict_video_streams_smooths_and_writes_the_submission(workdir, videos, tmp_path, capsys):
    clip = videos / "samples/clip_a/drone_video.mp4"
    out = tmp_path / "pred"
    predict_main(["--checkpoint", "models/best.pt", "--templates", str(clip.parent / "object_images"),
                  "--video", str(clip), "--out", str(out), "--batch-size", "3"])
    printed = capsys.readouterr().out
    assert "clip_a: 8 frames" in printed and "ms/frame" in printed and "frames/s" in printed
    doc = json.loads((out / "submission.json").read_text())
    assert [e["video_id"] for e in doc] == ["clip_a"]  # the sample folder's name
    got = _submitted(doc[0], 8)
    want = _expected_answers(clip, TemporalConfig(**TEMPORAL))
    assert [g is not None for g in got] == [w is not None for w in want]
    assert any(g is not None for g in got)
    for g, w in zip(got, want):
        if w is not None:
            np.testing.assert_allclose(g, np.round(w), atol=1)
    # consecutive frames form one bboxes run each
    runs = [[b["frame"] for b in group["bboxes"]] for group in doc[0]["detections"]]
    assert all(r == list(range(r[0], r[-1] + 1)) for r in runs)


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_predict_video_tracks_over_candidates(workdir, videos, tmp_path, capsys, mode):
    """``temporal.method: track``: the submission is the tracker's answer over the Detector's
    top-k candidates (with their appearance embeddings) of every decoded frame."""
    # the untrained model scores about 0.006 everywhere: a threshold just under it answers
    track_cfg = TrackConfig(mode=mode, top_k=3, switch_cost=0.1, min_segment=2)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["temporal"].update(method="track", track=to_raw(track_cfg))
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    clip = videos / "samples/clip_c/drone_video.mp4"
    out = tmp_path / "pred"
    predict_main(["--checkpoint", "models/best.pt", "--templates", str(clip.parent / "object_images"),
                  "--video", str(clip), "--out", str(out), "--score-threshold", "0.005"])
    assert "% in the temporal step" in capsys.readouterr().out
    det = Detector.from_checkpoint("models/best.pt", score_threshold=0.0, max_detections=3, amp="auto")
    det.set_templates(sorted((clip.parent / "object_images").iterdir()))
    found = det.predict([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) for _, bgr in VideoFrames(clip)])
    assert all(d.embeddings is not None and d.embeddings.shape == (len(d.scores), 16) for d in found)
    want = track([Candidates(d.boxes, d.scores, d.embeddings) for d in found], track_cfg, 0.005)
    assert any(w is not None for w in want)
    got = _submitted(json.loads((out / "submission.json").read_text())[0], 8)
    assert [g is not None for g in got] == [w is not None for w in want]
    for g, w in zip(got, want):
        if w is not None:
            np.testing.assert_allclose(g, np.round(w), atol=1)


def test_fill_between_interpolates_holds_the_tail_and_keeps_misses():
    a, b = np.array([0.0, 0, 10, 10]), np.array([4.0, 0, 14, 10])
    out = fill_between([a, b, None, a], 2, 8)
    np.testing.assert_allclose(out[1], [2, 0, 12, 10])  # halfway between frames 0 and 2
    assert out[3] is None and out[4] is None and out[5] is None  # frame 4 had no answer
    np.testing.assert_allclose(out[6], a)
    np.testing.assert_allclose(out[7], a)  # after the last detected frame: held
    assert len(fill_between([a], 3, 2)) == 2


def test_predict_video_detects_every_kth_frame(workdir, videos, tmp_path, capsys):
    clip = videos / "samples/clip_a/drone_video.mp4"
    out = tmp_path / "pred"
    predict_main(["--checkpoint", "models/best.pt", "--templates", str(clip.parent / "object_images"),
                  "--video", str(clip), "--out", str(out), "--detect-every", "3", "--no-temporal",
                  "--score-threshold", "0"])
    assert "clip_a: 8 frames, 8 with the object" in capsys.readouterr().out
    got = _submitted(json.loads((out / "submission.json").read_text())[0], 8)
    every = _expected_answers(clip, None, threshold=0.0)
    for n in (0, 3, 6):  # the frames the model saw: as without skipping
        np.testing.assert_allclose(got[n], np.round(every[n]), atol=1)
    np.testing.assert_allclose(got[1], np.round(2 / 3 * every[0] + 1 / 3 * every[3]), atol=1)


def test_predict_video_without_temporal_uses_the_score_threshold(workdir, videos, tmp_path, capsys):
    clip = videos / "samples/clip_b/drone_video.mp4"
    out = tmp_path / "pred"
    predict_main(["--checkpoint", "models/best.pt", "--templates", str(clip.parent / "object_images"),
                  "--video", str(clip), "--video-id", "custom", "--out", str(out), "--no-temporal",
                  "--score-threshold", "1"])
    doc = json.loads((out / "submission.json").read_text())
    assert doc == [{"video_id": "custom", "detections": []}]  # nothing reaches score 1: listed, empty


def test_predict_dataset_writes_one_submission_for_all_videos(workdir, videos, tmp_path, capsys):
    out = tmp_path / "pred"
    predict_main(["--checkpoint", "models/best.pt", "--dataset", str(videos), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "all 3 videos: 24 frames" in printed
    doc = json.loads((out / "submission.json").read_text())
    assert [e["video_id"] for e in doc] == ["clip_a", "clip_b", "clip_c"]
    for entry in doc:
        clip = videos / "samples" / entry["video_id"] / "drone_video.mp4"
        want = _expected_answers(clip, TemporalConfig(**TEMPORAL))
        assert [g is not None for g in _submitted(entry, 8)] == [w is not None for w in want]
    # the submission scores against the annotations, per video
    truth = json.loads((videos / "annotations/annotations.json").read_text())
    scores = score_submission(truth, doc)
    assert set(scores) == {"clip_a", "clip_b", "clip_c"} and all(0.0 <= s <= 1.0 for s in scores.values())


@pytest.mark.parametrize("case, message", [
    ("bad video", "drone_video.mp4: cannot open video"),
    ("missing video", "drone_video.mp4: file not found"),
])
def test_predict_bad_video_is_a_user_error_naming_it(workdir, videos, tmp_path, case, message):
    clip = videos / "samples/clip_a/drone_video.mp4"
    if case == "bad video":
        clip.write_text("not a video")
    else:
        clip.unlink()
    with pytest.raises(UserError, match=message):
        predict_main(["--checkpoint", "models/best.pt", "--dataset", str(videos), "--out", str(tmp_path / "p")])
    assert not (tmp_path / "p" / "submission.json").exists()


def test_evaluate_video_data_set_reports_st_iou(workdir, videos, tmp_path):
    out = tmp_path / "eval"
    evaluate_main(["--data", str(videos), "--format", "video", "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    sequences = pd.read_csv(out / "sequences.csv")
    assert metrics["sequences"] == len(sequences) == 3
    assert sorted(sequences["sequence_id"]) == ["clip_a", "clip_b", "clip_c"]
    assert (sequences["frames"] == 8).all() and (sequences["frames_with_target"] == 4).all()
    # raw ST-IoU = the benchmark's formula applied to frames.csv (top-1 at score_threshold 0: every frame fires)
    frames = pd.read_csv(out / "frames.csv")
    for seq, group in frames.groupby("sequence_id"):
        fired = group["score"] >= 0.0
        union = (group["present"] | fired).sum()
        expected = group["iou"].where(group["present"] & fired, 0.0).fillna(0.0).sum() / union
        got = sequences.set_index("sequence_id").loc[seq, "st_iou"]
        assert got == pytest.approx(expected)
    assert metrics["st_iou"] == pytest.approx(sequences["st_iou"].mean())
    assert metrics["st_iou_temporal"] == pytest.approx(sequences["st_iou_temporal"].mean())
    assert 0.0 <= metrics["st_iou_temporal"] <= 1.0
    assert (sequences["frames_predicted"] == 8).all()  # score threshold 0: every frame answers
    assert (sequences["frames_predicted_temporal"] == 8).all()  # thresholds 0: on from the first frame


def test_evaluate_without_temporal_has_no_temporal_st_iou(workdir, videos, tmp_path):
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["temporal"]["enabled"] = False
    Path("params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "eval"
    evaluate_main(["--data", str(videos), "--out", str(out)])  # auto-detected as video
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["st_iou"] is not None and metrics["st_iou_temporal"] is None


def test_st_iou_of_the_cpn_demo_sequences(workdir, cpn_root, tmp_path):
    """Any data set with sequences gets its ST-IoU (cpn: runs of consecutive frame numbers)."""
    out = tmp_path / "eval"
    evaluate_main(["--data", str(cpn_root), "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    sequences = pd.read_csv(out / "sequences.csv", dtype={"sequence_id": str})
    assert metrics["sequences"] == 10  # 5 objects x 2 sequences
    assert sequences["frames"].tolist() == [3, 2] * 5

