"""The whole training run: data, model, optimiser, schedule, resume, validation, checkpoints, MLflow."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import random
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from pipeline.config import ConfigError, EvaluateConfig, ModelConfig, Params, TrainConfig, to_flat_dict, to_raw
from pipeline.data.dataset import EvalDataset, Sample, TrainDataset, collate, load_split
from pipeline.data.scratch import ScratchSet
from pipeline.detector import build_criterion, build_detector
from pipeline.engine import distributed as ddp
from pipeline.engine.amp import Precision, describe_precision, precision_tags, resolve_precision
from pipeline.engine.checkpoint import load_checkpoint, params_digest, rng_state, save_checkpoint, set_rng_state
from pipeline.engine.loop import StepState, predict_loader, train_one_epoch, validate
from pipeline.engine.schedule import build_scheduler
from pipeline.engine.dataset_inputs import log_manifest
from pipeline.engine.run_names import changed_params, committed_params, dvc_tags, run_name
from pipeline.engine.tracking import Tracker, default_tracking_uri
from pipeline.metrics.calibration import DEFAULT_THRESHOLD, choose_threshold
from pipeline.metrics.topone import top1_table
from pipeline.paths import Paths
from pipeline.realset import is_built

log = logging.getLogger(__name__)

#: What ``best.pt`` keeps of a full checkpoint: enough to rebuild the model and trace its run. At
#: the end of a run :func:`calibrate_presence` adds ``presence``, the score threshold chosen on
#: the validation split with these weights.
BEST_KEYS = ("model", "epoch", "best", "digest", "run_id", "model_config", "template_size", "template_pad",
             "template_pad_value")

#: Fields that do not change what a run computes; a resume may differ in them (``presence_metric``
#: only changes the threshold chosen after the last epoch, which a resumed run chooses again;
#: ``register_model`` only what happens to the logged model).
_RUN_INDEPENDENT = {"resume", "workers", "log_every", "presence_metric", "register_model"}

#: Keys that say what happens to the run's outputs, not what it computes: MLflow tags, not params,
#: so runs that differ only in them compare as one setting (and get the same name).
_TAGS_NOT_PARAMS = {"train.register_model"}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_digest(model_cfg: ModelConfig, train_cfg: TrainConfig, template_size: int,
               samples: Sequence[Sample] = ()) -> str:
    """What a checkpoint must match to be resumed: the params that change the computation and the
    data (every sample's frame, box and references), so a run on regenerated or other data starts
    fresh instead of resuming a model that was trained on something else."""
    train = {k: v for k, v in dataclasses.asdict(train_cfg).items() if k not in _RUN_INDEPENDENT}
    data = hashlib.sha256(repr([dataclasses.astuple(s) for s in samples]).encode()).hexdigest()[:16]
    return params_digest({"model": to_raw(model_cfg), "train": train, "template_size": template_size,
                          "data": data})


def build_optimizer(model: nn.Module, lr: float, backbone_lr_mult: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the backbone at ``lr * backbone_lr_mult``; norms and biases get no weight decay.
    Parameters frozen for good when it is built (``freeze_through``, a LoRA adapter's base) are
    left out."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_backbone = name.startswith("backbone.")
        no_decay = param.ndim <= 1
        groups.setdefault((is_backbone, no_decay), []).append(param)
    param_groups = [
        {
            "params": params,
            "lr": lr * (backbone_lr_mult if is_backbone else 1.0),
            "weight_decay": 0.0 if no_decay else weight_decay,
            "name": f"{'backbone' if is_backbone else 'head'}{'_no_decay' if no_decay else ''}",
        }
        # Sorted so the group order (and a resumed optimiser's state) never depends on dict order.
        for (is_backbone, no_decay), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay)


def set_backbone_trainable(model: nn.Module, trainable: bool, frozen: Sequence[str] = ()) -> None:
    """Let the backbone learn (or not), except the layers named in ``frozen`` (as
    ``freeze_through`` names them), which never do; with LoRA adapters only the adapters learn."""
    adapters = any("lora_" in name for name, _ in model.backbone.named_parameters())
    for name, p in model.backbone.named_parameters():
        if adapters:
            learns = "lora_" in name
        else:
            layer = name.removeprefix("body.")
            learns = not any(layer == f or layer.startswith(f + ".") for f in frozen)
        p.requires_grad_(trainable and learns)


def set_refine_phase(model: nn.Module, criterion: nn.Module, epoch: int, refine_from_epoch: int) -> None:
    """Two-phase training of a second stage (``train.refine_from_epoch`` > 0): before that epoch
    the verifier's loss terms are off (the head trains alone); from it on, everything but the
    refiner is frozen. With 0, or a model without refiner, nothing changes (joint training)."""
    if refine_from_epoch <= 0 or getattr(model, "refiner", None) is None:
        return
    criterion.active = epoch >= refine_from_epoch
    if criterion.active:
        for name, p in model.named_parameters():
            if not name.startswith("refiner."):
                p.requires_grad_(False)


def freeze_backbone(model: nn.Module, level: int) -> list[str]:
    """Freeze the backbone layers through ``level`` for the whole run (0: none); the names frozen.
    A level the backbone has no layer for is a :class:`ConfigError` naming the key."""
    if not level:
        return []
    try:
        return model.backbone.freeze_through(level)
    except ValueError as exc:  # e.g. level 1 on a ConvNeXt, whose stem already has stride 4
        raise ConfigError(f"train.freeze_through_level: {exc}") from None


def real_check_set(params: Params, paths: Paths, template_size: int) -> ScratchSet | None:
    """The real-photo check set ready to validate on when ``train.val_realset`` asks for it and
    ``paths.realset`` holds one (else None)."""
    if not params.train.val_realset:
        return None
    if not is_built(paths.realset):
        log.info("train.val_realset: %s holds no check set; validating on the demo val split only", paths.realset)
        return None
    return ScratchSet(paths.realset, "refdet", params, template_size)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def _fault_injection(epoch: int) -> None:
    """``NEEDLE_KILL_AFTER_EPOCH=N`` SIGKILLs this process once epoch N is checkpointed.

    Tests use it to kill a real run at a known point and check that resuming gives the same model.
    """
    if os.environ.get("NEEDLE_KILL_AFTER_EPOCH") == str(epoch):
        os.kill(os.getpid(), signal.SIGKILL)


def best_on_resume(best_path: Path, last: dict) -> dict | None:
    """The best record a run resumed from ``last`` continues with: one whose weights ``best_path`` holds.

    best.pt is written before last.pt, so after a kill it is either the one ``last`` names or,
    when the kill fell between the two writes, newer (an epoch after ``last``'s): that one is kept
    with its own record. Anything else (no best.pt, another run's, an older one) cannot be the
    best ``last`` names, so the record is dropped and the next validated epoch writes best.pt again.
    """
    record = last.get("best")
    if not best_path.is_file():
        if record is not None:
            log.warning("%s is missing; the best epoch is chosen again from the epochs still to run", best_path)
        return None
    saved = load_checkpoint(best_path)
    same_run = saved.get("digest") == last.get("digest") and saved.get("run_id") == last.get("run_id")
    saved_record = saved.get("best")
    if same_run and saved_record is not None and saved.get("epoch") == saved_record.get("epoch"):
        if record is not None and saved["epoch"] == record["epoch"]:
            return record
        if saved["epoch"] > last["epoch"]:
            log.info("%s is from epoch %d, written just before the run stopped; keeping it", best_path,
                     saved["epoch"])
            return saved_record
    if record is not None:
        log.warning("%s does not hold the weights of epoch %d, the best so far; the best epoch is chosen "
                    "again from the epochs still to run", best_path, record["epoch"])
    return None


def last_as_best(last_path: Path, best_path: Path) -> dict:
    """Write ``last_path``'s model as ``best_path``, with a best record of its own epoch; returns the record."""
    last = load_checkpoint(last_path)
    row = last["history"][-1] if last.get("history") else {}
    record = {"epoch": last["epoch"], **{k: v for k, v in row.items() if k.startswith("val_")}}
    save_checkpoint(best_path, {**{k: v for k, v in last.items() if k in BEST_KEYS}, "best": record})
    return record


def calibrate_presence(model: nn.Module, best_path: Path, loader: DataLoader, samples: Sequence[Sample],
                       metric: str, precision: Precision, device: torch.device, channels_last: bool) -> dict:
    """Choose the presence threshold with ``best_path``'s weights on ``loader`` (the validation
    split, ``samples`` its frames) and save it in ``best_path`` as ``presence`` (atomically):
    ``{"score_threshold", "metric", "value", "frames", "epoch"}``; returns that record.

    A best.pt that already holds one for its own epoch and ``metric`` (a finished run resumed) is
    kept as it is. ``model`` is left holding the best weights.
    """
    best = load_checkpoint(best_path)
    saved = best.get("presence")
    if isinstance(saved, dict) and saved.get("metric") == metric and saved.get("epoch") == best.get("epoch"):
        return saved
    _unwrap(model).load_state_dict(best["model"])
    ev = EvaluateConfig()  # the defaults, as validation: tuning the evaluate section must never retrain
    dets, order = predict_loader(model, loader, precision, device, 0.0, ev.nms_iou, ev.max_detections, channels_last)
    table = top1_table([samples[i].box for i in order], dets)
    chosen = choose_threshold(table, metric, ev.iou_threshold, [samples[i].sequence_id for i in order])
    record = {**chosen.as_dict(), "epoch": best["epoch"]}
    save_checkpoint(best_path, {**best, "presence": record})
    log.info("presence threshold %.4g (train.presence_metric %s: %s on %d validation frames, epoch %d) -> %s",
             chosen.score_threshold, metric, "n/a" if chosen.value is None else f"{chosen.value:.4g}", chosen.frames,
             best["epoch"], best_path)
    return record


def fit(params: Params, paths: Paths) -> dict:
    """Train per ``params`` and write ``paths.models`` (last.pt, best.pt with the presence
    threshold of :func:`calibrate_presence`, run.json).

    Returns the final summary (also written to ``paths.train_metrics`` by the stage).
    """
    cfg, mcfg = params.train, params.model
    info = ddp.init_distributed()
    device = ddp.pick_device(info)
    seed_everything(cfg.seed)
    precision = resolve_precision(cfg.amp, device)
    log.info(describe_precision("train.amp", cfg.amp, precision))

    train_samples = load_split(paths, "train")
    if cfg.max_samples:
        train_samples = train_samples[: cfg.max_samples]
    val_samples = load_split(paths, "val")
    template_size = params.templates.size

    train_set = TrainDataset(train_samples, template_size, mcfg.search_size, cfg.crop_size,
                             cfg.background_crop_prob, cfg.augment, cfg.seed, cfg.identity_aug)
    sampler = DistributedSampler(train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=False)
    per_rank_batch = max(1, cfg.batch_size // info.world_size)
    loader = DataLoader(train_set, batch_size=per_rank_batch, sampler=sampler, num_workers=cfg.workers,
                        collate_fn=collate, drop_last=len(train_set) > per_rank_batch * info.world_size,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    val_loader = DataLoader(EvalDataset(val_samples, template_size, mcfg.search_size), batch_size=4,
                            num_workers=cfg.workers, collate_fn=collate)
    val_gt = [s.box for s in val_samples]
    real = real_check_set(params, paths, template_size) if info.is_main else None
    if real is not None:
        real_loader = DataLoader(EvalDataset(real.samples, template_size, mcfg.search_size), batch_size=4,
                                 num_workers=cfg.workers, collate_fn=collate)
        real_gt = [s.box for s in real.samples]

    model = build_detector(mcfg).to(device)
    frozen = freeze_backbone(model, cfg.freeze_through_level)
    if frozen:
        log.info("train.freeze_through_level: %d freezes backbone layers %s", cfg.freeze_through_level,
                 ", ".join(frozen))
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = build_criterion(cfg, model)
    optimizer = build_optimizer(model, cfg.lr, cfg.backbone_lr_mult, cfg.weight_decay)
    steps_per_epoch = math.ceil(len(loader) / cfg.accumulate)
    total_steps = cfg.epochs * steps_per_epoch
    scheduler = build_scheduler(optimizer, total_steps, round(cfg.warmup_epochs * steps_per_epoch), cfg.lr, cfg.min_lr)
    scaler = precision.grad_scaler()

    digest = run_digest(mcfg, cfg, template_size, [*train_samples, *val_samples])
    last_path, best_path = paths.models / "last.pt", paths.models / "best.pt"
    state, start_epoch, best, run_id = StepState(), 0, None, None
    if cfg.resume and last_path.is_file():
        ckpt = load_checkpoint(last_path)
        if ckpt.get("digest") == digest:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            scaler.load_state_dict(ckpt["scaler"])
            set_rng_state(ckpt["rng"])
            state = StepState(step=ckpt["step"], history=list(ckpt["history"]))
            start_epoch, run_id = ckpt["epoch"] + 1, ckpt.get("run_id")
            best = best_on_resume(best_path, ckpt)
            log.info("resuming from %s at epoch %d", last_path, start_epoch)
        else:
            log.info("%s was trained with other params or data; starting fresh", last_path)

    tracker = Tracker(default_tracking_uri(), enabled=info.is_main)
    flat_params = {k: v for k, v in to_flat_dict(params).items() if k not in _TAGS_NOT_PARAMS}
    tags = {**dvc_tags(), **{k: str(v).lower() for k, v in to_flat_dict(params).items() if k in _TAGS_NOT_PARAMS}}
    name = run_name(flat_params, tags, changed_params(flat_params, committed_params(paths.params)))
    resumed = run_id is not None
    tracker.start(name, flat_params, tags, run_id=run_id, system_metrics=True)
    if not resumed:
        log_manifest(tracker, paths.manifest, paths.root)
    run_id = tracker.run_id or run_id
    tracker.set_tags(precision_tags("train.amp", precision))

    train_model: nn.Module = model
    if info.enabled:
        train_model = DistributedDataParallel(model, device_ids=[info.local_rank] if device.type == "cuda" else None)

    def on_step(step: int, metrics: dict[str, float]) -> None:
        tracker.log_metrics(metrics, step=step)

    # Wall time of training (validation included) across resumes: the x axis of accuracy-vs-time.
    minutes_before = state.history[-1].get("wall_minutes", 0.0) if state.history else 0.0
    started = time.monotonic()
    for epoch in range(start_epoch, cfg.epochs):
        set_backbone_trainable(model, epoch >= cfg.freeze_backbone_epochs, frozen)
        set_refine_phase(model, criterion, epoch, cfg.refine_from_epoch)
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        epoch_stats = train_one_epoch(
            train_model, criterion, loader, len(loader), optimizer, scheduler, scaler, precision,
            dataclasses.asdict(cfg.loss_weights), device, state, epoch, cfg.accumulate, cfg.grad_clip,
            cfg.channels_last, cfg.log_every, cfg.shifted_pairs, on_step if info.is_main else None, info.is_main,
        )
        row = {"epoch": epoch, **{f"train_{k}": v for k, v in epoch_stats.items()}}
        if info.is_main and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            # Default thresholds on purpose: tuning the evaluate section must never retrain. The top-1
            # metrics of the history use the fixed 0.3 (comparable across epochs and runs).
            ev = EvaluateConfig()
            val = validate(model, val_loader, val_gt, precision, device, DEFAULT_THRESHOLD, ev.nms_iou,
                           ev.max_detections, ev.iou_threshold, cfg.channels_last)
            row.update({f"val_{k}": v for k, v in val.items()})
            if real is not None:  # watched, never used to pick the best epoch: the check set stays unseen
                val = validate(model, real_loader, real_gt, precision, device, DEFAULT_THRESHOLD, ev.nms_iou,
                               ev.max_detections, ev.iou_threshold, cfg.channels_last)
                row.update({f"val_real_{k}": v for k, v in val.items()})
        row["wall_minutes"] = minutes_before + (time.monotonic() - started) / 60
        state.history.append(row)
        if info.is_main:
            log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
            tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
            improved = "val_AP50" in row and (best is None or row["val_AP50"] > best["val_AP50"])
            if improved:
                best = {"epoch": epoch, **{k: v for k, v in row.items() if k.startswith("val_")}}
            payload = {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "epoch": epoch, "step": state.step, "history": state.history,
                "rng": rng_state(), "digest": digest, "best": best, "run_id": run_id,
                "model_config": to_raw(mcfg), "template_size": template_size,
                "template_pad": params.templates.pad, "template_pad_value": params.templates.pad_value,
            }
            # best.pt first: a kill between the two writes leaves a best.pt newer than last.pt,
            # which best_on_resume recognises; the other order would leave last.pt naming a best
            # epoch whose weights never reached best.pt.
            if improved:
                save_checkpoint(best_path, {k: payload[k] for k in BEST_KEYS})
            save_checkpoint(last_path, payload)
        ddp.barrier(info)
        _fault_injection(epoch)

    if info.is_main and best is None and last_path.exists():
        # Nothing to resume had a trustworthy best.pt (e.g. a finished run whose best.pt was
        # removed): the last epoch becomes the best, with its own record.
        best = last_as_best(last_path, best_path)
    presence = None
    if info.is_main and best_path.is_file():
        # After the last epoch, also when resuming a finished run: best.pt never lacks its threshold.
        presence = calibrate_presence(model, best_path, val_loader, val_samples, cfg.presence_metric, precision,
                                      device, cfg.channels_last)
        tracker.log_metrics({"presence_score_threshold": presence["score_threshold"],
                             **({f"presence_{presence['metric']}": presence["value"]}
                                if presence["value"] is not None else {})})
    ddp.barrier(info)
    if real is not None:
        real.close()
    summary = {"epochs": cfg.epochs, "steps": state.step, "best": best, "presence": presence,
               "history": state.history, "run_id": run_id, "tracking_uri": tracker.tracking_uri,
               "amp_dtype": precision.name}
    summary["tracker"] = tracker
    ddp.cleanup(info)
    return summary
