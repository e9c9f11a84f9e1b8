"""ONNX Runtime backend: the exported graph pair behind :class:`ReferenceDetector`'s two methods.

``python -m pipeline.export`` writes two graphs into one folder:

* ``template_encoder.onnx``: ``templates [B, K, 3, T, T]`` float RGB in ``[0, 1]`` and
  ``mask [B, K]`` bool (True = a real reference; pad a batch of objects with fewer references
  with False) -> ``encoded_0 .. encoded_{N-1}``: one fused ``[B, C, h_l, w_l]`` map per FPN level
  (the template kernels), then any further tensor the model encodes references into (e.g. a
  colour histogram), exactly :meth:`ReferenceDetector.encode_templates`'s list. ``B`` and ``K``
  are dynamic.
* ``search_detector.onnx``: ``search [B, 3, H, W]`` float RGB in ``[0, 1]`` at the model's
  ``search_size`` and ``encoded_0 ..`` with the same ``B`` -> ``logits [B, H0, W0]`` objectness
  logits and ``boxes [B, H0 * W0, 4]`` ``xyxy`` boxes in search-image pixels, row-major cells
  (a set head, ``model.head.type: query``: ``logits [B, 1, N]``, ``boxes [B, N, 4]``, one per
  query). ``B`` is dynamic.

Normalisation and padding happen inside the graphs, as in PyTorch. What a caller needs to
prepare inputs (template size, search size, stride, template padding) is stored in both graphs'
``metadata_props`` (:class:`GraphInfo`), so a folder is self-describing.

:class:`OnnxDetectorModel` wraps the pair with ``encode_templates`` / ``detect`` methods that take
and return torch tensors like :class:`~pipeline.detector.model.ReferenceDetector`'s, which is all
:class:`~pipeline.inference.detector.Detector` calls: ``Detector.from_onnx(folder)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor

from pipeline.cli import UserError
from pipeline.detector.postprocess import postprocess, top_detections

__all__ = ["DETECTOR_FILE", "ENCODER_FILE", "GraphInfo", "OnnxDetectorModel"]

ENCODER_FILE = "template_encoder.onnx"
DETECTOR_FILE = "search_detector.onnx"
FORMAT = "needle-onnx-1"  # bump when the graphs' inputs/outputs change meaning
_PREFIX = "needle."


@dataclass(frozen=True)
class GraphInfo:
    """What a caller needs to feed the graphs, stored as ``needle.*`` metadata_props (strings).

    template_size: side of the square references. search_size: ``(width, height)`` of the
    search input. stride: pixels per output cell. encoded: number of ``encoded_*`` tensors.
    template_pad, template_pad_value: how references are padded to a square (as in training).
    decoding: the head's :attr:`~pipeline.detector.heads.base.Head.decoding` (``nms`` or ``top``).
    score_threshold: the presence threshold training calibrated (None: the checkpoint had none).
    """

    template_size: int
    search_size: tuple[int, int]
    stride: int
    encoded: int
    template_pad: str = "constant"
    template_pad_value: int = 0
    decoding: str = "nms"
    score_threshold: float | None = None

    def to_props(self) -> dict[str, str]:
        props = {
            "format": FORMAT,
            "template_size": str(self.template_size),
            "search_width": str(self.search_size[0]),
            "search_height": str(self.search_size[1]),
            "stride": str(self.stride),
            "encoded": str(self.encoded),
            "template_pad": self.template_pad,
            "template_pad_value": str(self.template_pad_value),
            "decoding": self.decoding,
            "input": "float32 RGB in [0, 1], NCHW; normalised and padded inside the graph",
        }
        if self.score_threshold is not None:
            props["score_threshold"] = repr(float(self.score_threshold))
        return {_PREFIX + k: v for k, v in props.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str | Path) -> GraphInfo:
        """Parse :meth:`to_props` output; missing or malformed keys are a UserError naming ``source``."""
        if props.get(_PREFIX + "format") != FORMAT:
            found = props.get(_PREFIX + "format", "none")
            raise UserError(f"{source}: not a needle ONNX export of format {FORMAT} (found {found}); re-export it")
        try:
            return cls(
                template_size=int(props[_PREFIX + "template_size"]),
                search_size=(int(props[_PREFIX + "search_width"]), int(props[_PREFIX + "search_height"])),
                stride=int(props[_PREFIX + "stride"]),
                encoded=int(props[_PREFIX + "encoded"]),
                template_pad=props[_PREFIX + "template_pad"],
                template_pad_value=int(props[_PREFIX + "template_pad_value"]),
                # exports from before set heads decode as the dense heads do
                decoding=props.get(_PREFIX + "decoding", "nms"),
                score_threshold=(float(props[_PREFIX + "score_threshold"])
                                 if _PREFIX + "score_threshold" in props else None),
            )
        except (KeyError, ValueError) as exc:
            raise UserError(f"{source}: damaged needle metadata ({type(exc).__name__}: {exc})") from None


def _numpy(x: Tensor, dtype: torch.dtype = torch.float32) -> np.ndarray:
    return x.detach().to("cpu", dtype).contiguous().numpy()


class OnnxDetectorModel:
    """The exported pair in ``folder``, run by ONNX Runtime, with ReferenceDetector's interface.

    Args:
        folder: holds ``template_encoder.onnx`` and ``search_detector.onnx``.
        providers: ONNX Runtime execution providers (default: CPU).
        threads: intra-op threads per session (default: ONNX Runtime's, one per physical core).

    Attributes: ``info`` (:class:`GraphInfo`) and its ``template_size``, ``search_size``, ``stride``.
    A missing file, a file that is not a graph or a pair of two different exports is a UserError.
    """

    def __init__(self, folder: str | Path, providers: Sequence[str] | None = None, threads: int | None = None):
        self.folder = Path(folder)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]
        self.encoder = self._session(self.folder / ENCODER_FILE, options)
        self.detector = self._session(self.folder / DETECTOR_FILE, options)
        infos = [
            GraphInfo.from_props(s.get_modelmeta().custom_metadata_map, self.folder / name)
            for s, name in ((self.encoder, ENCODER_FILE), (self.detector, DETECTOR_FILE))
        ]
        if infos[0] != infos[1]:
            raise UserError(f"{self.folder}: {ENCODER_FILE} and {DETECTOR_FILE} come from different exports")
        self.info = infos[0]
        self.template_size = self.info.template_size
        self.search_size = self.info.search_size
        self.stride = self.info.stride
        self._encoded_names = [f"encoded_{i}" for i in range(self.info.encoded)]

    def _session(self, path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
        if not path.is_file():
            raise UserError(f"{path}: not found (export a checkpoint with python -m pipeline.export)")
        try:
            return ort.InferenceSession(str(path), options, providers=self.providers)
        except Exception as exc:  # ORT raises its own types for unreadable / invalid graphs
            raise UserError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}: {exc})") from None

    def encode_templates(self, templates: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        """``templates [B, K, 3, T, T]`` (``[B, 3, T, T]`` = K 1), ``mask [B, K]`` bool | None ->
        the encoded templates as float32 CPU tensors (one fused ``[B, C, h_l, w_l]`` map per level, ...)."""
        if templates.dim() == 4:
            templates = templates.unsqueeze(1)
        t = self.template_size
        if templates.dim() != 5 or tuple(templates.shape[2:]) != (3, t, t):
            raise ValueError(f"encode_templates: expected templates [B, K, 3, {t}, {t}], got {tuple(templates.shape)}")
        if mask is None:
            mask = torch.ones(templates.shape[:2], dtype=torch.bool)
        if mask.shape != templates.shape[:2]:
            raise ValueError(f"encode_templates: mask shape {tuple(mask.shape)} != (B, K) = {tuple(templates.shape[:2])}")
        if not bool(mask.bool().any(dim=1).all()):  # checked here: the graph cannot (data-dependent)
            raise ValueError("encode_templates: every object needs at least one real template (mask row all False)")
        outputs = self.encoder.run(None, {"templates": _numpy(templates), "mask": _numpy(mask, torch.bool)})
        return [torch.from_numpy(o) for o in outputs]

    def detect(self, search: Tensor, templates_encoded: Sequence[Tensor]) -> dict[str, Any]:
        """``search [B, 3, H, W]`` at ``search_size`` + :meth:`encode_templates` output (batch B or
        1, broadcast) -> ``logits [B, H0, W0]``, ``boxes [B, H0 * W0, 4]`` (float32 CPU tensors),
        ``stride``, ``image_size``. Unlike PyTorch, no ``ltrb`` entry."""
        w, h = self.search_size
        if search.dim() != 4 or tuple(search.shape[1:]) != (3, h, w):
            raise ValueError(f"detect: this export takes search [B, 3, {h}, {w}], got {tuple(search.shape)}")
        if len(templates_encoded) != len(self._encoded_names):
            raise ValueError(
                f"detect: expected {len(self._encoded_names)} encoded template tensors, got {len(templates_encoded)}"
            )
        b = search.shape[0]
        feeds = {"search": _numpy(search)}
        for name, k in zip(self._encoded_names, templates_encoded):
            value = _numpy(k)
            if value.shape[0] != b:
                if value.shape[0] != 1:
                    raise ValueError(f"detect: template batch {value.shape[0]} does not match search batch {b}")
                # the graph takes one encoding per frame: one object's cached encoding serves a batch
                value = np.ascontiguousarray(np.broadcast_to(value, (b, *value.shape[1:])))
            feeds[name] = value
        logits, boxes = self.detector.run(["logits", "boxes"], feeds)
        return {
            "logits": torch.from_numpy(logits),
            "boxes": torch.from_numpy(boxes),
            "stride": self.stride,
            "image_size": (h, w),
        }

    def decode(self, outputs: dict[str, Any], score_threshold: float, nms_iou: float,
               max_detections: int) -> list[tuple[Tensor, Tensor]]:
        """Per frame ``(boxes [N, 4], scores [N])`` from :meth:`detect`, as the exported head
        decodes (:func:`~pipeline.detector.postprocess.postprocess` or, for ``decoding: top``,
        :func:`~pipeline.detector.postprocess.top_detections`)."""
        if self.info.decoding == "top":
            return top_detections(outputs["logits"], outputs["boxes"], score_threshold, max_detections)
        return postprocess(outputs["logits"], outputs["boxes"], score_threshold, nms_iou, max_detections)

    def __repr__(self) -> str:
        return f"OnnxDetectorModel({str(self.folder)!r}, providers={self.providers})"
