"""params.yaml, parsed once into typed, frozen dataclasses.

Every stage calls :func:`load_params` and hands the relevant section to ``build_*`` functions.
Unknown keys, wrong types, out-of-range numbers and unknown choices raise :class:`ConfigError`
with the dotted key and what is allowed, e.g. ``train.iou_type: 'cio' is not one of iou, giou,
diou, ciou``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml


class ConfigError(ValueError):
    """A params file or a value in it is invalid; the message names the key."""


#: Autocast precision modes (``train.amp``, ``evaluate.amp``; resolved per device by
#: :func:`pipeline.engine.amp.resolve_precision`).
AmpMode = Literal["auto", "fp16", "bf16", "off"]

#: Box losses of the IoU family (``train.iou_type``; :func:`pipeline.detector.losses.iou_loss`).
IouType = Literal["iou", "giou", "diou", "ciou"]

#: What the presence threshold saved in best.pt maximises on the validation split
#: (``train.presence_metric``; :func:`pipeline.metrics.calibration.choose_threshold`).
PresenceMetric = Literal["f1", "st_iou"]

#: A score threshold that is a number, or ``calibrated``: the checkpoint's saved presence
#: threshold (``evaluate.score_threshold``, ``temporal.on_threshold`` / ``off_threshold``).
Threshold = Union[float, Literal["calibrated"]]
CALIBRATED = "calibrated"


class _Yaml12Loader(yaml.SafeLoader):
    """Safe YAML loader with YAML 1.2 booleans: only ``true``/``false`` are booleans.

    PyYAML follows YAML 1.1, where ``off``, ``no``, ``on`` and ``yes`` are booleans too; DVC writes
    params.yaml back (``dvc exp run -S``) with a YAML 1.2 writer that drops the quotes around them.
    """


_BOOL_TAG = "tag:yaml.org,2002:bool"
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(text: str) -> Any:
    """Parse YAML as DVC does (YAML 1.2 booleans), so ``amp: off`` is the string ``off``."""
    return yaml.load(text, Loader=_Yaml12Loader)


def bounds(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> dict:
    """``field`` metadata: the value must be >= ``lo`` (> with ``lo_open``) and <= ``hi``."""
    return {"lo": lo, "hi": hi, "lo_open": lo_open}


# ----------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    """Size and seed of the built-in synthetic data set (``data.source: demo``)."""

    train_objects: int = field(default=576, metadata=bounds(1))
    val_objects: int = field(default=16, metadata=bounds(1))
    sequences_per_object: int = field(default=1, metadata=bounds(1))
    frames_per_sequence: int = field(default=1, metadata=bounds(1))
    val_frames_per_sequence: int = field(default=6, metadata=bounds(0))  # 0: same as frames_per_sequence
    template_size: int = field(default=256, metadata=bounds(64))
    absent_fraction: float = field(default=0.2, metadata=bounds(0.0, 1.0))
    distractors: int = field(default=2, metadata=bounds(0))
    jpeg_quality: int = field(default=92, metadata=bounds(1, 100))
    layout: Literal["cpn", "video"] = "cpn"
    photo_objects: float = field(default=1.0, metadata=bounds(0.0, 1.0))  # identities textured by real photos
    photo_grounds: float = field(default=0.5, metadata=bounds(0.0, 1.0))  # sequences / photos on a real-photo ground
    lookalikes: float = field(default=0.5, metadata=bounds(0.0, 1.0))  # sequences with a look-alike distractor
    # Long-clip behaviours (docs/data.md, Long demo clips); the defaults leave the data as it was.
    absence: Literal["scattered", "stretches"] = "scattered"  # absent frames one by one, or in runs
    absent_stretch: int = field(default=25, metadata=bounds(1))  # mean frames of one absent run (stretches)
    occlusion_runs: int = field(default=0, metadata=bounds(0))  # long occlusions per sequence
    occlusion_length: int = field(default=30, metadata=bounds(1))  # mean frames of one long occlusion
    crossings: int = field(default=0, metadata=bounds(0))  # look-alikes crossing the target's path per sequence
    zoom: float = field(default=0.0, metadata=bounds(0.0, 1.0))  # apparent size changes by 1 + zoom per sequence
    tilt: float = field(default=0.0, metadata=bounds(0.0, 0.5))  # camera foreshortening drifts by this per sequence


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is split (stage ``prepare``)."""

    source: str = "demo"
    format: Literal["auto", "cpn", "refdet", "coco", "video"] = "auto"
    on_error: Literal["raise", "skip"] = "raise"
    val_fraction: float = field(default=0.2, metadata=bounds(0.0, 1.0, lo_open=True))
    seed: int = 0
    frame_stride: int = field(default=1, metadata=bounds(1))
    demo: DemoConfig = field(default_factory=DemoConfig)


@dataclass(frozen=True)
class TemplatesConfig:
    """Square resizing of the reference photos (stage ``resize_templates``)."""

    size: int = field(default=64, metadata=bounds(16))
    pad: Literal["constant", "edge", "reflect"] = "constant"
    pad_value: int = field(default=0, metadata=bounds(0, 255))
    workers: int = field(default=2, metadata=bounds(1))
    jpeg_quality: int = field(default=95, metadata=bounds(1, 100))


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapters on a backbone (``model.backbone.lora``; :mod:`pipeline.detector.backbones.lora`)."""

    rank: int = field(default=0, metadata=bounds(0))  # 0: no adapters
    alpha: float = field(default=16.0, metadata=bounds(0.0, lo_open=True))
    dropout: float = field(default=0.0, metadata=bounds(0.0, 1.0))
    targets: tuple[str, ...] = ("qkv", "attn.proj")


@dataclass(frozen=True)
class PartConfig:
    """The params of one detector part: ``type`` names it in its registry
    (:mod:`pipeline.detector.registry`), the other fields are that part's own keys. Each part
    defines a subclass next to its code, with the part's defaults."""

    type: str


def part(kind: str, type: str, **keys: Any) -> Any:
    """A ``field`` holding the default ``type`` part of registry ``kind`` (params: ``type:`` + keys)."""
    return field(default_factory=lambda: _part_config(kind, type, keys, ""), metadata={"part": kind})


def parts(kind: str, *types: str) -> Any:
    """A ``field`` holding several parts of ``kind`` by name (params: a mapping name -> keys)."""
    return field(default_factory=lambda: tuple(_part_config(kind, t, {}, "") for t in types),
                 metadata={"parts": kind})


@dataclass(frozen=True)
class ModelConfig:
    """Detector architecture (stage ``train``): backbone -> neck -> fusion -> correlation and
    similarities -> head, each part chosen by ``type`` (see docs/params.md)."""

    backbone: Any = part("backbone", "timm")
    levels: tuple[int, ...] = (2, 3)
    neck: Any = part("neck", "fpn")
    fusion: Any = part("fusion", "attention")
    correlation: Any = part("correlation", "depthwise")
    similarities: Any = parts("similarity", "prototypes", "colour")
    head: Any = part("head", "factorized")
    refine: Any = part("refiner", "none")
    search_size: tuple[int, int] = (512, 288)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the named loss terms the criterion returns."""

    focal: float = field(default=1.0, metadata=bounds(0.0))
    l1: float = field(default=5.0, metadata=bounds(0.0))
    iou: float = field(default=2.0, metadata=bounds(0.0))
    verify: float = field(default=1.0, metadata=bounds(0.0))  # a second stage's target / not-target BCE


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, augmentation and checkpointing (stage ``train``)."""

    epochs: int = field(default=10, metadata=bounds(1))
    batch_size: int = field(default=8, metadata=bounds(1))
    accumulate: int = field(default=1, metadata=bounds(1))
    lr: float = field(default=0.002, metadata=bounds(0.0, lo_open=True))
    backbone_lr_mult: float = field(default=0.1, metadata=bounds(0.0))
    min_lr: float = field(default=1e-6, metadata=bounds(0.0))
    weight_decay: float = field(default=1e-4, metadata=bounds(0.0))
    warmup_epochs: float = field(default=0.5, metadata=bounds(0.0))
    grad_clip: float = field(default=1.0, metadata=bounds(0.0))
    freeze_backbone_epochs: int = field(default=0, metadata=bounds(0))
    refine_from_epoch: int = field(default=0, metadata=bounds(0))  # model.refine: 0 joint, N: second phase from epoch N
    freeze_through_level: int = field(default=3, metadata=bounds(0, 5))
    amp: AmpMode = "auto"
    channels_last: bool = True
    workers: int = field(default=2, metadata=bounds(0))
    seed: int = 0
    max_samples: int = field(default=0, metadata=bounds(0))
    augment: bool = True
    identity_aug: float = field(default=0.0, metadata=bounds(0.0, 1.0))
    crop_size: int = field(default=160, metadata=bounds(0))
    background_crop_prob: float = field(default=0.25, metadata=bounds(0.0, 1.0))
    shifted_pairs: bool = True
    pos_radius: int = field(default=1, metadata=bounds(0))
    focal_alpha: float = field(default=0.25, metadata=bounds(0.0, 1.0))
    focal_gamma: float = field(default=2.0, metadata=bounds(0.0))
    iou_type: IouType = "giou"
    loss_weights: LossWeights = field(default_factory=LossWeights)
    val_every: int = field(default=2, metadata=bounds(1))
    val_realset: bool = False  # also score the real-photo check set at each validation (monitoring only)
    resume: bool = True
    log_every: int = field(default=10, metadata=bounds(1))
    presence_metric: PresenceMetric = "f1"  # the presence threshold saved in best.pt maximises this on val
    register_model: bool = False  # also register the MLflow model of the run (needle-detector)


@dataclass(frozen=True)
class EvaluateConfig:
    """Scoring of predictions (stage ``evaluate``). ``score_threshold``: the top-1 box counts as an
    answer at or above it; ``calibrated`` takes the checkpoint's saved presence threshold."""

    score_threshold: Threshold = field(default=CALIBRATED, metadata=bounds(0.0, 1.0))
    iou_threshold: float = field(default=0.5, metadata=bounds(0.0, 1.0, lo_open=True))
    nms_iou: float = field(default=0.5, metadata=bounds(0.0, 1.0, lo_open=True))
    max_detections: int = field(default=10, metadata=bounds(1))
    flip_tta: bool = False
    gallery_frames: int = field(default=6, metadata=bounds(1))
    amp: AmpMode = "auto"


@dataclass(frozen=True)
class TrackConfig:
    """Tracking-by-detection over each frame's top-k candidates (``temporal.method: track``;
    :mod:`pipeline.inference.tracker`): the answer per frame is the best path through the
    candidates and "absent" under a Kalman motion model and appearance similarity."""

    mode: Literal["offline", "online"] = "offline"  # offline: Viterbi over the whole clip; online: causal
    top_k: int = field(default=5, metadata=bounds(1))  # candidates per frame
    score_weight: float = field(default=4.0, metadata=bounds(0.0))  # per frame: weight x (logit(score) - logit(threshold))
    appearance_weight: float = field(default=1.0, metadata=bounds(0.0))  # x (1 - cosine to the track's embedding)
    motion_weight: float = field(default=0.1, metadata=bounds(0.0))  # x squared Mahalanobis distance from the prediction
    switch_cost: float = field(default=0.5, metadata=bounds(0.0))  # to start or end a track
    gate: float = field(default=9.4877, metadata=bounds(0.0, lo_open=True))  # jumps beyond this distance are rejected
    motion_noise: float = field(default=2.0, metadata=bounds(0.0, lo_open=True))  # Kalman process noise scale
    max_gap: int = field(default=15, metadata=bounds(0))  # offline: misses up to this many frames are filled
    min_segment: int = field(default=1, metadata=bounds(1))  # offline: shorter runs of answers are dropped


@dataclass(frozen=True)
class TemporalConfig:
    """Temporal post-processing of per-frame detections in a video (``predict --video``, and
    ``evaluate``'s ST-IoU columns): ``method: smooth`` is score EMA, on/off hysteresis and box EMA
    of the top-1 box; ``method: track`` is tracking over the top-k candidates (``track``).
    ``calibrated`` thresholds follow the presence threshold in use
    (:func:`pipeline.inference.temporal.resolve_temporal`)."""

    enabled: bool = True
    method: Literal["smooth", "track"] = "track"
    on_threshold: Threshold = field(default=CALIBRATED, metadata=bounds(0.0, 1.0))
    off_threshold: Threshold = field(default=CALIBRATED, metadata=bounds(0.0, 1.0))
    min_on_frames: int = field(default=2, metadata=bounds(1))
    score_ema: float = field(default=0.3, metadata=bounds(0.0, 0.99))
    box_ema: float = field(default=0.3, metadata=bounds(0.0, 0.99))
    track: TrackConfig = field(default_factory=TrackConfig)


@dataclass(frozen=True)
class BaselineConfig:
    """Classical OpenCV template matching, the learned model's peer (stage ``baseline``)."""

    search_size: tuple[int, int] = (512, 288)
    scales: tuple[float, ...] = (0.6, 0.75, 0.9, 1.05)
    rotations: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
    template_crop: float = field(default=0.7, metadata=bounds(0.1, 1.0))
    score_threshold: float = field(default=0.75, metadata=bounds(0.0, 1.0))


@dataclass(frozen=True)
class RealsetConfig:
    """The real-photo check set (stage ``realset``), scored by ``evaluate`` next to the val split."""

    enabled: bool = True
    source: str = "/usr/share/doc/opencv-doc/examples/data"  # OpenCV's sample data (Debian: opencv-doc)
    frames_per_object: int = field(default=8, metadata=bounds(1))
    absent_every: int = field(default=4, metadata=bounds(0))
    distractors: int = field(default=2, metadata=bounds(0))
    seed: int = 0


@dataclass(frozen=True)
class ReportConfig:
    """What ``reports/metrics.md`` shows (stage ``report``)."""

    ablation_params: tuple[str, ...] = ("model.head.type", "model.refine.type", "model.fusion.type",
                                        "model.correlation.kernel", "train.iou_type")
    sort_by: Literal["AP", "AP50", "success", "f1", "mean_iou", "st_iou", "real_AP50", "real_success"] = "real_AP50"


@dataclass(frozen=True)
class Params:
    """The whole params.yaml."""

    data: DataConfig = field(default_factory=DataConfig)
    templates: TemplatesConfig = field(default_factory=TemplatesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    realset: RealsetConfig = field(default_factory=RealsetConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _registry(kind: str) -> Any:
    from pipeline.detector import registry  # the parts' configs live beside their code

    return getattr(registry, {"backbone": "BACKBONES", "neck": "NECKS", "fusion": "FUSIONS",
                              "correlation": "CORRELATIONS", "similarity": "SIMILARITIES", "head": "HEADS",
                              "refiner": "REFINERS"}[kind])


def _part_config(kind: str, name: Any, raw: dict, key: str) -> Any:
    """Config dataclass of the registered ``kind`` part ``name`` from its keys ``raw``."""
    reg = _registry(kind)
    if not isinstance(name, str) or name not in reg:
        where = f"{key}.type" if key else f"{kind} type"
        raise ConfigError(f"{where}: {name!r} is not one of {', '.join(reg.names())}")
    return _build(reg.get(name).config, {**raw, "type": name}, key)


def _convert_part(key: str, value: Any, kind: str, default: Any) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping with type: and the part's keys, got {value!r}")
    raw = dict(value)
    return _part_config(kind, raw.pop("type", default.type), raw, key)


def _convert_parts(key: str, value: Any, kind: str) -> tuple:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping of {kind} names to their keys, got {value!r}")
    out = []
    for name, keys in value.items():
        if keys is not None and not isinstance(keys, dict):
            raise ConfigError(f"{key}.{name}: expected a mapping of its keys, got {keys!r}")
        out.append(_part_config(kind, name, dict(keys or {}), f"{key}.{name}"))
    return tuple(out)


def _convert(key: str, value: Any, tp: Any, meta: dict) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value is False and "off" in allowed:  # a YAML 1.1 reader's ``off``
            return "off"
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")
        return value
    if origin in (Union, types.UnionType):
        errors: dict[Any, ConfigError] = {}
        for arg in typing.get_args(tp):
            try:
                return _convert(key, value, arg, meta)
            except ConfigError as exc:
                errors[arg] = exc
        if float in errors and isinstance(value, (int, float)) and not isinstance(value, bool):
            raise errors[float]  # a number out of range: say so, not "is not a number"
        raise ConfigError(f"{key}: {value!r} is not {_type_name(tp)}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            if not value:
                raise ConfigError(f"{key}: must not be empty")
            return tuple(_convert(f"{key}[{i}]", v, args[0], meta) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(f"{key}[{i}]", v, a, meta) for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return _checkbounds(key, value, meta)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return _checkbounds(key, float(value), meta)
    if tp is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # programming error, not user's


def _checkbounds(key: str, value: float, meta: dict) -> float:
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value <= lo if meta.get("lo_open") else value < lo):
        op = ">" if meta.get("lo_open") else ">="
        raise ConfigError(f"{key}: {value!r} is out of range, must be {op} {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: {value!r} is out of range, must be <= {hi}")
    return value


def _build(cls: type, raw: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"{where}{unknown[0]}: unknown key (allowed in {prefix or 'params'}: {', '.join(fields)})"
        )
    kwargs = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        meta = dict(fields[name].metadata)
        if "part" in meta:
            kwargs[name] = _convert_part(key, value, meta["part"], fields[name].default_factory())
        elif "parts" in meta:
            kwargs[name] = _convert_parts(key, value, meta["parts"])
        else:
            kwargs[name] = _convert(key, value, hints[name], meta)
    return cls(**kwargs)


def parse_params(raw: dict | None) -> Params:
    """Validate a params mapping (as read from YAML) into :class:`Params`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"params: expected a mapping at the top level, got {type(raw).__name__}")
    params = _build(Params, raw)
    _check_cross_fields(params)
    return params


def _check_cross_fields(p: Params) -> None:
    if p.train.min_lr > p.train.lr:
        raise ConfigError(f"train.min_lr: {p.train.min_lr} must not exceed train.lr ({p.train.lr})")
    if sorted(set(p.model.levels)) != list(p.model.levels):
        raise ConfigError(f"model.levels: {list(p.model.levels)} must be strictly increasing")
    for lvl in p.model.levels:
        if not 1 <= lvl <= 5:
            raise ConfigError(f"model.levels: level {lvl} is out of range, must be 1..5 (P1..P5)")
    if p.train.freeze_through_level > max(p.model.levels):
        raise ConfigError(f"train.freeze_through_level: {p.train.freeze_through_level} is above the deepest of "
                          f"model.levels ({max(p.model.levels)}); nothing would be left to train there")
    if 0 < p.train.crop_size < 32:
        raise ConfigError(f"train.crop_size: {p.train.crop_size} is too small, use 0 or >= 32")
    for key, (w, h) in (("model.search_size", p.model.search_size), ("baseline.search_size", p.baseline.search_size)):
        if w < 32 or h < 32:
            raise ConfigError(f"{key}: {[w, h]} is too small, each side must be >= 32")
    for s in p.baseline.scales:
        if not 0.05 <= s <= 4.0:
            raise ConfigError(f"baseline.scales: {s} is out of range, each scale must be in 0.05..4")
    on, off = p.temporal.on_threshold, p.temporal.off_threshold
    if not isinstance(on, str) and not isinstance(off, str) and off > on:
        raise ConfigError(
            f"temporal.off_threshold: {p.temporal.off_threshold} must not exceed temporal.on_threshold "
            f"({p.temporal.on_threshold})"
        )
    known = set(to_flat_dict(p))
    for key in p.report.ablation_params:
        if key not in known:
            raise ConfigError(f"report.ablation_params: {key!r} is not a params key (e.g. model.fusion.type)")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file. Errors name the file and the key."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read params file ({exc.strerror})") from None
    try:
        raw = read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{line} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    try:
        return parse_params(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def to_flat_dict(params: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a (nested) config dataclass into ``{"train.lr": 0.001, ...}`` (for MLflow)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(to_flat_dict(value, key + "."))
        elif "parts" in f.metadata:  # by name: model.similarities.colour.bins
            for p in value:
                out.update({f"{key}.{p.type}.{k}": v for k, v in to_flat_dict(p).items() if k != "type"}
                           or {f"{key}.{p.type}": True})
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = value
    return out


def to_raw(config: Any) -> dict[str, Any]:
    """A config dataclass as the mapping params.yaml would hold (parts as ``type:`` + keys,
    several parts as name -> keys, tuples as lists): ``parse_params({"model": to_raw(m)}).model == m``."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if "parts" in f.metadata:
            out[f.name] = {p.type: {k: v for k, v in to_raw(p).items() if k != "type"} for p in value}
        elif dataclasses.is_dataclass(value):
            out[f.name] = to_raw(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out
