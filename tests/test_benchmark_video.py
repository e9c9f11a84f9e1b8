"""benchmarks.video's parts at tiny sizes: the clips it renders and the temporal step per variant
(the full run, with timings, is ``python -m benchmarks.video``)."""

from __future__ import annotations

import cv2

from benchmarks.video import PRESET, VARIANTS, parse_args, render_clips, temporal_for
from pipeline.config import TemporalConfig, parse_params


def test_render_clips_writes_playable_long_clips_with_truth(tmp_path):
    params = parse_params({})
    clips, truth = render_clips(tmp_path, params, videos=1, frames=6)
    assert [c.video_id for c in clips] == [t["video_id"] for t in truth] == ["video_00"]
    cap = cv2.VideoCapture(str(clips[0].path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    cap.release()
    assert len(clips[0].references) == 3
    assert PRESET["absence"] == "stretches"


def test_each_variant_gets_its_temporal_step():
    base = TemporalConfig(enabled=False)
    by_name = {v.name: v for v in VARIANTS}
    assert temporal_for(by_name["per-frame top-1"], base, 0.3) is None
    smooth = temporal_for(by_name["smoothed"], base, 0.3)
    assert smooth.enabled and smooth.method == "smooth" and smooth.on_threshold == 0.3
    assert temporal_for(by_name["tracked, model on every 2nd frame"], base, 0.3).method == "track"
    assert {v.runtime for v in VARIANTS} == {"torch", "onnx", "onnx-int8"}
    assert parse_args(["--quick", "--frames", "50"]).frames == 50
