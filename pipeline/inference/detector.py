"""The inference API: encode an object's reference photos once, then search any number of frames.

    detector = Detector.from_checkpoint("models/best.pt")
    detector.set_templates(["ref_1.jpg", "ref_2.jpg"])
    found = detector.predict("frame.jpg")        # Detections(boxes [N, 4] xyxy px, scores [N])

or, on the ONNX pair written by ``python -m pipeline.export``, ``Detector.from_onnx("models/onnx")``.

Frames and references are preprocessed exactly as the pipeline's evaluation does (frames resized
to the model's ``search_size``, references made square at ``template_size``), so scores mean what
they meant on the validation set. Boxes come back in the original image's pixels.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torchvision.ops import nms

from pipeline.cli import UserError
from pipeline.config import CALIBRATED, ConfigError, ModelConfig, parse_params
from pipeline.data.frames import Sample, read_frame, resize, to_tensor_array
from pipeline.data.decode import BadImage, decoded_size
from pipeline.data.imageio import PAD_MODES, PadMode, pad_to_square, square_template
from pipeline.detector.appearance import embed_boxes
from pipeline.detector.model import ReferenceDetector, build_detector
from pipeline.engine.amp import Precision, resolve_precision
from pipeline.engine.checkpoint import load_checkpoint
from pipeline.metrics.calibration import DEFAULT_THRESHOLD

if TYPE_CHECKING:  # imported lazily: onnxruntime is needed only for from_onnx
    from pipeline.inference.onnx_model import OnnxDetectorModel

log = logging.getLogger(__name__)

#: A file path, or an ``H x W x 3`` uint8 RGB array.
ImageInput = str | Path | np.ndarray

# Each PIL reduce() step before LANCZOS may shrink by at most this factor (as imageio does for
# reference files, so arrays and files give the same template).
_REDUCING_GAP = 3.0


class Detections(NamedTuple):
    """Detections in one image, best first.

    boxes: ``[N, 4]`` float32 ``(x1, y1, x2, y2)`` in the original image's pixels, clamped to it.
    scores: ``[N]`` float32 in ``(0, 1]``, descending.
    embeddings: ``[N, C]`` float32, L2-normalised appearance of each box (the model's finest
        features, RoI-pooled: :func:`~pipeline.detector.appearance.embed_boxes`); None for a model
        that does not give its features (an ONNX export).
    """

    boxes: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray | None = None


class Detector:
    """Find the object of :meth:`set_templates` in frames (:meth:`predict`).

    Args:
        model: a :class:`ReferenceDetector` (put in eval mode and moved to ``device``), or an
            :class:`~pipeline.inference.onnx_model.OnnxDetectorModel` (see :meth:`from_onnx`).
        template_size: side of the square references the model was trained with.
        search_size: ``(width, height)`` frames are resized to before the model sees them.
        score_threshold: detections scoring below are dropped (:meth:`from_checkpoint`: by default
            the presence threshold training saved, see :meth:`resolve_threshold`).
        nms_iou: IoU above which the lower-scoring of two boxes is suppressed.
        max_detections: at most this many detections per image.
        flip_tta: also search the mirrored frame with mirrored references and merge (2x cost).
        device: where the model runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).
        template_pad, template_pad_value: how references are padded to a square; must match the
            ``templates`` params the model was trained with (default: the pipeline's default).
        amp: autocast precision of the PyTorch model: ``"off"`` (fp32), ``"bf16"``, ``"fp16"``
            (CUDA only) or ``"auto"`` (bf16 on CPU, fp16 on CUDA), or a resolved
            :class:`~pipeline.engine.amp.Precision`. Boxes and scores come back in fp32 either
            way. An ONNX model runs as exported and takes ``"off"`` only.
    """

    def __init__(
        self,
        model: ReferenceDetector | OnnxDetectorModel,
        template_size: int,
        search_size: tuple[int, int],
        *,
        score_threshold: float = 0.3,
        nms_iou: float = 0.5,
        max_detections: int = 10,
        flip_tta: bool = False,
        device: str | torch.device = "cpu",
        template_pad: PadMode = "constant",
        template_pad_value: int = 0,
        amp: str | Precision = "off",
    ) -> None:
        if len(search_size) != 2 or min(search_size) < 1:
            raise ValueError(f"search_size must be (width, height) > 0, got {search_size!r}")
        if template_pad not in PAD_MODES:
            raise ValueError(f"template_pad {template_pad!r} is not one of {', '.join(PAD_MODES)}")
        if template_size < 1 or max_detections < 1:
            raise ValueError(f"template_size and max_detections must be >= 1, got {template_size}, {max_detections}")
        self.device = torch.device(device)
        self.precision = amp if isinstance(amp, Precision) else resolve_precision(amp, self.device, key="amp")
        if self.precision.device_type != self.device.type:
            raise ValueError(f"amp: resolved for {self.precision.device_type}, but the model runs on {self.device}")
        if self.precision.dtype is not None and not isinstance(model, nn.Module):
            raise ValueError(f"amp: {self.precision.name} applies to PyTorch models; an ONNX model runs as exported "
                             "(use amp='off')")
        self.model = model.eval().to(self.device) if isinstance(model, nn.Module) else model
        self.template_size = int(template_size)
        self.search_size = (int(search_size[0]), int(search_size[1]))
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_detections = int(max_detections)
        self.flip_tta = bool(flip_tta)
        self.template_pad: PadMode = template_pad
        self.template_pad_value = int(template_pad_value)
        self._templates: Tensor | None = None  # [1, K, 3, T, T] on device
        self._encoded: list[Tensor] | None = None
        self._encoded_flipped: list[Tensor] | None = None  # computed on first flip-TTA use
        #: The checkpoint's saved presence record (``best.pt`` key ``presence``: score_threshold,
        #: metric, value, frames), None when it has none (an older run, an ONNX model).
        self.presence: dict | None = None
        self._told_default = False

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        *,
        search_size: tuple[int, int] | None = None,
        score_threshold: float | None = None,
        **kwargs,
    ) -> Detector:
        """Rebuild the model of a ``best.pt`` / ``last.pt`` written by training.

        ``search_size`` defaults to the one trained with, the template padding to the
        checkpoint's ``template_pad`` / ``template_pad_value`` if stored, ``score_threshold`` to
        the presence threshold training chose on the validation split and saved (0.3, logged,
        for a checkpoint without one); other keyword arguments go to :class:`Detector`. A
        missing, foreign or damaged file raises :class:`UserError` naming it.
        """
        ckpt = load_checkpoint(path, map_location="cpu")
        missing = [k for k in ("model_config", "template_size") if k not in ckpt]
        if missing:
            raise UserError(f"{path}: checkpoint lacks {', '.join(missing)} (written by an older version?)")
        cfg = _model_config(ckpt["model_config"], path)
        template_size = ckpt["template_size"]
        if isinstance(template_size, bool) or not isinstance(template_size, int) or template_size < 1:
            raise UserError(f"{path}: stored template_size {template_size!r} is not a positive integer")
        model = build_detector(cfg)
        weights = legacy_weights(ckpt["model"]) if "fpn_channels" in ckpt["model_config"] else ckpt["model"]
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise UserError(f"{path}: weights do not fit the stored model config ({exc})") from None
        if cfg.backbone.lora.rank:  # adapters folded into plain layers: same outputs, no peft at run time
            from pipeline.detector.backbones.lora import merge_lora

            merge_lora(model)
        size = cfg.search_size if search_size is None else search_size
        # How references were padded, when the checkpoint records it (else Detector's default).
        for key in ("template_pad", "template_pad_value"):
            if key in ckpt:
                kwargs.setdefault(key, ckpt[key])
        detector = cls(model, template_size, size, device=device, score_threshold=score_threshold or 0.0, **kwargs)
        detector.presence = saved_presence(ckpt, path)
        if score_threshold is None:
            detector.score_threshold, _ = detector.resolve_threshold(CALIBRATED)
        return detector

    @classmethod
    def from_onnx(
        cls, folder: str | Path, *, providers: Sequence[str] | None = None, threads: int | None = None, **kwargs
    ) -> Detector:
        """Run on the graph pair ``python -m pipeline.export`` wrote into ``folder``.

        Template size, search size, template padding and the calibrated presence threshold
        (unless ``score_threshold`` is given) come from the graphs' metadata; the graphs run in ONNX Runtime (``providers``, default CPU; ``threads`` intra-op threads),
        post-processing on the CPU. Other keyword arguments go to :class:`Detector`. A missing
        or foreign folder raises :class:`UserError` naming the file.
        """
        from pipeline.inference.onnx_model import OnnxDetectorModel

        model = OnnxDetectorModel(folder, providers=providers, threads=threads)
        kwargs.setdefault("template_pad", model.info.template_pad)
        kwargs.setdefault("template_pad_value", model.info.template_pad_value)
        given = kwargs.pop("score_threshold", None)
        if given is not None:
            kwargs["score_threshold"] = given
        detector = cls(model, model.template_size, model.search_size, device="cpu", **kwargs)
        if model.info.score_threshold is not None:
            detector.presence = {"score_threshold": model.info.score_threshold}
        if given is None:
            detector.score_threshold, _ = detector.resolve_threshold(CALIBRATED)
        return detector

    def resolve_threshold(self, value: float | str | None) -> tuple[float, str]:
        """The score threshold ``value`` stands for and where it comes from: a number is itself
        (``"params"``); ``"calibrated"`` or None is the checkpoint's saved presence threshold
        (``"checkpoint"``), or :data:`~pipeline.metrics.calibration.DEFAULT_THRESHOLD` when it
        saved none (``"default"``, said once in the log)."""
        if value is not None and value != CALIBRATED:
            return float(value), "params"
        if self.presence is not None:
            return float(self.presence["score_threshold"]), "checkpoint"
        if not self._told_default:
            log.info("the model has no calibrated presence threshold (trained by an older version, or ONNX); "
                     "using score threshold %s", DEFAULT_THRESHOLD)
            self._told_default = True
        return DEFAULT_THRESHOLD, "default"

    # -- templates ---------------------------------------------------------------------------

    def set_templates(self, images: ImageInput | Sequence[ImageInput]) -> None:
        """Encode and fuse 1..K reference photos (paths or RGB arrays) of the object to find.

        Done once per object: every later :meth:`predict` reuses the fused features, so a frame
        costs one backbone pass.
        """
        items = [images] if _is_single(images) else list(images)  # type: ignore[arg-type]
        if not items:
            raise ValueError("set_templates: give at least one reference image")
        arrays = [self._square(item) for item in items]
        templates = torch.from_numpy(np.stack([to_tensor_array(a) for a in arrays]))[None]
        self._templates = templates.to(self.device)
        with torch.inference_mode(), self.precision.autocast():
            self._encoded = self.model.encode_templates(self._templates)
        self._encoded_flipped = None

    def _square(self, item: ImageInput) -> np.ndarray:
        """A reference as ``T x T x 3`` uint8: longest side scaled to T, padded to a square."""
        size, pad, value = self.template_size, self.template_pad, self.template_pad_value
        if not isinstance(item, np.ndarray):
            return np.asarray(square_template(item, size, pad, value))
        img = Image.fromarray(_check_rgb(item, "template"))
        w, h = img.size
        scale = size / max(w, h)
        target = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP if scale < 1 else None)
        return np.asarray(pad_to_square(img, pad, value))

    # -- search ------------------------------------------------------------------------------

    def predict(
        self, images: ImageInput | Sequence[ImageInput], batch_size: int = 8
    ) -> Detections | list[Detections]:
        """Detect the object in one image (-> :class:`Detections`) or a list (-> a list).

        Images are paths or ``H x W x 3`` uint8 RGB arrays of any size; they are run through the
        model ``batch_size`` at a time.
        """
        if self._encoded is None:
            raise RuntimeError("Detector.predict: call set_templates(...) first")
        if batch_size < 1:
            raise ValueError(f"Detector.predict: batch_size must be >= 1, got {batch_size}")
        single = _is_single(images)
        items = [images] if single else list(images)  # type: ignore[arg-type]
        out: list[Detections] = []
        for start in range(0, len(items), batch_size):
            frames, sizes = zip(*(self._load_frame(item) for item in items[start : start + batch_size]))
            out.extend(self._predict_batch(np.stack(frames), sizes))
        return out[0] if single else out

    def _load_frame(self, item: ImageInput) -> tuple[np.ndarray, tuple[int, int]]:
        """The frame resized to ``search_size`` (HWC uint8) and its original ``(width, height)``."""
        if isinstance(item, np.ndarray):
            image = _check_rgb(item, "search image")
            return resize(image, self.search_size), (image.shape[1], image.shape[0])
        # The check prepare makes: OpenCV fills a truncated JPEG with grey and only warns, so a
        # half-missing frame would be scored as if it were whole.
        try:
            width, height = decoded_size(Path(item))
        except BadImage as exc:
            raise UserError(f"{item}: {exc}") from None
        # read_frame, as evaluation does: JPEGs are DCT-decoded at a reduced size when that stays
        # at or above search_size, which changes pixels slightly vs. a full decode + resize.
        sample = Sample(image=str(item), object_id="", sequence_id="", frame_index=0, box=None, templates=(),
                        width=width, height=height)
        frame, _, _ = read_frame(sample, self.search_size)
        return frame, (width, height)

    @torch.inference_mode()
    def _predict_batch(self, frames: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        """``frames [B, h, w, 3]`` uint8 at search_size -> one Detections per frame (original px)."""
        search = torch.from_numpy(np.stack([to_tensor_array(f) for f in frames])).to(self.device)
        per_frame, appearance = self._detect(search, self._encoded)  # type: ignore[arg-type]
        if self.flip_tta:
            if self._encoded_flipped is None:  # the mirrored frame is searched for the mirrored object
                assert self._templates is not None
                with self.precision.autocast():
                    self._encoded_flipped = self.model.encode_templates(self._templates.flip(-1))
            width = search.shape[-1]
            mirrored, _ = self._detect(search.flip(-1), self._encoded_flipped)
            per_frame = [
                self._merge(b, s, _mirror(fb, width), fs) for (b, s), (fb, fs) in zip(per_frame, mirrored)
            ]
        embeddings: list[Tensor | None] = [None] * len(per_frame)
        if appearance is not None:
            embeddings = embed_boxes(appearance, [b for b, _ in per_frame], search.shape[-1])  # type: ignore[assignment]
        out = []
        for (boxes, scores), emb, (width, height) in zip(per_frame, embeddings, sizes):
            out.append(self._to_original(boxes, scores, width, height, emb))
        return out

    def _detect(self, search: Tensor, encoded: Sequence[Tensor]) -> tuple[list[tuple[Tensor, Tensor]], Tensor | None]:
        """Per image ``(boxes, scores)`` at search size, and the model's appearance map (None
        when it gives none)."""
        with self.precision.autocast():
            outputs = self.model.detect(search, encoded)
        found = self.model.decode(outputs, self.score_threshold, self.nms_iou, self.max_detections)
        return found, outputs.get("appearance")

    def _merge(self, boxes: Tensor, scores: Tensor, boxes2: Tensor, scores2: Tensor) -> tuple[Tensor, Tensor]:
        """NMS over the union of two detection sets, best ``max_detections`` kept."""
        boxes, scores = torch.cat([boxes, boxes2]), torch.cat([scores, scores2])
        keep = nms(boxes, scores, self.nms_iou)[: self.max_detections]
        return boxes[keep], scores[keep]

    def _to_original(self, boxes: Tensor, scores: Tensor, width: int, height: int,
                     embeddings: Tensor | None = None) -> Detections:
        """Scale search-size boxes to the original ``width x height`` and clamp them to it."""
        sx, sy = self.search_size[0] / width, self.search_size[1] / height
        scale = torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype, device=boxes.device)
        boxes = boxes / scale
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        # a box entirely off the image collapses to zero area: nothing left to point at
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        emb = None if embeddings is None else embeddings[keep].float().cpu().numpy()
        return Detections(
            boxes[keep].float().cpu().numpy().reshape(-1, 4), scores[keep].float().cpu().numpy().reshape(-1), emb
        )


def saved_presence(ckpt: dict, path: str | Path) -> dict | None:
    """The checkpoint's ``presence`` record (a dict with ``score_threshold`` in 0..1), None when
    it has none; a malformed one is a :class:`UserError` naming the file."""
    presence = ckpt.get("presence")
    if presence is None:
        return None
    t = presence.get("score_threshold") if isinstance(presence, dict) else None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not (0.0 <= t <= 1.0) or math.isnan(t):
        raise UserError(f"{path}: stored presence threshold {presence!r} is not a number in 0..1")
    return dict(presence)


def _model_config(raw: dict, path: str | Path) -> ModelConfig:
    """The stored ``model_config`` (the model section as params.yaml holds it) as a validated
    ModelConfig; a checkpoint of the flat layout older versions wrote is translated.

    ``pretrained`` is switched off: the checkpoint holds every weight, so nothing is downloaded
    or read again (and the original weights file need not exist here).
    """
    if not isinstance(raw, dict):
        raise UserError(f"{path}: stored model_config is not a mapping")
    raw = legacy_model_config(raw) if "fpn_channels" in raw else dict(raw)
    if isinstance(raw.get("backbone"), dict):
        raw["backbone"] = {**raw["backbone"], "pretrained": False}
    try:
        return parse_params({"model": raw}).model
    except ConfigError as exc:
        raise UserError(f"{path}: stored model config is invalid ({exc})") from None


#: Flat ``model`` keys of older checkpoints -> their place in the parts layout.
_LEGACY_KEYS = {
    "backbone": ("backbone", "name"), "pretrained": ("backbone", "pretrained"), "fpn_channels": ("neck", "channels"),
    "fusion": ("fusion", "type"), "corr_kernel": ("correlation", "kernel"),
    "corr_normalize": ("correlation", "normalize"), "head": ("head", "type"), "head_channels": ("head", "channels"),
    "box_prior": ("head", "box_prior"), "similarity_skip": ("head", "similarity_skip"),
}
#: Their weights' names -> today's.
LEGACY_WEIGHTS = (("fpn.", "neck."), ("match_head.", "head.match."), ("similarity_gain", "head.similarity_gain"),
                  ("head.", "head.dense."))


def legacy_model_config(flat: dict) -> dict:
    """The parts layout of a model section written flat (``fpn_channels``, ``corr_kernel``, ...)."""
    raw: dict = {"levels": flat.get("levels"), "search_size": flat.get("search_size"), "neck": {"type": "fpn"},
                 "correlation": {"type": "depthwise"}, "backbone": {"type": "timm"}, "fusion": {}, "head": {}}
    for old, (part, key) in _LEGACY_KEYS.items():
        if old in flat:
            raw[part][key] = flat[old]
    if raw["head"].get("type") == "factorized":
        raw["head"]["gate"] = flat.get("match_gate", "sum")
    else:
        raw["head"]["search_features"] = flat.get("search_features", True)
    raw["similarities"] = {}
    if flat.get("match_grid"):
        raw["similarities"]["prototypes"] = {"grid": flat["match_grid"], "top": flat.get("match_top", 4)}
    if flat.get("colour_bins"):
        raw["similarities"]["colour"] = {"bins": flat["colour_bins"]}
    return raw


def legacy_weights(state: dict) -> dict:
    """A state dict of the flat layout with today's parameter names."""
    out = {}
    for key, value in state.items():
        for old, new in LEGACY_WEIGHTS:
            if key.startswith(old) and not key.startswith(new):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def _mirror(boxes: Tensor, width: int) -> Tensor:
    """xyxy boxes found in a horizontally flipped ``width``-pixel image, in the unflipped one."""
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def _is_single(images: object) -> bool:
    return isinstance(images, (str, Path, np.ndarray))


def _check_rgb(image: np.ndarray, what: str) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise ValueError(f"{what}: expected an H x W x 3 uint8 RGB array, got {image.dtype} {image.shape}")
    return image
