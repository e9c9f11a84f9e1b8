"""Export a trained detector as two ONNX graphs (``python -m pipeline.export``).

    python -m pipeline.export --checkpoint models/best.pt --out models/onnx [--opset 18] \\
        [--check-image frame.jpg --check-templates ref_1.jpg ref_2.jpg] [--repeats 5] [--tolerance 1e-3]

Writes into ``--out``, all or nothing (a failed run leaves it as it was):

* ``template_encoder.onnx``: 1..K reference photos -> fused template kernels, one per FPN level
  (and any further tensor the model encodes references into); batch and K dynamic;
* ``search_detector.onnx``: frame + kernels -> objectness logits and boxes (batch dynamic, frame
  size fixed to the checkpoint's ``search_size``, as :class:`~pipeline.inference.Detector` resizes
  every frame to it);
* ``export.json``: which exporter made each graph, the parity and latency figures below, versions.

Inputs, outputs and the ``needle.*`` metadata of the graphs are described in
:mod:`pipeline.inference.onnx_model`; ``Detector.from_onnx(out)`` runs on the pair.

Checks. ONNX Runtime is compared with PyTorch (fp32, CPU) on random inputs (batch 3 with padded
templates, batch 1 with one template: neither is the batch the graphs were traced with) and on a
real-looking input: a scene of the built-in demo generator, or ``--check-image`` with
``--check-templates``, preprocessed as the Detector does. The max abs difference of the fused
kernels, logits and boxes (pixels) and of the Detector's final boxes and scores is printed; any
of them above ``--tolerance`` (default 1e-3; final boxes: times the frame's resize factor) is an
error and nothing is written. Latency (ms per call, median of ``--repeats``) of PyTorch eager vs
ONNX Runtime is printed for the template encoder and for the search detector with cached
templates at batch 1 and 8.

Exporter. Each graph is exported by torch.onnx's dynamo exporter (``dynamo=True``, via
``torch.export``) first and, if that fails, by the TorchScript-based one (``dynamo=False``);
the printout and export.json say which made each graph. The parts are export-friendly
themselves (:func:`pipeline.detector.tracing.exporting`): while exporting, the correlation is
written as shifted products (ONNX ``Conv`` would bake the traced batch into its ``group``) and
the fusions leave out their data-dependent check that every object has a real template, which
:meth:`OnnxDetectorModel.encode_templates` makes instead. LoRA adapters are merged into their
base layers before export. The parity checks at batch sizes other than the traced one cover all
of it.

No TorchScript (``.pt``) export; see docs/export.md for what was tried (``torch.jit.trace`` fails
on the same ``round()`` of a traced size, ``torch.jit.script`` on the model's type hints and
``*args`` signatures). The ONNX pair serves the runtimes TorchScript would.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import re
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from pipeline.cli import UserError, require_writable, run_stage, stage_parser
from pipeline.data.frames import to_tensor_array
from pipeline.detector.backbones.lora import merge_lora
from pipeline.detector.model import ReferenceDetector
from pipeline.inference.detector import Detections, Detector, ImageInput
from pipeline.inference.onnx_model import DETECTOR_FILE, ENCODER_FILE, GraphInfo, OnnxDetectorModel
from pipeline.io import atomic_dir, write_json

log = logging.getLogger(__name__)

REPORT_FILE = "export.json"
OUTPUT_FILES = (ENCODER_FILE, DETECTOR_FILE, REPORT_FILE)
DEFAULT_OPSET = 18  # the lowest the dynamo exporter writes; ONNX Runtime reads it since 1.14
TRACE_BATCH, TRACE_TEMPLATES = 2, 3  # example shapes; checks run at other sizes (1 and 3)
LATENCY_BATCHES = (1, 8)


# -- graphs ------------------------------------------------------------------------------------


class TemplateEncoderGraph(nn.Module):
    """``templates [B, K, 3, T, T]`` float [0, 1], ``mask [B, K]`` bool -> ``(encoded_0, ..)``:
    :meth:`ReferenceDetector.encode_templates` (one fused ``[B, C, h_l, w_l]`` map per level, ...)."""

    def __init__(self, model: ReferenceDetector):
        super().__init__()
        self.model = model

    def forward(self, templates: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.model.encode_templates(templates, mask))


class SearchDetectorGraph(nn.Module):
    """``search [B, 3, H, W]`` float [0, 1], ``encoded_0 ..`` (batch B) -> ``logits [B, H0, W0]``,
    ``boxes [B, H0 * W0, 4]`` xyxy search pixels (:meth:`ReferenceDetector.detect`)."""

    def __init__(self, model: ReferenceDetector):
        super().__init__()
        self.model = model

    def forward(self, search: Tensor, *encoded: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model.detect(search, list(encoded))
        return out["logits"], out["boxes"]


def _first_line(exc: BaseException) -> str:
    """The informative line of an exporter error: its "Exception summary" and the model code
    that raised it, when the exporter gives them."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    where = ""
    if "The following call raised this error:" in lines:
        i = lines.index("The following call raised this error:")
        found = re.match(r'File "(.+)", line (\d+)', lines[i + 1]) if i + 1 < len(lines) else None
        if found:
            code = lines[i + 2] if i + 2 < len(lines) else ""
            where = f" at {Path(found[1]).name}:{found[2]} `{code}`"
    if "## Exception summary" in lines:
        lines = lines[lines.index("## Exception summary") + 1 :]
    text = re.sub(r"^<class '(?:[\w.]+\.)?(\w+)'>", r"\1", lines[0]) if lines else type(exc).__name__
    text = text if len(text) <= 200 else text[:197] + "..."
    return text + where


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence what the dynamo exporter prints: torch.export's graph dump on stderr when it fails,
    onnx_ir's per-initializer INFO lines, warnings."""
    loggers = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_graph(
    module: nn.Module,
    args: tuple[Tensor, ...],
    path: Path,
    inputs: list[str],
    outputs: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    dynamic_shapes: tuple,
    opset: int,
) -> dict[str, Any]:
    """Export ``module(*args)`` to ``path``: dynamo exporter first, TorchScript-based if it fails.

    ``dynamic_axes`` (by input/output name) is for the TorchScript-based exporter,
    ``dynamic_shapes`` (by argument) for dynamo, which cannot derive it for ``*args`` forwards.
    Returns ``{"exporter": "dynamo" | "torchscript"}`` plus ``"dynamo_error"`` after a fallback.
    """
    common = {"opset_version": opset, "input_names": inputs, "output_names": outputs}
    try:
        with _quiet():  # on failure, the one line kept below says why
            torch.onnx.export(module, args, str(path), dynamo=True, external_data=False, verbose=False,
                              dynamic_shapes=dynamic_shapes, **common)
        return {"exporter": "dynamo"}
    except Exception as exc:  # the exporter wraps many error types
        dynamo_error = _first_line(exc)
        log.info("%s: the dynamo exporter failed; trying the TorchScript-based one", path.name)
    path.unlink(missing_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings: the input checks are evaluated once
            torch.onnx.export(module, args, str(path), dynamo=False, dynamic_axes=dynamic_axes, **common)
    except Exception as exc:
        raise UserError(
            f"{path.name}: neither ONNX exporter handles this model (dynamo: {dynamo_error}; "
            f"TorchScript-based: {_first_line(exc)})"
        ) from exc
    return {"exporter": "torchscript", "dynamo_error": dynamo_error}


def _stamp(path: Path, info: GraphInfo, graph: str, exporter: str) -> int:
    """Store ``info`` (and which graph / exporter this is) in the file's metadata_props; returns
    the graph's ONNX opset (the dynamo exporter writes at least 18, whatever was asked)."""
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {**info.to_props(), "needle.graph": graph, "needle.exporter": exporter})
    model.doc_string = f"needle {graph}; inputs/outputs: pipeline/inference/onnx_model.py"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def export_graphs(
    model: ReferenceDetector, info: GraphInfo, folder: Path, opset: int = DEFAULT_OPSET
) -> dict[str, dict[str, Any]]:
    """Write ``template_encoder.onnx`` and ``search_detector.onnx`` of ``model`` into ``folder``.

    Returns per file what :func:`_export_graph` reports (which exporter made it) and its opset.
    """
    model = model.eval()
    gen = torch.Generator().manual_seed(0)
    t, (w, h) = info.template_size, info.search_size
    templates = torch.rand(TRACE_BATCH, TRACE_TEMPLATES, 3, t, t, generator=gen)
    mask = torch.ones(TRACE_BATCH, TRACE_TEMPLATES, dtype=torch.bool)
    search = torch.rand(TRACE_BATCH, 3, h, w, generator=gen)
    batch, k = torch.export.Dim("batch"), torch.export.Dim("templates")
    used = {}
    with torch.no_grad():
        encoded = TemplateEncoderGraph(model)(templates, mask)
    with torch.no_grad():
        if len(encoded) != info.encoded:
            raise ValueError(f"export_graphs: the model encodes {len(encoded)} tensors, info says {info.encoded}")
        names = [f"encoded_{i}" for i in range(len(encoded))]
        used[ENCODER_FILE] = _export_graph(
            TemplateEncoderGraph(model), (templates, mask), folder / ENCODER_FILE, ["templates", "mask"], names,
            {"templates": {0: "batch", 1: "templates"}, "mask": {0: "batch", 1: "templates"}}
            | {n: {0: "batch"} for n in names},
            ({0: batch, 1: k}, {0: batch, 1: k}),
            opset,
        )
        used[DETECTOR_FILE] = _export_graph(
            SearchDetectorGraph(model), (search, *encoded), folder / DETECTOR_FILE, ["search", *names],
            ["logits", "boxes"], {n: {0: "batch"} for n in ["search", *names, "logits", "boxes"]},
            ({0: batch}, tuple({0: batch} for _ in names)),
            opset,
        )
    for file, graph in ((ENCODER_FILE, "template_encoder"), (DETECTOR_FILE, "search_detector")):
        used[file]["opset"] = _stamp(folder / file, info, graph, used[file]["exporter"])
    return used


def graph_info(detector: Detector) -> GraphInfo:
    """What the graphs of ``detector``'s PyTorch model need stored beside them."""
    model = detector.model
    assert isinstance(model, ReferenceDetector)
    t = detector.template_size
    with torch.no_grad():  # how many tensors the model encodes references into
        encoded = len(model.encode_templates(torch.full((1, 1, 3, t, t), 0.5)))
    return GraphInfo(
        template_size=t,
        search_size=detector.search_size,
        stride=int(model.stride),
        encoded=encoded,
        template_pad=detector.template_pad,
        template_pad_value=detector.template_pad_value,
        decoding=model.decoding,
        score_threshold=None if detector.presence is None else float(detector.presence["score_threshold"]),
    )


# -- parity ------------------------------------------------------------------------------------


def _max_diff(a: Sequence[Tensor] | Tensor, b: Sequence[Tensor] | Tensor) -> float:
    pairs = zip(a, b) if isinstance(a, (list, tuple)) else [(a, b)]
    return max(float((x.float().cpu() - y.float().cpu()).abs().max()) for x, y in pairs)  # type: ignore[union-attr]


def raw_parity(model: ReferenceDetector, onnx_model: OnnxDetectorModel, templates: Tensor, mask: Tensor | None,
               search: Tensor) -> dict[str, float]:
    """Max abs difference of fused kernels, logits and boxes: PyTorch chain vs ONNX Runtime chain."""
    with torch.inference_mode():
        ref_kernels = model.encode_templates(templates, mask)
        ref = model.detect(search, ref_kernels)
    kernels = onnx_model.encode_templates(templates, mask)
    got = onnx_model.detect(search, kernels)
    return {
        "kernels": _max_diff(kernels, ref_kernels),
        "logits": _max_diff(got["logits"], ref["logits"]),
        "boxes": _max_diff(got["boxes"], ref["boxes"]),
    }


def random_parity(model: ReferenceDetector, onnx_model: OnnxDetectorModel) -> dict[str, dict[str, float]]:
    """:func:`raw_parity` on uniform noise: batch 3 with 3/2/1 real templates, batch 1 with one."""
    gen = torch.Generator().manual_seed(1)
    t, (w, h) = onnx_model.template_size, onnx_model.search_size
    mask = torch.tensor([[True, True, True], [True, True, False], [False, True, False]])
    return {
        "random, batch 3, K 3 (padded)": raw_parity(
            model, onnx_model, torch.rand(3, 3, 3, t, t, generator=gen), mask, torch.rand(3, 3, h, w, generator=gen)
        ),
        "random, batch 1, K 1": raw_parity(
            model, onnx_model, torch.rand(1, 1, 3, t, t, generator=gen), None, torch.rand(1, 3, h, w, generator=gen)
        ),
    }


def demo_scene(seed: int = 0, object_id: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """A real-looking input: the demo generator's 3 reference photos (256 px) of one object and a
    1024x576 aerial frame with that object in it, as RGB uint8 arrays."""
    from pipeline.config import DemoConfig
    from pipeline.data.demo import render_sequence, render_templates

    cfg = DemoConfig(train_objects=object_id + 1, val_objects=1, frames_per_sequence=1, template_size=256,
                     photo_objects=0.0, photo_grounds=0.0, lookalikes=0.0,
                     absent_fraction=0.0)
    refs = [np.ascontiguousarray(p[..., ::-1]) for p in render_templates(seed, cfg, object_id)]  # BGR -> RGB
    frame = next(iter(render_sequence(seed, cfg, object_id, 0))).image
    return refs, np.ascontiguousarray(frame[..., ::-1])


def _frame_size(frame: ImageInput) -> tuple[int, int]:
    if isinstance(frame, np.ndarray):
        return frame.shape[1], frame.shape[0]
    from pipeline.data.imageio import image_size

    return image_size(frame)


def scene_parity(
    torch_detector: Detector, onnx_detector: Detector, templates: Sequence[ImageInput], frame: ImageInput
) -> dict[str, float]:
    """Raw tensors and the Detectors' final detections on one real scene, PyTorch vs ONNX.

    The raw tensors are the ones the PyTorch Detector feeds its model (same preprocessing as
    evaluation); final boxes are in the frame's pixels, both Detectors at the same thresholds.
    """
    torch_detector.set_templates(list(templates))
    onnx_detector.set_templates(list(templates))
    assert torch_detector._templates is not None
    resized, _ = torch_detector._load_frame(frame)
    search = torch.from_numpy(to_tensor_array(resized))[None]
    assert isinstance(torch_detector.model, ReferenceDetector) and isinstance(onnx_detector.model, OnnxDetectorModel)
    row = raw_parity(torch_detector.model, onnx_detector.model, torch_detector._templates, None, search)
    a: Detections = torch_detector.predict(frame)  # type: ignore[assignment]
    b: Detections = onnx_detector.predict(frame)  # type: ignore[assignment]
    same = a.boxes.shape == b.boxes.shape
    row["detection boxes"] = float(np.abs(a.boxes - b.boxes).max(initial=0.0)) if same else float("inf")
    row["detection scores"] = float(np.abs(a.scores - b.scores).max(initial=0.0)) if same else float("inf")
    width, height = _frame_size(frame)
    row["resize factor"] = max(width / torch_detector.search_size[0], height / torch_detector.search_size[1])
    return row


def parity_failures(parity: dict[str, dict[str, float]], tolerance: float) -> list[str]:
    """One message per difference above ``tolerance`` (final boxes: times the resize factor)."""
    failures = []
    for case, row in parity.items():
        for key, value in row.items():
            if key == "resize factor":
                continue
            limit = tolerance * max(1.0, row.get("resize factor", 1.0)) if key == "detection boxes" else tolerance
            if not value <= limit:  # NaN fails too
                failures.append(f"{case}: {key} differ by {value:.3g} > {limit:.3g}")
    return failures


# -- latency -----------------------------------------------------------------------------------


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: first-call allocations, ORT's lazy initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def measure_latency(model: ReferenceDetector, onnx_model: OnnxDetectorModel, repeats: int) -> list[dict[str, Any]]:
    """ms per call, PyTorch eager vs ONNX Runtime: encoder (1 object, 3 templates) and detector
    (templates encoded once, a batch of 1 and 8 frames, as :meth:`Detector.predict` runs)."""
    gen = torch.Generator().manual_seed(2)
    t, (w, h) = onnx_model.template_size, onnx_model.search_size
    templates = torch.rand(1, 3, 3, t, t, generator=gen)
    with torch.inference_mode():
        torch_kernels = model.encode_templates(templates)
    onnx_kernels = onnx_model.encode_templates(templates)
    rows = []

    def row(graph: str, batch: int, torch_fn: Callable[[], Any], onnx_fn: Callable[[], Any]) -> None:
        with torch.inference_mode():
            torch_ms = _median_ms(torch_fn, repeats)
        onnx_ms = _median_ms(onnx_fn, repeats)
        rows.append({"graph": graph, "batch": batch, "torch_ms": round(torch_ms, 2), "onnx_ms": round(onnx_ms, 2)})

    row("template encoder (K 3)", 1, lambda: model.encode_templates(templates),
        lambda: onnx_model.encode_templates(templates))
    for b in LATENCY_BATCHES:
        search = torch.rand(b, 3, h, w, generator=gen)
        row("search detector (templates cached)", b, lambda s=search: model.detect(s, torch_kernels),
            lambda s=search: onnx_model.detect(s, onnx_kernels))
    return rows


# -- report ------------------------------------------------------------------------------------


def format_report(report: dict[str, Any]) -> str:
    """The exporters, parity and latency tables as Markdown (paste-able into docs/benchmarks.md)."""
    lines = [f"exported {report['checkpoint']}"]
    for file, how in report["exporters"].items():
        why = f" (dynamo exporter failed: {how['dynamo_error']})" if "dynamo_error" in how else ""
        lines.append(f"  {file}: opset {how['opset']}, {how['exporter']} exporter{why}")
    cols = ("kernels", "logits", "boxes", "detection boxes", "detection scores")
    lines += [
        "",
        (f"Parity, max abs difference ONNX Runtime vs PyTorch (fp32, tolerance {report['tolerance']:g}; "
         "boxes in pixels, detection boxes in the frame's):"),
        "",
        "| inputs | fused kernels | logits | boxes | detection boxes | detection scores |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for case, row in report["parity"].items():
        cells = [f"{row[c]:.2e}" if c in row else "-" for c in cols]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    if report["latency"]:
        lines += [
            "",
            (f"Latency, ms per call, median of {report['repeats']} (torch {report['threads']['torch']} threads, "
             "onnxruntime default threads):"),
            "",
            "| graph | batch | PyTorch eager | ONNX Runtime | speed-up |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in report["latency"]:
            speedup = r["torch_ms"] / r["onnx_ms"] if r["onnx_ms"] > 0 else float("nan")
            times = f"{r['torch_ms']:.1f} | {r['onnx_ms']:.1f} | {speedup:.1f}x"
            lines.append(f"| {r['graph']} | {r['batch']} | {times} |")
    return "\n".join(lines)


# -- CLI ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = stage_parser(__doc__, "python -m pipeline.export")
    parser.add_argument("--checkpoint", type=Path, default=Path("models/best.pt"),
                        help="best.pt / last.pt written by training (models/best.pt)")
    parser.add_argument("--out", type=Path, default=Path("models/onnx"),
                        help="output folder, replaced whole (models/onnx)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset ({DEFAULT_OPSET}; the dynamo exporter writes at least 18)")
    parser.add_argument("--check-image", type=Path, help="a frame to check parity on (default: a generated demo scene)")
    parser.add_argument("--check-templates", type=Path, nargs="+", help="reference photos for --check-image")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest max abs difference allowed (1e-3)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per latency figure; 0 = no timing (5)")
    args = parser.parse_args(argv)
    if (args.check_image is None) != (args.check_templates is None):
        parser.error("--check-image and --check-templates go together")
    if args.repeats < 0 or not args.tolerance > 0:
        parser.error("--repeats must be >= 0 and --tolerance > 0")
    return args


def _check_out(out: Path) -> None:
    """``--out`` is replaced whole: refuse a folder holding anything but a previous export, and a
    place where the new folder cannot be made."""
    require_writable(out.parent)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: --out exists and is not a folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_FILES)
        if foreign:
            raise UserError(f"{out}: --out holds other files ({', '.join(foreign[:3])}), and would be replaced "
                            f"whole; choose a new or empty folder")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    _check_out(args.out)
    # score_threshold 0: compare the full top-k lists, not whatever passes a threshold
    torch_detector = Detector.from_checkpoint(args.checkpoint, device="cpu", score_threshold=0.0)
    model = torch_detector.model
    assert isinstance(model, ReferenceDetector)
    merged = merge_lora(model)  # plain layers again: the graphs hold no adapter code
    if merged:
        log.info("merged %d LoRA adapters into their base layers", merged)
    info = graph_info(torch_detector)
    if args.check_image is not None:
        templates: list[ImageInput] = list(args.check_templates)
        frame: ImageInput = args.check_image
        scene = f"{args.check_image.name}, K {len(templates)}"
    else:
        templates, frame = demo_scene()  # type: ignore[assignment]
        scene = f"demo scene, K {len(templates)}"

    with atomic_dir(args.out) as tmp:
        exporters = export_graphs(model, info, tmp, args.opset)
        onnx_model = OnnxDetectorModel(tmp)
        onnx_detector = Detector(onnx_model, info.template_size, info.search_size, score_threshold=0.0,
                                 template_pad=info.template_pad, template_pad_value=info.template_pad_value)
        parity = random_parity(model, onnx_model)
        parity[scene] = scene_parity(torch_detector, onnx_detector, templates, frame)
        report = {
            "checkpoint": str(args.checkpoint),
            "opset_requested": args.opset,
            "exporters": exporters,
            "graph_info": info.to_props(),
            "tolerance": args.tolerance,
            "parity": parity,
            "repeats": args.repeats,
            "threads": {"torch": torch.get_num_threads()},
            "latency": measure_latency(model, onnx_model, args.repeats) if args.repeats else [],
            "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        }
        print(format_report(report), flush=True)
        failures = parity_failures(parity, args.tolerance)
        if failures:
            raise UserError(
                f"ONNX Runtime disagrees with PyTorch ({'; '.join(failures)}); nothing written to {args.out}"
            )
        write_json(tmp / REPORT_FILE, report)
    log.info("wrote %s and %s to %s", ENCODER_FILE, DETECTOR_FILE, args.out)


if __name__ == "__main__":
    run_stage(main)
