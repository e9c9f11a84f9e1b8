"""``python -m pipeline.export``: ONNX round trip vs PyTorch (random and real inputs, dynamic batch
and template count), metadata, report, clear errors.

One tiny checkpoint is exported once per session (:func:`tiny_export`, also used by
tests/inference/test_onnx.py): an export costs ~15 s on 2 CPU cores.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import NamedTuple

import onnx
import pytest
import torch
from PIL import Image

from pipeline.cli import UserError
from pipeline.config import DemoConfig, to_raw
from pipeline.detector import build_detector
from pipeline.detector.backbones.lora import merge_lora
from pipeline.detector.similarity.correlation import depthwise_xcorr, shifted_xcorr
from pipeline.detector.model import ReferenceDetector
from pipeline.engine.checkpoint import save_checkpoint
from pipeline.export import (
    demo_scene,
    main,
    parity_failures,
    raw_parity,
    scene_parity,
)
from pipeline.inference import Detector
from pipeline.inference.onnx_model import DETECTOR_FILE, ENCODER_FILE, GraphInfo, OnnxDetectorModel
from tests.models import model_config
from tests.datasets import demo_config

# Every optional path of the detector that lands in the graphs: a 3x3 correlation kernel,
# prototype matching, the similarity skip.
TINY_RAW = {"correlation": {"kernel": 3}, "similarities": {"prototypes": {"grid": 4, "top": 4}},
            "head": {"type": "joint", "box_prior": 24.0, "similarity_skip": True}, "search_size": [128, 96]}
TINY_MODEL = model_config(**TINY_RAW)
T = 32
PRESENCE = 0.4375  # the tiny checkpoint's calibrated presence threshold


class TinyExport(NamedTuple):
    checkpoint: Path
    onnx: Path  # the CLI's --out
    refs: list[Path]  # real reference photos (demo generator, PNG)
    frames: list[Path]  # real frames (demo generator, JPEG, 1024x576)
    stdout: str


def write_scene(folder: Path, frames: int = 3) -> tuple[list[Path], list[Path]]:
    """One demo object's 3 reference photos and ``frames`` frames of a sequence it moves in."""
    from pipeline.data.demo import render_sequence, render_templates

    folder.mkdir(parents=True, exist_ok=True)
    cfg = demo_config(train_objects=1, val_objects=1, frames_per_sequence=frames, template_size=128, absent_fraction=0.0)
    refs = []
    for k, photo in enumerate(render_templates(3, cfg, 0)):
        refs.append(folder / f"ref_{k}.png")
        Image.fromarray(photo[..., ::-1]).save(refs[-1])
    shots = []
    for frame in render_sequence(3, cfg, 0, 0):
        shots.append(folder / f"frame_{frame.index}.jpg")
        Image.fromarray(frame.image[..., ::-1]).save(shots[-1], quality=92)
    return refs, shots


def tiny_export(root: Path) -> TinyExport:
    """Checkpoint, CLI export and scene files under ``root``, made on the first call (later calls,
    from either test module, find them on disk)."""
    base = root / "tiny-export"
    ckpt, out = base / "best.pt", base / "onnx"
    refs, frames = sorted((base / "scene").glob("ref_*.png")), sorted((base / "scene").glob("frame_*.jpg"))
    if (out / "export.json").is_file():
        return TinyExport(ckpt, out, refs, frames, (base / "stdout.txt").read_text())
    torch.manual_seed(0)
    base.mkdir(parents=True, exist_ok=True)
    save_checkpoint(ckpt, {"model": build_detector(TINY_MODEL).state_dict(),
                           "model_config": to_raw(TINY_MODEL), "template_size": T, "epoch": 0,
                           "presence": {"score_threshold": PRESENCE, "metric": "f1", "value": 0.5, "frames": 4}})
    refs, frames = write_scene(base / "scene")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        main(["--checkpoint", str(ckpt), "--out", str(out), "--repeats", "1",
              "--check-image", str(frames[0]), "--check-templates", *map(str, refs)])
    (base / "stdout.txt").write_text(buffer.getvalue())
    return TinyExport(ckpt, out, refs, frames, buffer.getvalue())


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> TinyExport:
    return tiny_export(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def torch_model(exported) -> ReferenceDetector:
    model = Detector.from_checkpoint(exported.checkpoint).model
    assert isinstance(model, ReferenceDetector)
    return model


@pytest.fixture(scope="module")
def onnx_model(exported) -> OnnxDetectorModel:
    return OnnxDetectorModel(exported.onnx)


def test_cli_writes_the_pair_with_metadata_and_a_report(exported):
    assert sorted(p.name for p in exported.onnx.iterdir()) == ["export.json", DETECTOR_FILE, ENCODER_FILE]
    for name in (ENCODER_FILE, DETECTOR_FILE):
        graph = onnx.load(str(exported.onnx / name))
        onnx.checker.check_model(graph)
        props = {p.key: p.value for p in graph.metadata_props}
        info = GraphInfo.from_props(props, name)
        assert info == GraphInfo(template_size=T, search_size=(128, 96), stride=4, encoded=2, score_threshold=PRESENCE)
        assert props["needle.exporter"] == "dynamo"
        assert not list(exported.onnx.glob("*.data"))  # weights inside the graph files
    # the calibrated presence threshold travels with the graphs; an explicit one still wins
    assert Detector.from_onnx(exported.onnx).score_threshold == PRESENCE
    assert Detector.from_checkpoint(exported.checkpoint).score_threshold == PRESENCE
    assert Detector.from_onnx(exported.onnx, score_threshold=0.9).score_threshold == 0.9
    report = json.loads((exported.onnx / "export.json").read_text())
    assert set(report["exporters"]) == {ENCODER_FILE, DETECTOR_FILE}
    assert all(how["opset"] >= 18 for how in report["exporters"].values())
    assert report["tolerance"] == 1e-3 and len(report["parity"]) == 3
    for case, row in report["parity"].items():
        for key in ("kernels", "logits", "boxes"):
            assert 0 <= row[key] < 1e-3, (case, key)
    real = report["parity"]["frame_0.jpg, K 3"]
    assert real["detection boxes"] < 1e-3 * real["resize factor"] and real["detection scores"] < 1e-4
    assert [(r["graph"].split(" (")[0], r["batch"]) for r in report["latency"]] == [
        ("template encoder", 1), ("search detector", 1), ("search detector", 8)]
    assert all(r["torch_ms"] > 0 and r["onnx_ms"] > 0 for r in report["latency"])
    # the printed tables
    assert "| inputs | fused kernels | logits | boxes |" in exported.stdout
    assert "| random, batch 3, K 3 (padded) |" in exported.stdout and "| frame_0.jpg, K 3 |" in exported.stdout
    assert "| search detector (templates cached) | 8 |" in exported.stdout


@pytest.mark.parametrize("batch, k", [(1, 1), (3, 2)])
def test_round_trip_random_inputs_dynamic_batch_and_templates(torch_model, onnx_model, batch, k):
    gen = torch.Generator().manual_seed(batch)
    templates = torch.rand(batch, k, 3, T, T, generator=gen)
    mask = torch.ones(batch, k, dtype=torch.bool)
    if k > 1:  # the last object's first template is padding: ignored, NaN included
        mask[-1, 0] = False
        templates[-1, 0] = float("nan")
    search = torch.rand(batch, 3, 96, 128, generator=gen)
    diff = raw_parity(torch_model, onnx_model, templates, mask, search)
    assert max(diff.values()) < 1e-3, diff
    got = onnx_model.detect(search, onnx_model.encode_templates(templates, mask))
    assert got["logits"].shape == (batch, 24, 32) and got["boxes"].shape == (batch, 24 * 32, 4)


def test_round_trip_real_inputs(torch_model, onnx_model):
    """The demo generator's scene (the CLI's check without --check-image; the CLI run above checked
    a real file) as the Detector preprocesses it: kernels, logits, boxes, detections agree."""
    refs, frame = demo_scene()
    pt = Detector(torch_model, T, (128, 96), score_threshold=0.0)
    ox = Detector(onnx_model, T, (128, 96), score_threshold=0.0)
    row = scene_parity(pt, ox, refs, frame)
    assert 0 < len(ox.predict(frame).scores) <= 10
    assert not parity_failures({"scene": row}, 1e-3), row


def test_cached_templates_broadcast_over_a_batch(torch_model, onnx_model):
    """One object's encoding (batch 1) serves a batch of frames, as in Detector.predict."""
    templates, search = torch.rand(1, 3, 3, T, T), torch.rand(4, 3, 96, 128)
    got = onnx_model.detect(search, onnx_model.encode_templates(templates))
    with torch.inference_mode():
        ref = torch_model.detect(search, torch_model.encode_templates(templates))
    torch.testing.assert_close(got["boxes"], ref["boxes"], atol=1e-3, rtol=0)
    torch.testing.assert_close(got["logits"], ref["logits"], atol=1e-3, rtol=0)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_shifted_xcorr_equals_the_grouped_conv(k):
    search, kernel = torch.randn(3, 4, 7, 9, dtype=torch.float64), torch.randn(3, 4, k, k, dtype=torch.float64)
    torch.testing.assert_close(shifted_xcorr(search, kernel), depthwise_xcorr(search, kernel))
    one = torch.randn(1, 4, k, k, dtype=torch.float64)  # a batch-1 kernel broadcasts
    torch.testing.assert_close(shifted_xcorr(search, one), depthwise_xcorr(search, one.expand(3, -1, -1, -1)))


def test_parity_beyond_tolerance_is_an_error_and_writes_nothing(exported, tmp_path, monkeypatch):
    import pipeline.export as export_module

    def copy_graphs(model, info, folder, opset):  # the export itself is tested above; reuse it
        for name in (ENCODER_FILE, DETECTOR_FILE):
            shutil.copy(exported.onnx / name, folder / name)
        return {name: {"exporter": "dynamo", "opset": 18} for name in (ENCODER_FILE, DETECTOR_FILE)}

    monkeypatch.setattr(export_module, "export_graphs", copy_graphs)
    out = tmp_path / "onnx"
    expected = r"disagrees with PyTorch \(random, batch 3.*logits differ by .* > 1e-12.*nothing written"
    with pytest.raises(UserError, match=expected):
        main(["--checkpoint", str(exported.checkpoint), "--out", str(out), "--repeats", "0", "--tolerance", "1e-12"])
    assert not out.exists() and not list(tmp_path.glob(".onnx*"))


def test_parity_failures_lists_each_difference():
    parity = {"a": {"kernels": 1e-6, "logits": 2e-3, "boxes": float("nan")},
              "b": {"detection boxes": 3e-3, "resize factor": 4.0, "detection scores": float("inf")}}
    assert parity_failures(parity, 1e-3) == [  # detection boxes: allowed 1e-3 times the resize factor
        "a: logits differ by 0.002 > 0.001",
        "a: boxes differ by nan > 0.001",
        "b: detection scores differ by inf > 0.001",
    ]


def test_clear_errors(tmp_path, exported):
    with pytest.raises(UserError, match="nope.pt: checkpoint not found"):
        main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "onnx")])
    assert not (tmp_path / "onnx").exists()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "best.pt").write_bytes(b"")  # --out models would delete it
    with pytest.raises(UserError, match="models: --out holds other files \\(best.pt\\)"):
        main(["--checkpoint", str(exported.checkpoint), "--out", str(tmp_path / "models")])
    with pytest.raises(UserError, match="--out cannot be written"):  # under a regular file, even for root
        main(["--checkpoint", str(exported.checkpoint), "--out", str(tmp_path / "models" / "best.pt" / "onnx")])
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(exported.checkpoint), "--check-image", "x.jpg"])  # without --check-templates
    with pytest.raises(UserError, match="nowhere/template_encoder.onnx: not found"):
        OnnxDetectorModel(tmp_path / "nowhere")


# Head and reference-encoding options that change the graphs: the factorized head (match head
# on the similarity maps) with colour similarity (an extra encoded tensor; the ViT variant has it
# without), and the plainest model (1x1 kernel, no prototypes, no skip).
FACTORIZED = {"type": "factorized", "box_prior": 24.0, "similarity_skip": True, "gate": "and"}
VARIANTS = {
    "factorized+colour": dict(head=FACTORIZED, similarities={"prototypes": {"grid": 4, "top": 4}, "colour": {"bins": 8}}),
    "plain": dict(correlation={"kernel": 1}, similarities=None,
                  head={"type": "joint", "box_prior": 24.0, "similarity_skip": False, "search_features": False}),
    # a one-block DINOv2 ViT-S/14 with its simple pyramid, LoRA adapters merged before export
    "vit+lora": dict(backbone={"type": "vit", "name": "vit_small_patch14_dinov2", "pretrained": False, "blocks": 1,
                               "lora": {"rank": 2, "targets": ["qkv", "attn.proj"]}},
                     neck={"type": "simple_pyramid", "channels": 16}, head=FACTORIZED),
    # the RoI verifier in the search graph: peak picking, top-k, RoIAlign, box refinement
    "factorized+roi": dict(head=FACTORIZED, refine={"type": "roi", "channels": 16, "top_k": 4}),
    # the set-prediction head: a transformer decoder, decoded by best scores without NMS
    "query": dict(head={"type": "query", "channels": 16, "queries": 8, "layers": 2, "box_prior": 24.0}),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_export_parity_for_model_variants(tmp_path, variant):
    """Each variant exports, reads back with the right metadata, and matches PyTorch on random
    inputs (padded batch 3, batch 1 with one template) and on a real demo scene."""
    from pipeline.export import export_graphs, graph_info, random_parity

    cfg = model_config(**(TINY_RAW | VARIANTS[variant]))
    torch.manual_seed(1)
    model = build_detector(cfg).eval()
    if cfg.backbone.lora.rank:  # untrained adapters are zero: train them a step so merging matters
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.05)
        assert merge_lora(model) > 0
    if model.refiner is not None:  # an untrained verifier passes the head's logit through and moves no box
        with torch.no_grad():
            for layer in (model.refiner.score, model.refiner.delta):
                layer.weight.normal_(0, 0.05)
    pt = Detector(model, T, cfg.search_size, score_threshold=0.0)
    info = graph_info(pt)
    assert info.encoded == len(cfg.levels) + sum(s.type == "colour" for s in cfg.similarities)
    assert info.decoding == ("top" if cfg.head.type == "query" else "nms")
    used = export_graphs(model, info, tmp_path, 18)
    assert {how["exporter"] for how in used.values()} == {"dynamo"}, used
    onnx_model = OnnxDetectorModel(tmp_path)
    assert onnx_model.info == info
    parity = random_parity(model, onnx_model)
    refs, frame = demo_scene()
    parity["scene"] = scene_parity(pt, Detector(onnx_model, T, cfg.search_size, score_threshold=0.0), refs, frame)
    assert not parity_failures(parity, 1e-3), parity
