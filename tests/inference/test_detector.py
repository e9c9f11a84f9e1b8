"""Detector: cached templates give the direct model's boxes, in original pixels, clamped."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.cli import UserError
from pipeline.config import to_raw
from pipeline.data.frames import resize, to_tensor_array
from pipeline.detector import ReferenceDetector, build_detector
from pipeline.detector.postprocess import postprocess
from pipeline.engine.checkpoint import save_checkpoint
from pipeline.engine.cpu import cpu_info
from pipeline.inference import Detections, Detector
from pipeline.inference.detector import _mirror
from tests.datasets import truncate, write_image
from tests.models import model_config

SEARCH = (128, 96)  # width, height the model sees
T = 32


@pytest.fixture(scope="module")
def model() -> ReferenceDetector:
    torch.manual_seed(0)
    # box_prior 100 px: untrained boxes are large, so some cross the frame border (clamping)
    return build_detector(model_config(head={"box_prior": 100.0})).eval()


def rgb(w: int, h: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def detector(model, **kw) -> Detector:
    kw.setdefault("score_threshold", 0.0)  # a random model scores low; keep every candidate
    return Detector(model, T, SEARCH, **kw)


def direct(model, templates: list[np.ndarray], frame: np.ndarray, thr=0.0, iou=0.5, k=10):
    """Reference path: the whole model (templates re-encoded) on one frame already at SEARCH."""
    t = torch.from_numpy(np.stack([to_tensor_array(a) for a in templates]))[None]
    s = torch.from_numpy(to_tensor_array(frame))[None]
    with torch.no_grad():
        out = model(t, s)
    (boxes, scores), = postprocess(out["logits"], out["boxes"], thr, iou, k)
    return boxes.numpy(), scores.numpy()


def test_cached_templates_match_direct_model_and_encode_once(model, monkeypatch):
    templates = [rgb(T, T, 1), rgb(T, T, 2)]
    frames = [rgb(*SEARCH, 10 + i) for i in range(3)]
    det = detector(model)
    det.set_templates(templates)
    calls = []
    encode = model.encode_templates
    monkeypatch.setattr(model, "encode_templates", lambda *a, **k: calls.append(1) or encode(*a, **k))
    found = det.predict(frames, batch_size=2)
    assert calls == []  # predict reuses the cached encoding
    assert isinstance(found, list) and len(found) == 3
    for frame, got in zip(frames, found):
        boxes, scores = direct(model, templates, frame)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, SEARCH[0])
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, SEARCH[1])
        assert isinstance(got, Detections) and got.boxes.dtype == np.float32 and got.scores.dtype == np.float32
        assert len(got.scores) > 0
        np.testing.assert_allclose(got.scores, scores, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.boxes, boxes, rtol=1e-4, atol=1e-3)
    single = det.predict(frames[1])
    assert isinstance(single, Detections)
    np.testing.assert_allclose(single.boxes, found[1].boxes, atol=1e-3)


def test_boxes_in_original_pixels_and_clamped(model):
    templates = [rgb(T, T, 1)]
    frame = rgb(512, 288, 5)  # x scale 4, y scale 3 relative to SEARCH
    det = detector(model)
    det.set_templates(templates)
    got = det.predict(frame)
    boxes, scores = direct(model, templates, resize(frame, SEARCH))
    expect = boxes * np.array([4.0, 3.0, 4.0, 3.0], dtype=np.float32)
    expect[:, 0::2] = expect[:, 0::2].clip(0, 512)
    expect[:, 1::2] = expect[:, 1::2].clip(0, 288)
    np.testing.assert_allclose(got.scores, scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.boxes, expect, rtol=1e-4, atol=1e-2)
    assert (boxes[:, :2] < 0).any() or (boxes[:, 2] > SEARCH[0]).any() or (boxes[:, 3] > SEARCH[1]).any()
    assert (got.boxes >= 0).all() and (got.boxes[:, 0::2] <= 512).all() and (got.boxes[:, 1::2] <= 288).all()
    assert (got.boxes[:, 2] > got.boxes[:, 0]).all() and (got.boxes[:, 3] > got.boxes[:, 1]).all()
    assert (np.diff(got.scores) <= 0).all()


def test_file_inputs_equal_array_inputs(model, tmp_path):
    ref = rgb(40, 20, 3)  # not square: padded to 40x40, then scaled to T
    Image.fromarray(ref).save(tmp_path / "ref.png")
    frame = rgb(160, 120, 4)
    Image.fromarray(frame).save(tmp_path / "frame.png")
    by_array, by_file = detector(model), detector(model)
    by_array.set_templates(ref)
    by_file.set_templates([tmp_path / "ref.png"])
    a, b = by_array.predict(frame), by_file.predict(str(tmp_path / "frame.png"))
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_flip_tta_returns_valid_boxes(model):
    templates, frame = [rgb(T, T, 1)], rgb(200, 150, 7)
    plain, tta = detector(model, max_detections=5), detector(model, max_detections=5, flip_tta=True)
    for d in (plain, tta):
        d.set_templates(templates)
    a, b = plain.predict(frame), tta.predict([frame, frame])[0]
    assert 0 < len(b.scores) <= 5 and (np.diff(b.scores) <= 0).all()
    assert (b.boxes >= 0).all() and (b.boxes[:, 0::2] <= 200).all() and (b.boxes[:, 1::2] <= 150).all()
    assert (b.boxes[:, 2] > b.boxes[:, 0]).all() and (b.boxes[:, 3] > b.boxes[:, 1]).all()
    assert b.scores[0] >= a.scores[0] - 1e-6  # the union keeps the best of both passes


def test_mirror_is_an_involution():
    boxes = torch.tensor([[10.0, 5.0, 30.0, 25.0], [0.0, 0.0, 128.0, 96.0]])
    once = _mirror(boxes, 128)
    assert once[0].tolist() == [98.0, 5.0, 118.0, 25.0]
    assert torch.equal(_mirror(once, 128), boxes)


def test_threshold_and_max_detections(model):
    det = detector(model, max_detections=3)
    det.set_templates([rgb(T, T, 1)])
    got = det.predict(rgb(*SEARCH, 2))
    assert len(got.scores) == 3
    det.score_threshold = 1.0
    empty = det.predict(rgb(*SEARCH, 2))
    assert empty.boxes.shape == (0, 4) and empty.scores.shape == (0,)


def test_clear_errors(model, tmp_path):
    det = detector(model)
    with pytest.raises(RuntimeError, match="set_templates"):
        det.predict(rgb(*SEARCH, 0))
    with pytest.raises(UserError, match="missing.jpg"):
        det.set_templates([tmp_path / "missing.jpg"])
    broken = truncate(write_image(tmp_path / "broken.jpg", (64, 64)), 0.3)
    with pytest.raises(UserError, match="broken.jpg"):
        det.set_templates([broken])
    with pytest.raises(ValueError, match="at least one"):
        det.set_templates([])
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        det.set_templates(np.zeros((32, 32), np.uint8))
    det.set_templates(rgb(T, T, 1))
    with pytest.raises(UserError, match="nowhere.png"):
        det.predict(tmp_path / "nowhere.png")
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        det.predict(np.zeros((10, 10, 3), np.float32))


def test_from_checkpoint_rebuilds_model(tmp_path):
    cfg = model_config(search_size=[128, 96], head={"box_prior": 100.0})
    torch.manual_seed(1)
    src = build_detector(cfg).eval()
    raw = to_raw(cfg)  # as YAML/JSON would hold it
    raw["backbone"]["pretrained"] = str(tmp_path / "gone.safetensors")  # must not be read again
    save_checkpoint(tmp_path / "best.pt", {"model": src.state_dict(), "model_config": raw, "template_size": T,
                                           "epoch": 3})
    det = Detector.from_checkpoint(tmp_path / "best.pt", device="cpu", score_threshold=0.0)
    assert det.template_size == T and det.search_size == (128, 96) and not det.model.training
    ref = Detector(src, T, SEARCH, score_threshold=0.0)
    for d in (det, ref):
        d.set_templates(rgb(T, T, 1))
    a, b = det.predict(rgb(*SEARCH, 9)), ref.predict(rgb(*SEARCH, 9))
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
    save_checkpoint(tmp_path / "edge.pt", {"model": src.state_dict(), "model_config": raw, "template_size": T,
                                           "template_pad": "edge", "template_pad_value": 9})
    edge = Detector.from_checkpoint(tmp_path / "edge.pt")
    assert (edge.template_pad, edge.template_pad_value) == ("edge", 9)
    with pytest.raises(UserError, match="nothing.pt"):
        Detector.from_checkpoint(tmp_path / "nothing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="junk.pt"):
        Detector.from_checkpoint(tmp_path / "junk.pt")
    save_checkpoint(tmp_path / "old.pt", {"model": src.state_dict()})
    with pytest.raises(UserError, match="old.pt.*model_config"):
        Detector.from_checkpoint(tmp_path / "old.pt")


def test_bf16_autocast_keeps_the_fp32_detections_close(model):
    # an untrained model's scores are nearly flat, so compare the score maps, not the ranking
    templates, frames = [rgb(T, T, 1), rgb(T, T, 2)], [rgb(*SEARCH, 20 + i) for i in range(2)]
    fp32, bf16 = detector(model), detector(model, amp="bf16")
    assert fp32.precision.dtype is None and bf16.precision.dtype == torch.bfloat16
    for d in (fp32, bf16):
        d.set_templates(templates)
    assert bf16._encoded[0].dtype == torch.bfloat16  # the cached encoding is made under autocast
    search = torch.from_numpy(np.stack([to_tensor_array(f) for f in frames]))
    with torch.inference_mode():
        a = model.detect(search, fp32._encoded)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            b = model.detect(search, bf16._encoded)
    torch.testing.assert_close(torch.sigmoid(b["logits"].float()), torch.sigmoid(a["logits"]), atol=0.02, rtol=0)
    torch.testing.assert_close(b["boxes"].float(), a["boxes"], atol=2.0, rtol=0.02)
    for got in bf16.predict(frames):  # what predict returns stays fp32
        assert got.boxes.dtype == np.float32 and got.scores.dtype == np.float32 and len(got.scores) > 0


def test_amp_mode_errors_name_the_setting(model):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="amp: fp16 needs a CUDA device"):
        detector(model, amp="fp16")
    with pytest.raises(ConfigError, match="amp: 'half' is not one of auto, fp16, bf16, off"):
        detector(model, amp="half")
    # auto on the CPU: bf16 only where the CPU runs it natively
    expected = torch.bfloat16 if cpu_info().native_bf16 else None
    assert detector(model, amp="auto").precision.dtype == expected


def test_inference_api_imports_no_training_code():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; from pipeline.inference import Detector; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('albumentations', 'mlflow', 'dvc') "
            "or m in ('pipeline.data.dataset', 'pipeline.data.augment', 'pipeline.engine.trainer')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == "[]"


def test_a_checkpoint_of_the_flat_model_layout_loads_and_predicts_the_same(tmp_path):
    # older versions wrote model_config flat and named the neck fpn, the heads head / match_head
    torch.manual_seed(2)
    src = build_detector(model_config(search_size=[128, 96], head={"box_prior": 100.0})).eval()
    flat = {"backbone": "convnext_atto", "pretrained": False, "levels": [2, 3], "fpn_channels": 16,
            "fusion": "attention", "corr_kernel": 1, "corr_normalize": True, "head_channels": 16,
            "search_features": True, "similarity_skip": False, "match_grid": 4, "match_top": 4, "box_prior": 100.0,
            "colour_bins": 8, "head": "factorized", "match_gate": "and", "search_size": [128, 96]}
    renames = (("neck.", "fpn."), ("head.dense.", "head."), ("head.match.", "match_head."))
    old = {}
    for key, value in src.state_dict().items():
        for new, was in renames:
            if key.startswith(new):
                key = was + key[len(new):]
                break
        old[key] = value
    assert "fpn.fpn.inner_blocks.0.0.weight" in old and "match_head.out.weight" in old
    save_checkpoint(tmp_path / "flat.pt", {"model": old, "model_config": flat, "template_size": T})
    det = Detector.from_checkpoint(tmp_path / "flat.pt", score_threshold=0.0)
    ref = Detector(src, T, SEARCH, score_threshold=0.0)
    for d in (det, ref):
        d.set_templates(rgb(T, T, 1))
    a, b = det.predict(rgb(*SEARCH, 9)), ref.predict(rgb(*SEARCH, 9))
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-5)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
