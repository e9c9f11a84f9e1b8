"""Streaming video search: frames/s of ``predict --video`` end to end, and what each lever costs in ST-IoU.

    python -m benchmarks.video [--quick] [--checkpoint models/best.pt] [--videos 2] [--frames 300] [--out F]

Renders long demo clips (``data.demo`` with the video preset's keys: absence in stretches, long
occlusions, look-alikes crossing, zoom, tilt) as mp4 files with their references and truth, then
runs :func:`pipeline.inference.stream.search_video` (decoding included) on every clip for each
variant: the per-frame top-1, the smoothing, the tracker (``temporal.method: track``, params.yaml's
knobs), the tracker with the model on every 2nd / 3rd frame, and the tracker on the ONNX Runtime
graphs of ``python -m pipeline.export`` (fp32, and int8 after ONNX Runtime's dynamic
quantisation). Variants run round by round in one process, so the frames/s ratios against the
first are taken side by side; each row also has the share of time in the temporal step and the
clips' mean ST-IoU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import Table, ratio, run_single_section, single_section_parser
from pipeline.config import CALIBRATED, Params, TemporalConfig, load_params
from pipeline.inference import Detector
from pipeline.inference.stream import VideoAnswers, search_video, submission_entry
from pipeline.inference.temporal import resolve_temporal
from pipeline.metrics.stiou import score_submission

#: The video preset's ``data.demo`` keys (docs/data.md), for clips of ``frames`` frames.
PRESET = {"absence": "stretches", "occlusion_runs": 2, "crossings": 2, "zoom": 0.3, "tilt": 0.2}


@dataclass(frozen=True)
class Variant:
    name: str
    runtime: str  # torch | onnx | onnx-int8
    method: str | None  # None: per-frame top-1; smooth; track
    detect_every: int = 1


VARIANTS = (
    Variant("per-frame top-1", "torch", None),
    Variant("smoothed", "torch", "smooth"),
    Variant("tracked", "torch", "track"),
    Variant("tracked, model on every 2nd frame", "torch", "track", 2),
    Variant("tracked, model on every 3rd frame", "torch", "track", 3),
    Variant("tracked, ONNX Runtime fp32", "onnx", "track"),
    Variant("tracked, ONNX Runtime int8 (dynamic)", "onnx-int8", "track"),
)


@dataclass(frozen=True)
class Clip:
    video_id: str
    path: Path
    references: list[Path]


def render_clips(folder: Path, params: Params, videos: int, frames: int) -> tuple[list[Clip], list[dict]]:
    """``videos`` demo clips of ``frames`` frames (val objects 0..videos-1, the video preset's
    keys) in the video layout under ``folder``; returns them and their ``annotations.json``."""
    from pipeline.data.demo import generate_demo

    demo = dataclasses.replace(params.data.demo, train_objects=1, val_objects=videos, layout="video",
                               val_frames_per_sequence=frames, sequences_per_object=1, **PRESET)
    photos = Path(params.realset.source) if params.data.demo.photo_objects or params.data.demo.photo_grounds else None
    generate_demo(folder, demo, params.data.seed, photo_dir=photos)
    root = folder / "val"
    truth = json.loads((root / "annotations" / "annotations.json").read_text())
    clips = [Clip(entry["video_id"], root / "samples" / entry["video_id"] / "drone_video.mp4",
                  sorted((root / "samples" / entry["video_id"] / "object_images").iterdir())) for entry in truth]
    return clips, truth


def detectors(checkpoint: Path, folder: Path, top_k: int, runtimes: set[str]) -> dict[str, Detector]:
    """The checkpoint's model per runtime: PyTorch (``evaluate.amp: auto``), and its ONNX export
    in fp32 and int8 (ONNX Runtime's dynamic quantisation of the search graph)."""
    out = {"torch": Detector.from_checkpoint(checkpoint, score_threshold=0.0, max_detections=top_k, amp="auto")}
    if runtimes & {"onnx", "onnx-int8"}:
        from pipeline.export import export_graphs, graph_info
        from pipeline.inference.onnx_model import DETECTOR_FILE, ENCODER_FILE

        fp32 = folder / "onnx"
        fp32.mkdir()
        plain = Detector.from_checkpoint(checkpoint, score_threshold=0.0)
        export_graphs(plain.model, graph_info(plain), fp32)  # type: ignore[arg-type]
        threads = torch.get_num_threads()
        out["onnx"] = Detector.from_onnx(fp32, threads=threads, score_threshold=0.0, max_detections=top_k)
        if "onnx-int8" in runtimes:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            int8 = folder / "onnx-int8"
            int8.mkdir()
            (int8 / ENCODER_FILE).write_bytes((fp32 / ENCODER_FILE).read_bytes())
            logging.disable(logging.INFO)  # one line per tensor otherwise
            try:
                quantize_dynamic(fp32 / DETECTOR_FILE, int8 / DETECTOR_FILE, weight_type=QuantType.QInt8)
            finally:
                logging.disable(logging.NOTSET)
            out["onnx-int8"] = Detector.from_onnx(int8, threads=threads, score_threshold=0.0, max_detections=top_k)
    return out


def temporal_for(variant: Variant, base: TemporalConfig, threshold: float) -> TemporalConfig | None:
    if variant.method is None:
        return None
    return resolve_temporal(dataclasses.replace(base, enabled=True, method=variant.method), threshold)


def video_section(checkpoint: Path, params: Params, videos: int, frames: int, rounds: int,
                  variants: Sequence[Variant] = VARIANTS, batch_size: int = 8) -> Table:
    """One row per variant: frames/s over all clips (median of ``rounds``), the ratio to the
    first variant, the temporal step's share of the time and the clips' mean ST-IoU."""
    table = Table("Video search end to end (decoding included): frames/s and ST-IoU per lever",
                  ["variant", "frames/s", "vs first", "temporal step", "ST-IoU"])
    with tempfile.TemporaryDirectory(prefix="needle-video-bench-") as tmp:
        folder = Path(tmp)
        clips, truth = render_clips(folder / "clips", params, videos, frames)
        models = detectors(checkpoint, folder, params.temporal.track.top_k, {v.runtime for v in variants})
        threshold = models["torch"].resolve_threshold(CALIBRATED)[0]
        runs: dict[str, list[list[VideoAnswers]]] = {v.name: [] for v in variants}
        for _ in range(rounds):
            for v in variants:
                detector = models[v.runtime]
                answers = []
                for clip in clips:
                    detector.set_templates(clip.references)
                    answers.append(search_video(detector, clip.path, clip.video_id,
                                                temporal_for(v, params.temporal, threshold), threshold, batch_size,
                                                v.detect_every))
                runs[v.name].append(answers)
        base = None
        for v in variants:
            fps = [sum(a.frames for a in r) / sum(a.seconds for a in r) for r in runs[v.name]]
            share = statistics.median(sum(a.temporal_seconds for a in r) / sum(a.seconds for a in r)
                                      for r in runs[v.name])
            scores = score_submission(truth, [submission_entry(a) for a in runs[v.name][-1]])
            median_fps = statistics.median(fps)
            base = base or median_fps
            table.add([v.name, f"{median_fps:.1f}", ratio(median_fps, base), f"{100 * share:.1f} %",
                       f"{statistics.mean(scores.values()):.3f}"],
                      variant=v.name, frames_per_second=fps, temporal_share=share, st_iou=scores)
    table.notes += [
        f"{videos} demo clips of {frames} frames at 1024x576 (val objects 0-{videos - 1}, the video preset's keys "
        f"{PRESET}), mp4 decoded by OpenCV; model {checkpoint}, search size {params.model.search_size}, batch "
        f"{batch_size}, PyTorch in evaluate.amp: auto; ONNX Runtime with {torch.get_num_threads()} intra-op threads",
        f"frames/s: median of {rounds} rounds, each round every variant over every clip in turn; vs first: frames/s "
        "over the first row's; temporal step: share of the wall time in smoothing or tracking",
        "ST-IoU: mean over the clips of the submission each variant writes (the last round's), against the truth",
        "tracker knobs: params.yaml's temporal.track; presence threshold: the checkpoint's calibrated one",
    ]
    return table


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = single_section_parser("video", __doc__, "2 clips of 24 frames, 1 round")
    ap.add_argument("--checkpoint", type=Path, default=Path("models/best.pt"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--videos", type=int, default=2)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(args.params)
    videos, frames, rounds = (2, 24, 1) if args.quick else (args.videos, args.frames, args.rounds)
    section: Callable[[], Table] = lambda: video_section(args.checkpoint, params, videos, frames, rounds)
    run_single_section("video", "needle video benchmark", args.quick, args.out, section)


if __name__ == "__main__":
    from pipeline.cli import run_stage

    run_stage(main)
