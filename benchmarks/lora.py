"""Backbone fine-tuning, full vs LoRA: trainable parameters, train-step time and peak memory.

    python -m benchmarks.lora [--quick] [--threads N] [--out results.json]

Model: timm ``vit_small_patch14_dinov2`` (ViT-S/14, random init, no head) with ``dynamic_img_size``
and ``dynamic_img_pad`` (inputs padded to a multiple of 14). Inputs: a batch of 8 at 160x160 (12x12
patches each) and one 512x288 frame (37x21 patches). Variants:

* full fine-tuning: every parameter trains;
* LoRA r8 attn: :func:`pipeline.detector.backbones.lora.apply_lora`, rank 8, alpha 16, on
  ``attn.qkv`` and ``attn.proj`` (not the patch embedding a bare ``proj`` would also take);
* LoRA r8 attn+mlp: the same plus ``mlp.fc1`` and ``mlp.fc2``.

A step is ``forward_features`` (the token map a dense head reads) + mean-square loss + backward +
AdamW, fp32, on CPU. Figures are ratios taken side by side in one run:

* time: all variants built in this process and stepped round by round
  (:func:`benchmarks.common.measure_interleaved`), after a few warm-up steps; the median step;
* memory: each variant in a fresh process (spawn), so no variant inherits another's allocations:
  peak RSS over a few steps minus the RSS once model, optimiser and batch are built, i.e. what
  training adds to holding the model (gradients, AdamW state, activations). The peak is Linux's
  ``VmHWM``, not ``ru_maxrss`` (see :func:`peak_memory`).

LoRA still back-propagates through every block (the adapters sit in all of them); it saves the
weight gradients of the frozen layers and their optimiser state.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import multiprocessing
import resource
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from benchmarks.common import (
    single_section_parser,
    Table,
    measure_interleaved,
    ratio,
    repeats_note,
    run_single_section,
    si,
)
from pipeline.detector.backbones.lora import apply_lora, count_parameters

MODEL = "vit_small_patch14_dinov2"
#: The step's cost does not depend on the learning rate; a tiny one keeps repeated steps on one
#: batch from diverging.
BENCH_LR = 1e-6


@dataclass(frozen=True)
class LoraCase:
    """One input batch: ``batch`` images of ``hw`` = (height, width)."""

    name: str
    batch: int
    hw: tuple[int, int]


@dataclass(frozen=True)
class LoraVariant:
    """Full fine-tuning (``rank`` None) or LoRA with these settings."""

    label: str
    rank: int | None = None
    alpha: float = 16.0
    targets: tuple[str, ...] = ()


FULL = LoraVariant("full fine-tuning")
VARIANTS = (
    FULL,
    LoraVariant("LoRA r8 attn", 8, 16.0, ("attn.qkv", "attn.proj")),
    LoraVariant("LoRA r8 attn+mlp", 8, 16.0, ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")),
)
CASES = (LoraCase("160x160, batch 8", 8, (160, 160)), LoraCase("512x288, batch 1", 1, (288, 512)))


@dataclass(frozen=True)
class LoraSettings:
    """What a run measures and how often. ``model_kwargs`` go to ``timm.create_model`` (the smoke
    test shrinks the ViT with them)."""

    cases: tuple[LoraCase, ...] = CASES
    variants: tuple[LoraVariant, ...] = VARIANTS
    model: str = MODEL
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    warmup: int = 3
    repeats: int = 5
    memory_steps: int = 3  # the first allocates AdamW's state; later ones show the steady peak
    memory: bool = True


def build(settings: LoraSettings, variant: LoraVariant) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The ViT with ``variant`` applied and AdamW over its trainable parameters, in train mode."""
    torch.manual_seed(0)
    model = timm.create_model(settings.model, pretrained=False, num_classes=0, dynamic_img_size=True,
                              dynamic_img_pad=True, **dict(settings.model_kwargs))
    if variant.rank is not None:
        apply_lora(model, variant.rank, variant.alpha, 0.0, variant.targets)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=BENCH_LR)
    return model.train(), opt


def step_fn(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model.forward_features(x).square().mean().backward()
        opt.step()

    return step


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_rss() -> bool:
    """Set this process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory(settings: LoraSettings, variant: LoraVariant, case: LoraCase, threads: int) -> tuple[int, str]:
    """Bytes of peak RSS that ``settings.memory_steps`` steps add over the RSS of the built model,
    optimiser and batch, and how that was read. Run it in a fresh process (allocator caches of other
    variants would hide growth).

    Linux: ``VmHWM``, the process's own peak, reset to the current RSS once everything is built.
    ``ru_maxrss`` does not serve: the kernel carries it over from the parent across fork + exec, so
    a spawned child reports at least the parent's peak. Elsewhere ``ru_maxrss`` is the fallback."""
    torch.set_num_threads(threads)
    model, opt = build(settings, variant)
    x = torch.rand(case.batch, 3, *case.hw, generator=torch.Generator().manual_seed(0))
    step = step_fn(model, opt, x)
    gc.collect()
    baseline = _status_kib("VmRSS")
    if baseline is not None:
        method = "VmHWM (/proc/self/status) " + ("reset to the current RSS via /proc/self/clear_refs after building"
                                                  if _reset_peak_rss() else "(not resettable here)")
        for _ in range(settings.memory_steps):
            step()
        return (_status_kib("VmHWM") - baseline) * 1024, method
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(settings.memory_steps):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) * scale, "ru_maxrss growth"


def peak_memory_fresh(settings: LoraSettings, variant: LoraVariant, case: LoraCase) -> tuple[int, str]:
    """:func:`peak_memory` in a new spawned process."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(peak_memory, settings, variant, case, torch.get_num_threads()).result()


def _steps(n: int) -> str:
    return f"{n} step{'' if n == 1 else 's'}"


def _percent(x: float, base: float) -> str:
    return f"{100 * x / base:.3g} %" if base else "n/a"


def lora_section(settings: LoraSettings) -> Table:
    """One row per case and variant, ratios against the case's first variant (full fine-tuning)."""
    table = Table(
        f"Fine-tuning {settings.model}: full vs LoRA (fp32, CPU)",
        ["input", "variant", "trainable params", "trainable vs full", "s/step", "time vs full",
         "peak memory added", "memory vs full"],
    )
    models = {v: build(settings, v) for v in settings.variants}
    spread = 0.0
    methods: set[str] = set()
    for case in settings.cases:
        x = torch.rand(case.batch, 3, *case.hw, generator=torch.Generator().manual_seed(0))
        steps = {v.label: step_fn(model, opt, x) for v, (model, opt) in models.items()}
        timings = measure_interleaved(steps, settings.warmup, settings.repeats)
        measured = {v: peak_memory_fresh(settings, v, case) if settings.memory else (None, "") for v in settings.variants}
        memory = {v: m for v, (m, _) in measured.items()}
        methods.update(how for _, how in measured.values() if how)
        base = settings.variants[0]
        base_trainable = count_parameters(models[base][0])[0]
        for v in settings.variants:
            trainable, total = count_parameters(models[v][0])
            t = timings[v.label]
            spread = max(spread, t.spread)
            table.add(
                [case.name, v.label, si(trainable), _percent(trainable, base_trainable), f"{t.median:.3f}",
                 ratio(t.median, timings[base.label].median), si(memory[v], "B"), ratio(memory[v], memory[base])],
                case=case.name, variant=v.label, rank=v.rank, alpha=v.alpha, targets=list(v.targets),
                trainable=trainable, total=total, step_s=list(t.times), peak_memory_added_bytes=memory[v],
            )
    gh, gw = settings.cases[0].hw if settings.cases else (0, 0)
    table.notes += [
        (f"model: timm {settings.model}, random init, dynamic_img_size + dynamic_img_pad, no head"
         + (f", {dict(settings.model_kwargs)}" if settings.model_kwargs else "")
         + f"; {count_parameters(models[settings.variants[0]][0])[1]:,} parameters; "
         f"first input {gw}x{gh} (width x height)"),
        "step: forward_features + mean-square loss + backward + AdamW (lr 1e-6), fp32; LoRA dropout 0",
        (f"time: {repeats_note('steps', settings.repeats, None)} after {_steps(settings.warmup)} of warm-up, "
         f"the variants stepped in turn in one process; largest spread (max-min)/median {spread:.0%}"),
        (f"memory: peak RSS over {_steps(settings.memory_steps)} minus RSS once model, optimiser and batch were "
         f"built, each variant in a fresh process; peak read as {'; '.join(sorted(methods))}"
         if settings.memory else "memory: not measured"),
    ]
    return table


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = single_section_parser("lora", __doc__, "1 warm-up and 2 timed steps")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = LoraSettings(warmup=1, repeats=2, memory_steps=2) if args.quick else LoraSettings()
    run_single_section("lora", "needle LoRA fine-tuning benchmark", args.quick, args.out,
                       lambda: lora_section(settings))


if __name__ == "__main__":
    from pipeline.cli import run_stage

    run_stage(main)
