"""Speed benchmarks of needle in one run: train step, data loading, inference, evaluation metrics,
template resizing. Prints one markdown table per section and the machine; ratios (bf16 / fp32,
cached / re-encode, ONNX / eager, loader / step) are always taken between rows of the same run.

    python -m benchmarks.speed [--quick] [--only train,loader,inference,metrics,resize]
        [--out results.json] [--device auto|cpu|cuda] [--params params.yaml] [--data .]
        [--seed-batch N] [--threads N] [--no-onnx]

Sections (details in each module's docstring):

* ``train`` (:mod:`benchmarks.train_step`): images/s of one optimiser step (the trainer's
  ``train_one_epoch``) in fp32, bf16 autocast and bf16 + channels_last on CPU (fp16 on CUDA), for
  the demo config (params.yaml: its crops, templates and batch) and the seed config (ConvNeXt-T,
  P3-P5, whole 1024x576 frames, 3x384 templates); FLOPs per image and achieved FLOP/s against a
  square-matmul peak measured in the same dtype on the same machine.
* ``backbones`` (:mod:`benchmarks.train_step`): images/s of the demo's train step with each
  candidate backbone (random-init ConvNeXt-atto, pretrained EfficientNet-Lite0 with TF or
  symmetric padding, frozen through P1 or P3), side by side.
* ``loader`` (:mod:`benchmarks.loader`): samples/s of the training DataLoader alone with
  ``train.workers``, next to the configured train step and to training fed by that loader.
* ``inference`` (:mod:`benchmarks.inference`): ms/frame with cached template features vs
  re-encoding them every frame, batch 1 and 8, PyTorch eager vs ONNX Runtime (``pipeline.export``).
* ``metrics`` (:mod:`benchmarks.scoring`): ``score_detections`` on 10,000 synthetic frames.
* ``resize`` (:mod:`benchmarks.resize_section`): the resize-templates stage vs a naive resize.

``--quick`` keeps the model shapes but cuts repeats, the seed config's batch-8 inference and ONNX
export (minutes on 2 cores), the loader to 10 batches and resizing to 6 smaller photos: for
checking that everything runs (about 4 minutes on 2 cores), not for figures. Record figures of a
full run in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import Table, machine, machine_lines, precision_line
from benchmarks.inference import InferenceSettings, inference_cases, inference_section
from benchmarks.loader import LoaderSettings, loader_section
from benchmarks.resize_section import ResizeSettings, resize_section
from benchmarks.scoring import ScoringSettings, scoring_section
from benchmarks.train_step import (
    TrainSettings,
    backbone_cases,
    backbones_section,
    configured_variant,
    demo_case,
    seed_case,
    train_section,
)
from pipeline.cli import run_stage
from pipeline.config import DemoConfig, Params, load_params
from pipeline.engine.amp import Precision, resolve_precision
from pipeline.io import write_text

SECTIONS = ("train", "backbones", "loader", "inference", "metrics", "resize")


@dataclass(frozen=True)
class Settings:
    """Everything a run measures and how often."""

    train: TrainSettings
    backbones: TrainSettings
    loader: LoaderSettings
    inference: InferenceSettings
    scoring: ScoringSettings
    resize: ResizeSettings


def default_settings(
    params: Params, device: torch.device, quick: bool = False, data_root: Path = Path("."),
    seed_batch: int | None = None, onnx: bool = True,
) -> Settings:
    """Full settings (figures for the docs) or ``quick`` ones (the same shapes, few repeats)."""
    # ~3 GB of activations per seed-scale sample in fp32: small batches on a CPU box, the seed's
    # own scale on a GPU.
    seed_batch = seed_batch or (8 if device.type == "cuda" else 1)
    demo, seed = inference_cases(params)
    if quick:
        return Settings(
            train=TrainSettings((demo_case(params), seed_case(params, seed_batch)), warmup=0, repeats=2,
                                peak_sizes=(1024, 2048)),
            backbones=TrainSettings(backbone_cases(params), warmup=0, repeats=2),
            loader=LoaderSettings(data_root, epochs=1, max_batches=10, train_epochs=1, step_repeats=3,
                                  demo=DemoConfig(train_objects=4, val_objects=1, sequences_per_object=2,
                                                  frames_per_sequence=5, photo_objects=0.0, photo_grounds=0.0,
                                                  lookalikes=0.0)),
            inference=InferenceSettings((demo, dataclasses.replace(seed, batches=(1,), onnx=False)), warmup=1,
                                        repeats=2, onnx=onnx),
            scoring=ScoringSettings(warmup=0, repeats=1),
            resize=ResizeSettings(count=6, side=1536, workers=params.templates.workers, repeats=1),
        )
    return Settings(
        # a GPU needs bigger matrices to reach its peak
        train=TrainSettings((demo_case(params), seed_case(params, seed_batch)),
                            peak_sizes=(2048, 4096, 8192) if device.type == "cuda" else (1024, 2048, 4096)),
        backbones=TrainSettings(backbone_cases(params)),
        loader=LoaderSettings(data_root),
        inference=InferenceSettings((demo, seed), onnx=onnx),
        scoring=ScoringSettings(repeats=3),
        resize=ResizeSettings(workers=params.templates.workers),
    )


def run(
    settings: Settings, params: Params, device: torch.device, only: Sequence[str] = SECTIONS,
    show: Callable[[Table], None] | None = None, auto: Precision | None = None,
) -> dict[str, Table]:
    """Run the ``only`` sections in order; ``show`` gets each table as soon as it is done.
    ``auto``: what ``amp: auto`` resolves to (default: on this machine's CPU or GPU)."""
    auto = auto or resolve_precision("auto", device)
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    tables: dict[str, Table] = {}
    step_rate = None
    with tempfile.TemporaryDirectory(prefix="needle-speed-") as tmp:
        scratch = Path(tmp)

        def done(name: str, table: Table) -> None:
            tables[name] = table
            if show is not None:
                show(table)

        if "train" in only:
            table, results = train_section(settings.train, device, auto)
            done("train", table)
            # The loader is compared with the step the trainer runs (train.amp, train.channels_last).
            wanted = configured_variant(params, device, auto)
            step_rate = next(((r.variant, r.images_per_s) for r in results
                              if r.case == "demo" and r.variant.amp == wanted.amp
                              and r.variant.channels_last == wanted.channels_last), None)
        if "backbones" in only:
            done("backbones", backbones_section(settings.backbones, device, auto))
        if "loader" in only:
            done("loader", loader_section(settings.loader, params, device, scratch / "data", auto, step_rate))
        if "inference" in only:
            done("inference", inference_section(settings.inference, device, scratch, auto))
        if "metrics" in only:
            done("metrics", scoring_section(settings.scoring))
        if "resize" in only:
            done("resize", resize_section(settings.resize, scratch / "resize"))
    return tables


def load_warning() -> str | None:
    """A warning when other processes keep the cores busy: torch's thread pool waits for every
    thread at each op, so one taken core can make small ops 10-40x slower (seen on 2 cores)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if load < 0.5 * cores:
        return None
    return (f"WARNING: 1-min load average {load:.1f} on {cores} cores before starting: other processes are "
            f"running, and torch (threads: {torch.get_num_threads()}) stalls whenever one of its cores is taken. "
            "Take figures on a quiet machine (or compare with --threads 1).")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few repeats: check that it runs, not figures")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections ({','.join(SECTIONS)})")
    ap.add_argument("--out", type=Path, help="also write the tables and raw numbers as JSON here")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA if available")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"), help="the demo config (params.yaml)")
    ap.add_argument("--data", type=Path, default=Path("."),
                    help="repository root holding data/prepared and data/templates (else a demo set is generated)")
    ap.add_argument("--seed-batch", type=int, help="train batch of the seed config (default: 1 on CPU, 8 on CUDA)")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX export and its rows")
    args = ap.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = sorted(set(args.only) - set(SECTIONS))
    if bad or not args.only:
        ap.error(f"--only: unknown section(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(SECTIONS)}")
    if args.seed_batch is not None and args.seed_batch < 1:
        ap.error("--seed-batch must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.getLogger().setLevel(logging.WARNING)  # the tables, not the stages' INFO lines
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    params = load_params(args.params)
    settings = default_settings(params, device, args.quick, args.data, args.seed_batch, not args.no_onnx)
    mode = "quick (few repeats: not for the docs)" if args.quick else "full"
    print(f"# needle speed benchmarks: {mode}; device {device}; params {args.params}", flush=True)
    print(f"{precision_line(device)}\n", flush=True)
    busy = load_warning()
    if busy:
        print(busy + "\n", flush=True)
    started = time.perf_counter()
    tables = run(settings, params, device, args.only, show=lambda t: print(t.markdown() + "\n", flush=True))
    info = machine()
    info["wall_seconds"] = round(time.perf_counter() - started, 1)
    print("\n".join(machine_lines(info)) + f"\nwall time: {info['wall_seconds']:.0f} s")
    if args.out:
        payload = {"mode": "quick" if args.quick else "full", "device": str(device), "argv": sys.argv[1:],
                   "machine": info, "sections": {name: t.to_json() for name, t in tables.items()}}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, json.dumps(payload, indent=2, default=str) + "\n")
        print(f"results: {args.out}")


if __name__ == "__main__":
    run_stage(main)
