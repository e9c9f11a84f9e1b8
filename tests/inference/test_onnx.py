"""Detector on the exported ONNX pair: the PyTorch Detector's boxes and scores on real image files."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
import torch

from pipeline.cli import UserError
from pipeline.inference import Detector
from pipeline.inference.onnx_model import DETECTOR_FILE, ENCODER_FILE, OnnxDetectorModel
from tests.test_export import T, TinyExport, tiny_export


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> TinyExport:
    return tiny_export(tmp_path_factory.getbasetemp())  # shared with tests/test_export.py


@pytest.fixture(scope="module")
def detectors(exported) -> tuple[Detector, Detector]:
    """The PyTorch Detector of the checkpoint and the ONNX Detector of its export (set per test)."""
    return Detector.from_checkpoint(exported.checkpoint), Detector.from_onnx(exported.onnx)


def configure(detectors: tuple[Detector, Detector], flip_tta: bool = False, max_detections: int = 10):
    for d in detectors:
        d.flip_tta, d.max_detections = flip_tta, max_detections
        d.score_threshold = 0.0  # an untrained model scores low: compare every candidate
    return detectors


def assert_same(a, b) -> None:
    # boxes are in the 1024x576 frames' pixels, 8x / 6x the 128x96 the model sees
    np.testing.assert_allclose(b.scores, a.scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(b.boxes, a.boxes, rtol=0, atol=1e-2)


def test_onnx_detector_gives_the_same_boxes_on_image_files(exported, detectors):
    pt, ox = configure(detectors)
    assert isinstance(ox.model, OnnxDetectorModel)
    assert (ox.template_size, ox.search_size) == (T, (128, 96)) == (pt.template_size, pt.search_size)
    assert (ox.template_pad, ox.template_pad_value) == ("constant", 0)
    for d in (pt, ox):
        d.set_templates(exported.refs)
    frames = [*exported.frames, exported.frames[0]]  # 4 frames: a full batch of 3, then 1
    a, b = pt.predict(frames, batch_size=3), ox.predict(frames, batch_size=3)
    assert len(b) == 4
    for x, y in zip(a, b):
        assert 0 < len(y.scores) <= 10 and y.boxes.dtype == np.float32 and y.scores.dtype == np.float32
        assert_same(x, y)
    for d in (pt, ox):  # one reference only: the template count is dynamic
        d.set_templates(exported.refs[1])
    assert_same(pt.predict(exported.frames[2]), ox.predict(exported.frames[2]))


def test_onnx_detector_thresholds_and_flip_tta(exported, detectors):
    pt, ox = configure(detectors, flip_tta=True, max_detections=3)
    for d in (pt, ox):
        d.set_templates(exported.refs[:2])
    assert_same(pt.predict(exported.frames[1]), ox.predict(exported.frames[1]))
    ox.score_threshold = 1.0
    assert ox.predict(exported.frames[1]).boxes.shape == (0, 4)


def test_onnx_model_input_checks(exported):
    model = OnnxDetectorModel(exported.onnx)
    with pytest.raises(ValueError, match=r"templates \[B, K, 3, 32, 32\]"):
        model.encode_templates(torch.rand(1, 2, 3, 64, 64))
    encoded = model.encode_templates(torch.rand(2, 3, 32, 32))  # [B, 3, T, T]: one template each
    assert [tuple(e.shape) for e in encoded] == [(2, 16, 8, 8), (2, 16, 4, 4)]
    with pytest.raises(ValueError, match=r"search \[B, 3, 96, 128\]"):
        model.detect(torch.rand(2, 3, 64, 64), encoded)
    with pytest.raises(ValueError, match="template batch 2 does not match search batch 3"):
        model.detect(torch.rand(3, 3, 96, 128), encoded)
    with pytest.raises(ValueError, match="every object needs at least one real template"):
        model.encode_templates(torch.rand(2, 2, 3, 32, 32), torch.tensor([[True, False], [False, False]]))
    with pytest.raises(ValueError, match=r"mask shape \(2, 3\) != \(B, K\) = \(2, 2\)"):
        model.encode_templates(torch.rand(2, 2, 3, 32, 32), torch.ones(2, 3, dtype=torch.bool))


def test_from_onnx_takes_detector_options(exported):
    det = Detector.from_onnx(exported.onnx, score_threshold=0.7, max_detections=2, flip_tta=True, template_pad="edge")
    assert (det.score_threshold, det.max_detections, det.flip_tta, det.template_pad) == (0.7, 2, True, "edge")
    assert str(det.device) == "cpu" and det.model.providers == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="ONNX model runs as exported"):
        Detector.from_onnx(exported.onnx, amp="bf16")


def test_foreign_or_mixed_exports_are_user_errors(exported, tmp_path):
    with pytest.raises(UserError, match="template_encoder.onnx: not found"):
        Detector.from_onnx(tmp_path)
    mixed = tmp_path / "mixed"
    shutil.copytree(exported.onnx, mixed)
    graph = onnx.load(str(mixed / ENCODER_FILE))
    props = {p.key: p.value for p in graph.metadata_props} | {"needle.template_size": "64"}
    onnx.helper.set_model_props(graph, props)
    onnx.save(graph, str(mixed / ENCODER_FILE))
    with pytest.raises(UserError, match="come from different exports"):
        OnnxDetectorModel(mixed)
    onnx.helper.set_model_props(graph, {})
    onnx.save(graph, str(mixed / ENCODER_FILE))
    with pytest.raises(UserError, match="template_encoder.onnx: not a needle ONNX export"):
        OnnxDetectorModel(mixed)
    (mixed / DETECTOR_FILE).write_bytes(b"not a graph")
    shutil.copy(exported.onnx / ENCODER_FILE, mixed / ENCODER_FILE)
    with pytest.raises(UserError, match="search_detector.onnx: ONNX Runtime cannot load it"):
        OnnxDetectorModel(mixed)
