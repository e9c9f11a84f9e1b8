"""Smoke test of benchmarks.speed: every section runs in-process at tiny sizes and prints the
expected table. Timings are never asserted (they depend on the machine and its load)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks import inference as inference_module
from benchmarks.common import measure_interleaved
from benchmarks.inference import (
    NOT_AVAILABLE,
    InferenceCase,
    InferenceSettings,
    inference_section,
    onnx_model,
)
from benchmarks.loader import LoaderSettings, find_or_make_data
from benchmarks.resize_section import ResizeSettings
from benchmarks.scoring import ScoringSettings
from benchmarks.speed import SECTIONS, Settings, parse_args, run
from benchmarks.train_step import TrainCase, TrainSettings, backbone_cases, count_flops, train_section
from pipeline.config import DataConfig, Params, load_params
from pipeline.data.dataset import load_split
from pipeline.detector import build_detector
from pipeline.engine.amp import Precision
from pipeline.paths import Paths
from pipeline.prepare import prepare
from pipeline.resize_templates import resize_templates
from benchmarks.train_step import with_model
from tests.datasets import demo_config

REPO = Path(__file__).resolve().parents[1]
# What ``amp: auto`` resolves to on a CPU with native bf16, and on one that emulates it.
NATIVE_BF16 = Precision("cpu", torch.bfloat16)
EMULATED_BF16 = Precision("cpu", None)


def tiny_params() -> Params:
    """params.yaml with a model, crops and templates small enough for seconds per section."""
    p = load_params(REPO / "params.yaml")
    return dataclasses.replace(
        p,
        model=with_model(p, neck={"channels": 16}, head={"channels": 16}, search_size=[96, 64]),
        templates=dataclasses.replace(p.templates, size=32, workers=1),
        train=dataclasses.replace(p.train, batch_size=2, crop_size=64, workers=1),
    )


def prepared_root(root: Path, cpn_root: Path, params: Params) -> Path:
    """``root`` with data/prepared and data/templates made from the tiny cpn data set."""
    paths = Paths(root)
    prepare(paths, DataConfig(source=str(cpn_root)))
    resize_templates(paths, params.templates)
    return root


def tiny_settings(params: Params, data_root: Path) -> Settings:
    demo = InferenceCase("demo", params, templates=2)
    return Settings(
        train=TrainSettings((TrainCase("demo", params, 2, (64, 64), 2), TrainCase("seed", params, 1, (64, 96), 2)),
                            warmup=0, repeats=1, peak_sizes=(128,)),
        backbones=TrainSettings(backbone_cases(params, (("atto", "convnext_atto", False, 0),
                                                        ("lite0 P3", "efficientnet_lite0", False, 3),
                                                        ("not installed", "efficientnet_lite0", "no-such-package", 1))),
                                warmup=0, repeats=1),
        loader=LoaderSettings(data_root, epochs=1, max_batches=2, train_epochs=1, step_warmup=0, step_repeats=1),
        inference=InferenceSettings((demo,), batches=(1, 2), warmup=0, repeats=1, onnx=False),
        scoring=ScoringSettings(frames=200, warmup=0, repeats=1),
        resize=ResizeSettings(count=2, side=256, size=64, workers=1, repeats=1),
    )


@pytest.mark.filterwarnings("ignore::pipeline.engine.amp.SlowPrecisionWarning")  # NATIVE_BF16 on any host
def test_every_section_prints_its_table(tmp_path: Path, cpn_root: Path, one_thread: None) -> None:
    params = tiny_params()
    shown: list[str] = []
    root = prepared_root(tmp_path / "repo", cpn_root, params)
    tables = run(tiny_settings(params, root), params, torch.device("cpu"), SECTIONS,
                 show=lambda t: shown.append(t.markdown()), auto=NATIVE_BF16)
    assert list(tables) == list(SECTIONS)
    assert len(shown) == len(SECTIONS)

    train = tables["train"]
    assert train.columns == ["config", "precision", "auto = bf16", "batch", "s/step", "images/s", "vs fp32",
                             "GFLOP/image", "achieved FLOP/s", "matmul peak FLOP/s", "of peak"]
    assert [(r[0], r[1], r[2]) for r in train.rows] == [
        (c, v, auto) for c in ("demo", "seed")
        for v, auto in (("fp32", ""), ("bf16 autocast", "✓"), ("bf16 + channels_last", "✓"))]
    assert train.column("vs fp32")[0] == "1.00×"
    assert all(r["flops_per_step"] > 0 for r in train.raw)

    backbones = tables["backbones"]
    assert [(r[0], r[1]) for r in backbones.rows] == [
        (b, v) for b in ("atto", "lite0 P3") for v in ("fp32 + channels_last", "bf16 + channels_last")]
    assert backbones.rows[0][4] == "1.00×" and backbones.rows[1][4] == "1.00×"
    assert any(n.startswith("not installed: not timed (") and "no-such-package" in n for n in backbones.notes)

    loader = tables["loader"]
    assert loader.columns == ["what", "samples/s", "vs train step"]
    assert len(loader.rows) == 4 and loader.rows[2][2] == "1.00×"
    assert any(str(root.resolve()) in n for n in loader.notes)  # the prepared data was used
    assert any("bar: ≥ 2×" in n for n in loader.notes)

    inf = tables["inference"]
    assert inf.columns[:7] == ["config", "batch", "runtime", "auto = bf16", "re-encode ms/frame",
                               "cached ms/frame", "cached / re-encode"]
    assert [(r[1], r[2], r[3]) for r in inf.rows] == [
        ("1", "PyTorch eager", ""), ("1", "PyTorch eager bf16", "✓"), ("1", "ONNX Runtime", ""),
        ("2", "PyTorch eager", ""), ("2", "PyTorch eager bf16", "✓"), ("2", "ONNX Runtime", "")]
    assert inf.rows[2][4].startswith("n/a")  # ONNX switched off here: a row that says so
    assert inf.rows[0][6].endswith("×") and inf.rows[1][8].endswith("×")  # bf16 vs fp32 eager, same run

    metrics = tables["metrics"]
    assert metrics.rows[0][0].startswith("score_detections")
    assert [r[0].strip() for r in metrics.rows[1:]] == [
        "of which COCO AP (faster-coco-eval, with size bins)",
        "same AP with pycocotools (the reference; not used)",
        "of which top-1 table + summary",
        "of which ST-IoU per sequence"]
    assert metrics.rows[0][-1].startswith("n/a")  # target is for 10,000 frames
    assert any("the time of pycocotools" in n for n in metrics.notes)

    resize = tables["resize"]
    assert resize.columns == ["method", "seconds", "templates/s", "speed-up"] and len(resize.rows) == 3

    json.dumps({name: t.to_json() for name, t in tables.items()})  # --out must serialise every table


def test_loader_generates_demo_data_where_there_is_none(tmp_path: Path) -> None:
    params = tiny_params()
    demo = demo_config(train_objects=2, val_objects=1, sequences_per_object=1, frames_per_sequence=2)
    paths, source = find_or_make_data(tmp_path / "empty", params, demo, tmp_path / "scratch")
    assert "generated into a temp dir" in source
    assert len(load_split(paths, "train")) == 4


def test_onnx_column_says_when_the_export_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    params = tiny_params()
    monkeypatch.setattr(inference_module.importlib.util, "find_spec", lambda name: None)
    model = build_detector(params.model)
    assert onnx_model(model, InferenceCase("demo", params), tmp_path, torch.device("cpu")) == NOT_AVAILABLE


@pytest.mark.filterwarnings("ignore::pipeline.engine.amp.SlowPrecisionWarning")
def test_onnx_rows_are_filled_when_the_export_exists(tmp_path: Path, one_thread: None) -> None:
    pytest.importorskip("pipeline.export")
    params = tiny_params()
    settings = InferenceSettings((InferenceCase("demo", params, templates=2),), batches=(2,), warmup=0, repeats=1)
    table = inference_section(settings, torch.device("cpu"), tmp_path, NATIVE_BF16)
    onnx_row = table.rows[2]
    assert onnx_row[2] == "ONNX Runtime"
    assert not onnx_row[4].startswith("n/a"), onnx_row[4]  # exported, loaded and timed
    assert onnx_row[8].endswith("×")  # vs eager, same run


def test_a_cpu_that_emulates_bf16_gets_fp32_rows_and_the_emulation_cost(tmp_path: Path, one_thread: None) -> None:
    params = tiny_params()
    train, results = train_section(
        TrainSettings((TrainCase("demo", params, 2, (64, 64), 2),), warmup=0, repeats=1, peak_sizes=(128,)),
        torch.device("cpu"), EMULATED_BF16)
    assert [(r[1], r[2]) for r in train.rows] == [("fp32", "✓"), ("fp32 + channels_last", "✓")]
    assert all(r.variant.amp == "off" for r in results)
    assert train.column("vs fp32") == ["1.00×", train.column("vs fp32")[1]]
    assert any(n.startswith("no bf16 rows: this CPU emulates bf16") and "FLOP/s in bf16" in n for n in train.notes)

    settings = InferenceSettings((InferenceCase("demo", params, templates=2),), batches=(1,), warmup=0, repeats=1,
                                 onnx=False)
    inf = inference_section(settings, torch.device("cpu"), tmp_path, EMULATED_BF16)
    assert inf.columns[3] == "auto = fp32"
    assert [(r[2], r[3]) for r in inf.rows] == [("PyTorch eager", "✓"), ("PyTorch eager bf16", ""),
                                                ("ONNX Runtime", "")]
    assert inf.rows[1][4] == "n/a (auto = fp32 here: this CPU emulates bf16)"


def test_flop_count_of_grouped_conv_backward_is_twice_the_forward() -> None:
    # torch's own formula counts a depth-wise conv's weight gradient as a dense conv's
    for groups in (1, 16):
        conv = nn.Conv2d(16, 16, 7, padding=3, groups=groups)
        x = torch.randn(2, 16, 8, 8, requires_grad=True)
        forward = count_flops(lambda conv=conv, x=x: conv(x))
        assert count_flops(lambda conv=conv, x=x: conv(x).sum().backward()) == 3 * forward


def test_cli_sections() -> None:
    assert parse_args(["--only", "metrics,resize", "--quick"]).only == ["metrics", "resize"]
    with pytest.raises(SystemExit):
        parse_args(["--only", "train,speed"])


def test_interleaved_timing_takes_the_calls_in_turn() -> None:
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("encode", "cached", "re-encode")}
    timings = measure_interleaved(fns, warmup=1, rounds=4)
    assert calls[:3] == ["encode", "cached", "re-encode"]  # one warm-up call each
    assert calls[3:] == ["encode", "cached", "re-encode"] * 4  # then round by round, never in blocks
    assert {name: len(t.times) for name, t in timings.items()} == {"encode": 4, "cached": 4, "re-encode": 4}


def test_interleaved_timing_stops_after_its_budget_but_not_before_min_rounds() -> None:
    calls: list[str] = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    timings = measure_interleaved(fns, warmup=0, rounds=50, max_seconds=0.0, min_rounds=3)
    assert calls == ["a", "b"] * 3
    assert all(len(t.times) == 3 for t in timings.values())
