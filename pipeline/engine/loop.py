"""One training epoch and one validation pass; no I/O beyond the loaders."""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pipeline.detector.losses import weighted_total
from pipeline.engine.amp import Precision
from pipeline.metrics.coco import coco_ap
from pipeline.metrics.topone import summarize, top1_table

log = logging.getLogger(__name__)


@dataclass
class StepState:
    """Counters that survive a resume."""

    step: int = 0  # optimiser steps taken so far
    history: list[dict] = field(default_factory=list)


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if channels_last:
        out["search"] = out["search"].contiguous(memory_format=torch.channels_last)
    return out


def _progress(iterable: Iterable, total: int, desc: str, enabled: bool):
    """tqdm on a terminal; plain, sparse log lines otherwise (see ``log_every``)."""
    if enabled and sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, dynamic_ncols=True, leave=False)
    return iterable


def pair_targets(batch: dict, shifted_pairs: bool) -> dict[str, torch.Tensor]:
    """Criterion targets for the model's outputs: ``B`` true pairs, then (with ``shifted_pairs``)
    ``B`` pairs of each search image with the next sample's templates. A shifted pair keeps the
    box only when both samples show the same object; otherwise the target is absent."""
    boxes, present = batch["boxes"], batch["present"]
    if not shifted_pairs:
        return {"boxes": boxes, "present": present}
    same = batch["object"] == batch["object"].roll(1)
    shifted_boxes = torch.where(same[:, None], boxes, torch.full_like(boxes, float("nan")))
    return {"boxes": torch.cat([boxes, shifted_boxes]), "present": torch.cat([present, present & same])}


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    loader: Iterable[dict],
    num_batches: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    precision: Precision,
    loss_weights: Mapping[str, float],
    device: torch.device,
    state: StepState,
    epoch: int,
    accumulate: int = 1,
    grad_clip: float = 0.0,
    channels_last: bool = False,
    log_every: int = 10,
    shifted_pairs: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    is_main: bool = True,
) -> dict[str, float]:
    """Train for one pass over ``loader``; returns epoch means of every loss term, ``loss``, ``lr``
    and ``images_per_s``. ``on_step(step, metrics)`` is called every ``log_every`` optimiser steps.
    """
    model.train()
    sums: dict[str, float] = {}
    seen, started = 0, time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    bar = _progress(loader, num_batches, f"epoch {epoch}", is_main)
    for i, batch in enumerate(bar):
        batch = _to_device(batch, device, channels_last)
        with precision.autocast():
            outputs = model(batch["templates"], batch["search"], batch["template_mask"], shifted_pairs=shifted_pairs)
        terms = criterion(outputs, pair_targets(batch, shifted_pairs))
        loss = weighted_total(terms, loss_weights)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss.item()} at epoch {epoch}, batch {i} ({ {k: float(v) for k, v in terms.items()} }); "
                "lower train.lr or set train.amp: off"
            )
        scaler.scale(loss / accumulate).backward()
        last_of_epoch = i + 1 == num_batches
        if (i + 1) % accumulate == 0 or last_of_epoch:
            if grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            state.step += 1
            if on_step is not None and state.step % log_every == 0:
                on_step(state.step, {**{f"step_{k}": float(v.detach()) for k, v in terms.items()}, "step_loss": float(loss.detach()),
                                     "lr": max(g["lr"] for g in optimizer.param_groups)})
        n = batch["search"].shape[0]
        seen += n
        for k, v in {**terms, "loss": loss}.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * n
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        elif is_main and (i + 1) % (log_every * 5) == 0:
            log.info("epoch %d: batch %d/%d, loss %.4f", epoch, i + 1, num_batches, float(loss.detach()))
    elapsed = max(time.perf_counter() - started, 1e-9)
    out = {k: v / max(seen, 1) for k, v in sums.items()}
    out["lr"] = max(g["lr"] for g in optimizer.param_groups)
    out["images_per_s"] = seen / elapsed
    return out


@torch.no_grad()
def predict_loader(
    model: nn.Module,
    loader: Iterable[dict],
    precision: Precision,
    device: torch.device,
    score_threshold: float,
    nms_iou: float,
    max_detections: int,
    channels_last: bool = False,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[int]]:
    """Detections per frame in the frame's original pixels, and the frame indices, in loader order."""
    model.eval()
    dets: list[tuple[np.ndarray, np.ndarray]] = []
    order: list[int] = []
    for batch in loader:
        batch = _to_device(batch, device, channels_last)
        with precision.autocast():
            outputs = model(batch["templates"], batch["search"], batch["template_mask"])
        per_frame = model.decode(outputs, score_threshold, nms_iou, max_detections)
        for (boxes, scores), scale, idx in zip(per_frame, batch["scale"], batch["index"]):
            dets.append(((boxes / scale).cpu().numpy(), scores.cpu().numpy()))
            order.append(int(idx))
    return dets, order


def validate(
    model: nn.Module,
    loader: Iterable[dict],
    gt_boxes: list,
    precision: Precision,
    device: torch.device,
    score_threshold: float,
    nms_iou: float,
    max_detections: int,
    iou_threshold: float,
    channels_last: bool = False,
) -> dict[str, float]:
    """AP/AP50/AP75 (pycocotools) plus top-1 success, FP rate and F1 on whole validation frames
    (-1 where undefined)."""
    dets, order = predict_loader(model, loader, precision, device, 0.0, nms_iou, max_detections, channels_last)
    gts = [gt_boxes[i] for i in order]
    metrics = coco_ap(gts, dets)
    top1 = summarize(top1_table(gts, dets), score_threshold, iou_threshold)
    metrics.update({k: top1[k] for k in ("success", "fp_rate", "f1")})
    return {k: -1.0 if v is None or math.isnan(v) else float(v) for k, v in metrics.items()}
