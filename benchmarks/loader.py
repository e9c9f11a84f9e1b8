"""Data-loading throughput of the training DataLoader, next to the train step it feeds.

The loader is built as :func:`pipeline.engine.trainer.fit` builds it (TrainDataset over the
prepared train split, the configured ``train.batch_size`` and ``train.workers``, a fresh set of
workers every epoch), on the real prepared data; where there is none, a demo set is generated
into a temp dir first (and the table says so).
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from benchmarks.common import Table, fmt, measure, ratio
from benchmarks.train_step import (
    Variant,
    configured_variant,
    demo_case,
    make_step,
    make_trainer,
    synthetic_batch,
)
from pipeline.config import DemoConfig, Params
from pipeline.data.dataset import TrainDataset, collate, load_split
from pipeline.engine.amp import Precision
from pipeline.paths import Paths

log = logging.getLogger(__name__)

#: The issue's bar: the loader alone must deliver at least this multiple of the step's rate.
REQUIRED = 2.0


@dataclass(frozen=True)
class LoaderSettings:
    data_root: Path = Path(".")
    epochs: int = 3  # passes over the loader alone (median)
    max_batches: int | None = None  # None: whole epochs, as training sees them
    train_epochs: int = 1  # passes of training fed by the loader (median); 0 = skip that row
    demo: DemoConfig | None = None  # size of the demo set generated when data_root has no data
    step_warmup: int = 1
    step_repeats: int = 10


def find_or_make_data(root: Path, params: Params, demo: DemoConfig | None, scratch: Path) -> tuple[Paths, str]:
    """``Paths`` holding prepared data with resized templates, and where it came from: ``root``'s
    own (``dvc repro resize_templates``), or a demo set generated into ``scratch``."""
    paths = Paths(root)
    if paths.manifest.is_file() and paths.templates_manifest.is_file():
        return paths, f"prepared data under {root.resolve()} ({paths.manifest.relative_to(root)})"
    from pipeline.prepare import (
        prepare,  # only when generating: these stages are not needed otherwise
    )
    from pipeline.resize_templates import resize_templates

    made = Paths(scratch)
    demo = demo or params.data.demo
    log.warning("no prepared data under %s: generating a demo set into %s (run `dvc repro resize_templates` "
                "there to benchmark the pipeline's own data)", root.resolve(), scratch)
    prepare(made, dataclasses.replace(params.data, source="demo", format="auto", demo=demo))
    resize_templates(made, params.templates)
    return made, (f"no prepared data under {root.resolve()} (run `dvc repro resize_templates` there to use it): "
                  f"a demo set ({demo.train_objects} train objects x {demo.sequences_per_object} sequences x "
                  f"{demo.frames_per_sequence} frames) was generated into a temp dir")


def build_loader(paths: Paths, params: Params, device: torch.device, max_batches: int | None) -> DataLoader:
    """The training DataLoader of ``fit`` (single process), optionally cut to ``max_batches``."""
    cfg, mcfg = params.train, params.model
    samples = load_split(paths, "train")
    dataset: torch.utils.data.Dataset = TrainDataset(
        samples, params.templates.size, mcfg.search_size, cfg.crop_size, cfg.background_crop_prob, cfg.augment,
        cfg.seed, cfg.identity_aug)
    if max_batches is not None:
        dataset = Subset(dataset, range(min(len(dataset), max_batches * cfg.batch_size)))
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=cfg.seed, drop_last=False)
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                      collate_fn=collate, drop_last=len(dataset) > cfg.batch_size,
                      pin_memory=device.type == "cuda", persistent_workers=False)


def loader_pass(loader: DataLoader, epoch: int) -> tuple[int, float, float, int]:
    """One pass: (samples, seconds from iter() to the last batch, seconds after the first batch,
    samples after the first batch). iter() starts the workers, as every training epoch does."""
    loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
    start = time.perf_counter()
    n = first_n = 0
    first_at = start
    for i, batch in enumerate(loader):
        n += batch["search"].shape[0]
        if i == 0:
            first_at, first_n = time.perf_counter(), n
    end = time.perf_counter()
    return n, end - start, end - first_at, n - first_n


def loader_section(
    settings: LoaderSettings, params: Params, device: torch.device, scratch: Path, auto: Precision,
    step_rate: tuple[Variant, float] | None = None,
) -> Table:
    """Samples/s of the DataLoader alone (whole pass and after the first batch), the configured
    train step alone (``step_rate`` from the train section, else measured here) and training fed
    by the loader, with their ratios; ``auto`` is what ``train.amp: auto`` resolves to here."""
    paths, source = find_or_make_data(settings.data_root, params, settings.demo, scratch)
    loader = build_loader(paths, params, device, settings.max_batches)
    cfg = params.train
    passes = [loader_pass(loader, e) for e in range(max(1, settings.epochs))]
    whole = statistics.median(n / t for n, t, _, _ in passes)
    after_first = [m / t for _, _, t, m in passes if m > 0 and t > 0]
    steady = statistics.median(after_first) if after_first else None

    case = demo_case(params)
    if step_rate is None:
        variant = configured_variant(params, device, auto)
        step = make_step(case, variant, device)
        timing = measure(step, settings.step_warmup + 1, settings.step_repeats, device, 30.0)
        step_rate = (variant, case.batch / timing.median)
    variant, step_ips = step_rate

    fed = None
    if settings.train_epochs > 0:
        train = make_trainer(case, variant, device)
        warm = [{k: v.to(device) for k, v in synthetic_batch(case).items()}]
        train(warm, 1)  # oneDNN primitives and allocator warm before the timed epochs
        rates = []
        for e in range(settings.train_epochs):
            loader.sampler.set_epoch(100 + e)  # type: ignore[union-attr]
            rates.append(train(loader, len(loader))["images_per_s"])
        fed = statistics.median(rates)

    n = passes[0][0]
    w = cfg.workers
    table = Table("Data loading", ["what", "samples/s", "vs train step"])
    table.add([f"DataLoader alone, {w} workers, whole pass (worker start-up included)", fmt(whole),
               ratio(whole, step_ips)], what="loader_whole_pass", samples_per_s=whole)
    table.add([f"DataLoader alone, {w} workers, after the first batch", fmt(steady), ratio(steady, step_ips)],
              what="loader_after_first_batch", samples_per_s=steady)
    table.add([f"train step alone ({variant.label}, synthetic batch)", fmt(step_ips), "1.00×"],
              what="train_step", samples_per_s=step_ips, precision=variant.label)
    if fed is not None:
        table.add(["training fed by the DataLoader (train_one_epoch's images/s)", fmt(fed), ratio(fed, step_ips)],
                  what="train_fed_by_loader", samples_per_s=fed)
    verdict = ("the loader is not the bottleneck" if whole >= REQUIRED * step_ips else
               "the loader IS the bottleneck: raise train.workers or make samples cheaper")
    table.notes += [
        f"data: {source}; {n} samples a pass ({len(loader)} batches of {cfg.batch_size}), "
        f"{'whole train split' if settings.max_batches is None else f'first {settings.max_batches} batches'}; "
        f"median of {len(passes)} passes (loader) and {settings.train_epochs} (fed training)",
        f"samples: crop {cfg.crop_size} px (0 = whole frame at {list(params.model.search_size)}), "
        f"{params.templates.size} px templates, augment {cfg.augment}; the step row: {case.describe()}",
        f"loader / step = {ratio(whole, step_ips)} (bar: ≥ {REQUIRED:g}×): {verdict}",
        "the loader's workers and the step share the CPU cores during training; the last row is what an "
        "epoch actually achieves (its start-up included)",
    ]
    return table

