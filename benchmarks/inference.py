"""Inference ms/frame: cached template features vs re-encoding the templates every frame, PyTorch
eager vs ONNX Runtime, batch 1 and 8.

Both runtimes expose ReferenceDetector's two methods (``encode_templates``, ``detect``), so one
code path times both: *cached* is what :class:`pipeline.inference.Detector` does per batch of
frames once ``set_templates`` has run (``detect`` on the fused features of one object, broadcast
over the batch, then ``postprocess``); *re-encode* is ``model(templates, search)`` per batch, i.e.
``encode_templates`` of every frame's K templates followed by the same ``detect`` and
``postprocess``. Inputs are float tensors already at the model's sizes (image decoding and
resizing are the same in both and left out). PyTorch runs in fp32 and under the device's autocast
dtype (bf16 on CPU, fp16 on CUDA: ``evaluate.amp: auto``); ONNX Runtime in fp32, as exported.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from benchmarks.common import (
    WARM_ENOUGH_S,
    Table,
    Timing,
    fmt,
    measure_interleaved,
    ratio,
    repeats_note,
)
from benchmarks.train_step import seed_params
from pipeline.config import CALIBRATED, Params
from pipeline.detector import build_detector
from pipeline.detector.model import ReferenceDetector
from pipeline.engine.amp import Precision, resolve_precision
from pipeline.metrics.calibration import DEFAULT_THRESHOLD

#: The issue's target for cached / re-encode time per frame.
TARGET = 0.6
NOT_AVAILABLE = "n/a (export not available)"


class DetectorModel(Protocol):
    """What :class:`pipeline.inference.Detector` calls on a model (PyTorch or ONNX Runtime)."""

    def encode_templates(self, templates: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]: ...

    def detect(self, search: torch.Tensor, templates_encoded: Any) -> dict[str, Any]: ...

    def decode(self, outputs: dict[str, Any], score_threshold: float, nms_iou: float, max_detections: int) -> Any: ...


@dataclass(frozen=True)
class InferenceCase:
    name: str
    params: Params  # model, templates.size and evaluate thresholds
    templates: int = 3  # K reference photos of the object
    batches: tuple[int, ...] | None = None  # None: InferenceSettings.batches
    onnx: bool = True  # False: no export (it takes minutes for the seed model on 2 cores)

    def describe(self) -> str:
        m = self.params.model
        w, h = m.search_size
        return (f"{self.name}: {m.backbone.name}, levels {list(m.levels)}, neck {m.neck.type} {m.neck.channels}, "
                f"search {w}x{h}, "
                f"{self.templates}x{self.params.templates.size} px templates")


def inference_cases(params: Params) -> tuple[InferenceCase, InferenceCase]:
    """The demo model as configured and the seed-scale model (see :func:`benchmarks.train_step.seed_params`)."""
    return InferenceCase("demo", params), InferenceCase("seed", seed_params(params))


@dataclass(frozen=True)
class InferenceSettings:
    cases: tuple[InferenceCase, ...]
    batches: tuple[int, ...] = (1, 8)
    warmup: int = 2
    repeats: int = 20
    max_seconds: float = 30.0  # per batch size and runtime, all calls together: slow cases stop after 3 rounds past this
    onnx: bool = True


class EagerModel:
    """The PyTorch model under ``inference_mode`` and ``precision``'s autocast (as the Detector runs it)."""

    def __init__(self, model: ReferenceDetector, precision: Precision):
        self.model = model.eval()
        self.precision = precision

    def encode_templates(self, templates: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        with torch.inference_mode(), self.precision.autocast():
            return self.model.encode_templates(templates, mask)

    def detect(self, search: torch.Tensor, templates_encoded: Any) -> dict[str, Any]:
        with torch.inference_mode(), self.precision.autocast():
            return self.model.detect(search, templates_encoded)

    def decode(self, outputs: dict[str, Any], score_threshold: float, nms_iou: float, max_detections: int) -> Any:
        with torch.inference_mode():
            return self.model.decode(outputs, score_threshold, nms_iou, max_detections)


def onnx_model(model: ReferenceDetector, case: InferenceCase, folder: Path, device: torch.device) -> DetectorModel | str:
    """The model exported by ``pipeline.export`` into ``folder`` and loaded in ONNX Runtime (CUDA
    provider for a CUDA ``device``), or why not (the row then says ``n/a (...)``, eager rows still run)."""
    if importlib.util.find_spec("pipeline.inference.onnx_model") is None:
        return NOT_AVAILABLE
    try:
        import onnxruntime as ort

        from pipeline.export import export_graphs
        from pipeline.inference.onnx_model import GraphInfo, OnnxDetectorModel
    except ImportError as exc:
        return f"{NOT_AVAILABLE[:-1]}: {exc})"
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "n/a (onnxruntime has no CUDA provider: install onnxruntime-gpu)"
        providers.insert(0, "CUDAExecutionProvider")
    model = model.cpu()  # exported (and parity-traced) on the CPU
    t = case.params.templates.size
    try:
        with torch.no_grad():
            encoded = len(model.encode_templates(torch.full((1, 1, 3, t, t), 0.5)))
        info = GraphInfo(template_size=t, search_size=tuple(case.params.model.search_size), stride=int(model.stride),
                         encoded=encoded)
        export_graphs(model, info, folder)
        # as many threads as torch uses, so the two runtimes compare like for like
        return OnnxDetectorModel(folder, providers=providers, threads=torch.get_num_threads())
    except Exception as exc:  # an export that fails on this model must not sink the eager rows
        return f"n/a (export failed: {type(exc).__name__}: {str(exc)[:120]})"


def frame_fns(
    runtime: DetectorModel, case: InferenceCase, batch: int, device: torch.device
) -> dict[str, Callable[[], object]]:
    """The timed calls for one batch size: ``encode`` (once per object), ``cached`` and ``re-encode``;
    inputs are made on ``device``."""
    g = torch.Generator().manual_seed(0)
    t, k = case.params.templates.size, case.templates
    w, h = case.params.model.search_size
    ev = case.params.evaluate
    # calibrated: the checkpoint's threshold, unknown here (random weights); the default costs the same
    threshold = DEFAULT_THRESHOLD if ev.score_threshold == CALIBRATED else ev.score_threshold
    search = torch.rand(batch, 3, h, w, generator=g).to(device)
    one_object = torch.rand(1, k, 3, t, t, generator=g).to(device)
    per_frame = one_object.expand(batch, -1, -1, -1, -1).contiguous()  # every frame brings its templates
    cached = runtime.encode_templates(one_object)

    def finish(out: dict[str, Any]) -> object:
        return runtime.decode(out, threshold, ev.nms_iou, ev.max_detections)

    return {
        "encode": lambda: runtime.encode_templates(one_object),
        "cached": lambda: finish(runtime.detect(search, cached)),
        "re-encode": lambda: finish(runtime.detect(search, runtime.encode_templates(per_frame))),
    }


def inference_section(settings: InferenceSettings, device: torch.device, scratch: Path, auto: Precision) -> Table:
    """ms/frame per case, batch size and runtime; cached / re-encode and ONNX / eager side by side.
    ``auto`` is what ``evaluate.amp: auto`` resolves to here: its eager row is timed where it is
    not fp32, and a column marks the rows that run in it."""
    table = Table(
        "Inference",
        ["config", "batch", "runtime", f"auto = {auto.name}", "re-encode ms/frame", "cached ms/frame", "cached / re-encode",
         f"target ≤ {TARGET:g}×", "vs eager (cached)", "encode once ms"],
    )
    for case in settings.cases:
        torch.manual_seed(0)
        model = build_detector(case.params.model).eval()
        # (name, model or why not, where its inputs live); exported first, while the model is on the CPU
        onnx: DetectorModel | str = "n/a (skipped: --no-onnx)" if not settings.onnx else "n/a (not exported in this mode)"
        if settings.onnx and case.onnx:
            folder = Path(tempfile.mkdtemp(prefix=f"onnx-{case.name}-", dir=scratch))
            onnx = onnx_model(model, case, folder, device)
        model = model.to(device)
        low: EagerModel | str = EagerModel(model, auto) if auto.dtype is not None else (
            "n/a (auto = fp32 here: this CPU emulates bf16)")
        runtimes = [("PyTorch eager", EagerModel(model, resolve_precision("off", device)), device),
                    ("PyTorch eager bf16" if device.type == "cpu" else "PyTorch eager fp16", low, device),
                    ("ONNX Runtime", onnx, torch.device("cpu"))]
        for batch in case.batches or settings.batches:
            eager_cached: float | None = None
            for name, runtime, inputs_on in runtimes:
                if isinstance(runtime, str):
                    table.add([case.name, batch, name, "", runtime, "", "", "", "", ""],
                              config=case.name, batch=batch, runtime=name, error=runtime)
                    continue
                fns = frame_fns(runtime, case, batch, inputs_on)
                timings: dict[str, Timing] = measure_interleaved(
                    fns, settings.warmup, settings.repeats, device, settings.max_seconds)
                re_ms = timings["re-encode"].median / batch * 1e3
                cached_ms = timings["cached"].median / batch * 1e3
                encode_ms = timings["encode"].median * 1e3
                eager_cached = cached_ms if name == "PyTorch eager" else eager_cached
                share = cached_ms / re_ms
                in_auto = isinstance(runtime, EagerModel) and runtime.precision.dtype == auto.dtype
                table.add(
                    [case.name, batch, name, "✓" if in_auto else "", fmt(re_ms), fmt(cached_ms), f"{share:.2f}×",
                     "met" if share <= TARGET else "missed", ratio(cached_ms, eager_cached), fmt(encode_ms)],
                    config=case.name, batch=batch, runtime=name, reencode_ms_per_frame=re_ms,
                    cached_ms_per_frame=cached_ms, cached_over_reencode=share, encode_once_ms=encode_ms,
                    repeats={k: len(v.times) for k, v in timings.items()},
                )
        table.notes.append(case.describe())
    table.notes += [
        "re-encode: encode_templates of each frame's K templates + detect + postprocess per batch; cached: "
        "detect with one object's fused features (encoded once, broadcast over the batch) + postprocess; "
        "ms/frame = median call time / batch; inputs already at model size (no decoding or resizing); "
        "PyTorch eager: fp32; PyTorch eager bf16 / fp16: under autocast (evaluate.amp: auto); "
        f"ONNX Runtime: fp32 graphs of pipeline.export, intra-op threads: {torch.get_num_threads()} (as torch)",
        f"{repeats_note('rounds', settings.repeats, settings.max_seconds)}, each round timing encode once, cached "
        "and re-encode in turn (interleaved, so a slow spell of the machine hits all three alike), after up to "
        f"{settings.warmup} warm-up call(s) each (one for calls of over {WARM_ENOUGH_S:g} s); encode once: one "
        "object's K templates; vs eager: this row's cached ms/frame over PyTorch eager (fp32)'s at the same batch",
    ]
    return table

