"""Second stage and head cost: the dense head alone, with the RoI verifier, and the query decoder.

    python -m benchmarks.heads [--quick] [--threads N] [--out results.json]

Each variant is params.yaml's detector with one part changed (``model.refine.type: roi``;
``model.head.type: query``), random weights (timing does not depend on them). A call is
:meth:`ReferenceDetector.detect` of one frame at ``model.search_size`` with cached templates
plus the decoding to boxes, i.e. what the Detector runs per frame, under ``no_grad`` in fp32 and,
on a CPU with native bf16, in bf16 autocast as ``evaluate.amp: auto`` would. All variants are
built in this process and timed round by round (:func:`benchmarks.common.measure_interleaved`),
so the ratios against the dense head are taken side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from benchmarks.common import single_section_parser, Table, measure_interleaved, ratio, repeats_note, run_single_section
from pipeline.config import ModelConfig, load_params, parse_params, to_raw
from pipeline.detector import build_detector
from pipeline.detector.backbones.lora import count_parameters
from pipeline.engine.cpu import cpu_info

#: Variant name -> params changes of the model section (nested mappings).
VARIANTS: dict[str, dict[str, Any]] = {
    "dense": {},
    "dense + RoI verifier": {"refine": {"type": "roi"}},
    "query decoder": {"head": {"type": "query"}},
}


@dataclass(frozen=True)
class HeadSettings:
    model: dict[str, Any]  # the base model section (raw params)
    warmup: int = 3
    repeats: int = 20
    max_seconds: float = 120.0


def variant_config(base: dict[str, Any], change: dict[str, Any]) -> ModelConfig:
    """``base`` with ``change`` applied; a part whose ``type`` changes keeps none of its old keys."""
    raw = json.loads(json.dumps(base))
    raw["backbone"]["pretrained"] = False
    for key, value in change.items():
        raw[key] = dict(value) if "type" in value else {**raw.get(key, {}), **value}
    return parse_params({"model": raw}).model


def call_fn(model: torch.nn.Module, size: tuple[int, int], autocast: bool) -> Callable[[], Any]:
    """One frame's detect + decode with templates encoded once, as the Detector runs it."""
    w, h = size
    gen = torch.Generator().manual_seed(0)
    templates = torch.rand(1, 3, 3, 64, 64, generator=gen)
    frame = torch.rand(1, 3, h, w, generator=gen)
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else contextlib.nullcontext
    with torch.no_grad(), amp():
        encoded = model.encode_templates(templates)

    def call() -> None:
        with torch.no_grad(), amp():
            model.decode(model.detect(frame, encoded), 0.3, 0.5, 10)

    return call


def heads_section(settings: HeadSettings, variants: dict[str, dict[str, Any]] = VARIANTS) -> Table:
    """One row per variant and precision; time ratios against the first variant."""
    table = Table("Heads and second stage: ms per frame (detect + decode, cached templates, CPU)",
                  ["variant", "precision", "parameters", "ms/frame", "vs dense"])
    models = {}
    for name, change in variants.items():
        cfg = variant_config(settings.model, change)
        models[name] = (build_detector(cfg).eval(), cfg)
    precisions = ["fp32"] + (["bf16"] if cpu_info().native_bf16 else [])
    spread = 0.0
    for precision in precisions:
        fns = {name: call_fn(model, cfg.search_size, precision == "bf16") for name, (model, cfg) in models.items()}
        timings = measure_interleaved(fns, settings.warmup, settings.repeats, max_seconds=settings.max_seconds)
        base = timings[next(iter(variants))].median
        for name, (model, cfg) in models.items():
            t = timings[name]
            spread = max(spread, t.spread)
            table.add([name, precision, f"{count_parameters(model)[1]:,}", f"{1000 * t.median:.1f}",
                       ratio(t.median, base)], variant=name, precision=precision, seconds=list(t.times))
    w, h = variant_config(settings.model, {}).search_size
    table.notes += [
        f"model: params.yaml's model section with the change named per row, random weights; frame {w}x{h}, "
        "3 references 64x64 encoded once",
        (f"time: {repeats_note('calls', settings.repeats, settings.max_seconds)} after {settings.warmup} warm-up "
         f"calls, the variants called in turn in one process; largest spread (max-min)/median {spread:.0%}"),
        "bf16 rows only on a CPU with native bf16 (elsewhere evaluate.amp: auto runs fp32)",
    ]
    return table


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from pathlib import Path

    ap = single_section_parser("heads", __doc__, "1 warm-up and 2 timed calls")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"), help="whose model section to start from")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = to_raw(load_params(args.params).model)
    settings = HeadSettings(model, warmup=1, repeats=2) if args.quick else HeadSettings(model)
    run_single_section("heads", "needle heads benchmark", args.quick, args.out, lambda: heads_section(settings))


if __name__ == "__main__":
    from pipeline.cli import run_stage

    run_stage(main)
