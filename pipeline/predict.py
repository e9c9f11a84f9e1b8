"""Find an object in images or videos with a trained model (``python -m pipeline.predict``).

    python -m pipeline.predict --checkpoint models/best.pt --templates refs/ \\
        --search frames/ --out predictions/ [--score-threshold T] [--visualize]
    python -m pipeline.predict --checkpoint models/best.pt --templates refs/ --video clip.mp4 --out OUT
    python -m pipeline.predict --checkpoint models/best.pt --dataset DIR --out OUT

``--search`` writes ``OUT/predictions.csv`` (``image,x1,y1,x2,y2,score``: one row per detection,
boxes in the image's pixels; images without a detection have no row) and, with ``--visualize``, a
copy of each image with its boxes and scores drawn (``OUT/<name>_pred.jpg``).

``--video`` streams the frames of one clip through the model (templates encoded once), applies the
``temporal`` post-processing of ``--params`` (default ``params.yaml`` when there is one) and writes
``OUT/submission.json``, the drone benchmark's submission format
(:mod:`pipeline.inference.stream`); ``--dataset`` does that for every video of a data set in the
``video`` layout (each with its own ``object_images/``) into one ``OUT/submission.json``. Not a
DVC stage: a tool for running the trained model on new data.

On a terminal a progress bar counts the frames done; at the end each mode prints the mean
ms/frame (videos: also frames/s).

The score threshold is the checkpoint's presence threshold, chosen on the validation split at the
end of training (0.3 for a checkpoint without one), unless ``--score-threshold`` overrides it;
``calibrated`` temporal thresholds follow the threshold in use.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from pipeline.cli import UserError, require_writable, run_stage, stage_parser
from pipeline.config import CALIBRATED, TemporalConfig, load_params
from pipeline.data.dataset import read_rgb
from pipeline.data.formats.common import IMAGE_EXTS
from pipeline.data.formats.video import TEMPLATE_DIR, VIDEO_NAME, sample_folders
from pipeline.engine.amp import AMP_MODES, describe_precision, resolve_precision
from pipeline.inference.detector import Detections, Detector
from pipeline.inference.stream import VideoAnswers, search_video, submission, submission_entry
from pipeline.inference.temporal import resolve_temporal
from pipeline.io import write_csv, write_json

log = logging.getLogger(__name__)

COLUMNS = ("image", "x1", "y1", "x2", "y2", "score")
SUBMISSION = "submission.json"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = stage_parser(__doc__, "python -m pipeline.predict")
    parser.add_argument("--checkpoint", required=True, type=Path, help="best.pt / last.pt written by training")
    parser.add_argument("--templates", nargs="+", type=Path,
                        help="reference photos of the object: files and/or folders of images (not with --dataset)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--search", nargs="+", type=Path, help="images to search: files and/or folders")
    what.add_argument("--video", type=Path, help="a video to search, frame by frame; writes OUT/submission.json")
    what.add_argument("--dataset", type=Path,
                      help="a data set in the video layout (samples/<id>/object_images, drone_video.mp4): "
                           "every video, into one OUT/submission.json")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--video-id", help="video_id of --video in the submission (default: the folder name for "
                                           f"{VIDEO_NAME}, else the file name without suffix)")
    parser.add_argument("--params", type=Path,
                        help="params file whose temporal section post-processes videos (default: params.yaml "
                             "if present, else the built-in defaults)")
    parser.add_argument("--detect-every", type=int, default=1, metavar="K",
                        help="videos: run the model on every K-th frame only and interpolate the answers "
                             "between (default 1: every frame; docs/video.md measures the trade-off)")
    parser.add_argument("--no-temporal", action="store_true",
                        help="videos: raw top-1 box per frame above --score-threshold, no temporal smoothing")
    parser.add_argument("--score-threshold", type=float, default=None,
                        help="drop detections scoring below (default: the checkpoint's calibrated presence "
                             "threshold, 0.3 without one); for videos the raw answer's threshold with "
                             "--no-temporal or temporal.enabled: false, else what calibrated temporal "
                             "thresholds follow")
    parser.add_argument("--nms-iou", type=float, default=0.5, help="NMS IoU threshold (0.5)")
    parser.add_argument("--max-detections", type=int, default=10, help="at most this many per image (10)")
    parser.add_argument("--flip-tta", action="store_true", help="also search mirrored images (2x time)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per model call (8)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--amp", choices=AMP_MODES, default="auto",
                        help="autocast precision: auto (fp16 on CUDA, bf16 on a CPU with native bf16, else fp32; "
                             "the evaluate stage's default), "
                             "bf16, fp16 (CUDA only), off (fp32)")
    parser.add_argument("--visualize", action="store_true", help="write images with the boxes drawn")
    args = parser.parse_args(argv)
    if args.score_threshold is not None and not 0.0 <= args.score_threshold <= 1.0:
        parser.error(f"--score-threshold: {args.score_threshold} is not in 0..1")
    if args.max_detections < 1 or args.batch_size < 1 or args.detect_every < 1:
        parser.error("--max-detections, --batch-size and --detect-every must be >= 1")
    if args.dataset is None and not args.templates:
        parser.error("--templates is required with --search and --video")
    if args.dataset is not None and args.templates:
        parser.error("--templates does not apply to --dataset (each video has its object_images/)")
    if args.search is None and args.visualize:
        parser.error("--visualize applies to --search only")
    if args.video_id is not None and args.video is None:
        parser.error("--video-id applies to --video only")
    return args


def image_files(paths: Sequence[Path], what: str) -> list[Path]:
    """Files as given, folders expanded to their images (sorted, not recursive).

    A missing path or a folder without images is a UserError naming it.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
            if not found:
                raise UserError(f"{path}: no {what} images in this folder ({', '.join(IMAGE_EXTS)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{path}: {what} image or folder not found")
    return files


def pick_device(name: str | None) -> torch.device:
    """``name`` as a torch device (default: cuda if available); an unusable one is a UserError."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: {name!r} is not a device (use cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device: {name!r} requested but CUDA is not available")
    return device


def load_detector(args: argparse.Namespace, score_threshold: float | None, max_detections: int) -> Detector:
    """The checkpoint's model on ``--device`` in ``--amp`` precision, with ``--nms-iou`` and ``--flip-tta``;
    ``score_threshold`` None: the checkpoint's presence threshold."""
    device = pick_device(args.device)
    precision = resolve_precision(args.amp, device, key="--amp")
    log.info(describe_precision("--amp", args.amp, precision))
    return Detector.from_checkpoint(
        args.checkpoint, device, score_threshold=score_threshold, nms_iou=args.nms_iou, max_detections=max_detections,
        flip_tta=args.flip_tta, amp=precision,
    )


def predictions_table(images: Sequence[Path], detections: Sequence[Detections]) -> pd.DataFrame:
    """One row per detection (best first within an image), boxes rounded to 0.01 px."""
    rows = [
        # float64 first: a float32 rounded to 0.01 still prints as 100.18000030517578
        (str(image), *np.round(box.astype(np.float64), 2).tolist(), round(float(score), 4))
        for image, found in zip(images, detections)
        for box, score in zip(found.boxes, found.scores)
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def draw(image: np.ndarray, found: Detections) -> np.ndarray:
    """``image`` (HWC RGB uint8) with boxes and scores drawn, best box thickest; returns BGR."""
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    side = max(image.shape[:2])
    thick, font = max(1, side // 400), max(0.35, side / 1600)
    for rank, (box, score) in enumerate(zip(found.boxes, found.scores)):
        x1, y1, x2, y2 = np.round(box).astype(int).tolist()
        colour = (0, 0, 255) if rank == 0 else (0, 200, 255)  # red: top-1, orange: the rest
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick + (rank == 0))
        cv2.putText(out, f"{score:.2f}", (x1, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, font, colour, thick,
                    cv2.LINE_AA)
    return out


def write_visualizations(out_dir: Path, images: Sequence[Path], detections: Sequence[Detections]) -> None:
    """``out_dir/<stem>_pred.jpg`` per image (``_2``, ``_3``... when two images share a stem)."""
    used: set[str] = set()
    for image, found in zip(images, detections):
        name, n = f"{image.stem}_pred", 1
        while name in used:
            n += 1
            name = f"{image.stem}_pred_{n}"
        used.add(name)
        target = out_dir / f"{name}.jpg"
        if not cv2.imwrite(str(target), draw(read_rgb(image), found)):
            raise UserError(f"{target}: cannot write image")


def temporal_config(params: Path | None, disabled: bool) -> TemporalConfig | None:
    """The ``temporal`` section of ``params`` (default ``params.yaml`` when it exists, else the
    defaults); None when smoothing is off (``--no-temporal`` or ``temporal.enabled: false``)."""
    if disabled:
        return None
    if params is None:
        params = Path("params.yaml") if Path("params.yaml").is_file() else None
    cfg = load_params(params).temporal if params is not None else TemporalConfig()
    return cfg if cfg.enabled else None


def default_video_id(path: Path) -> str:
    """``samples/<id>/drone_video.mp4`` -> ``<id>``; any other file -> its name without suffix."""
    return path.parent.resolve().name if path.name == VIDEO_NAME else path.stem


def dataset_videos(root: Path) -> list[tuple[str, Path, list[Path]]]:
    """``(video_id, video file, reference photos)`` of every sample of a video-layout data set."""
    if not root.is_dir():
        raise UserError(f"--dataset {root}: not a folder")
    out, seen = [], set()
    for _, vid, folder in sample_folders(root):
        if vid in seen:
            raise UserError(f"{folder}: video {vid} is in two splits")
        seen.add(vid)
        out.append((vid, folder / VIDEO_NAME, image_files([folder / TEMPLATE_DIR], "template")))
    if not out:
        raise UserError(f"{root}: no samples/<video_id>/ folders")
    return out


def predict_images(detector: Detector, images: Sequence[Path], batch_size: int) -> tuple[list[Detections], float]:
    """Detections of every image (in batches, with a progress bar on a terminal) and the mean ms per
    image (reading, preprocessing, the model and post-processing)."""
    found: list[Detections] = []
    start = time.perf_counter()
    with tqdm(total=len(images), unit="frame", desc="predict", disable=None) as bar:
        for i in range(0, len(images), batch_size):
            chunk = list(images[i:i + batch_size])
            found.extend(detector.predict(chunk, batch_size=batch_size))
            bar.update(len(chunk))
    return found, 1000.0 * (time.perf_counter() - start) / max(len(images), 1)


def report_speed(answers: VideoAnswers) -> None:
    """One line per video on stdout: frames, frames with an answer, ms/frame, frames/s and the
    temporal step's share of the time."""
    ms = 1000.0 * answers.seconds / max(answers.frames, 1)
    share = answers.temporal_seconds / answers.seconds if answers.seconds > 0 else 0.0
    print(f"{answers.video_id}: {answers.frames} frames, {answers.frames_with_answer} with the object, "
          f"{ms:.1f} ms/frame, {answers.frames_per_second:.1f} frames/s ({100 * share:.1f} % in the temporal step)",
          flush=True)


def predict_videos(args: argparse.Namespace) -> None:
    """``--video`` / ``--dataset``: stream each video, write one submission document."""
    temporal = temporal_config(args.params, args.no_temporal)
    if args.video is not None:
        videos = [(args.video_id or default_video_id(args.video), args.video, image_files(args.templates, "template"))]
    else:
        videos = dataset_videos(args.dataset)
    # With the filter, the detector keeps every score: the filter's own thresholds decide; the
    # tracker gets each frame's top-k candidates.
    candidates = temporal.track.top_k if temporal is not None and temporal.method == "track" else 1
    detector = load_detector(args, score_threshold=0.0 if temporal else args.score_threshold,
                             max_detections=candidates)
    threshold = detector.score_threshold if temporal is None else detector.resolve_threshold(
        CALIBRATED if args.score_threshold is None else args.score_threshold)[0]
    if temporal is not None:
        temporal = resolve_temporal(temporal, threshold)
        if temporal.method == "track":
            log.info("temporal: tracking over %d candidates per frame (%s), presence threshold %.4g",
                     temporal.track.top_k, temporal.track.mode, threshold)
        else:
            log.info("temporal: on at %.4g, off below %.4g", temporal.on_threshold, temporal.off_threshold)
    entries, total = [], None
    for vid, path, templates in videos:
        detector.set_templates(templates)
        with tqdm(unit="frame", desc=vid, disable=None) as bar:  # shown on a terminal only
            answers = search_video(detector, path, vid, temporal, threshold, args.batch_size, args.detect_every,
                                   bar.update)
        report_speed(answers)
        entries.append(submission_entry(answers))
        frames, seconds = answers.frames, answers.seconds
        total = (frames, seconds) if total is None else (total[0] + frames, total[1] + seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / SUBMISSION, submission(entries))
    if len(videos) > 1 and total is not None:
        print(f"all {len(videos)} videos: {total[0]} frames, {1000.0 * total[1] / max(total[0], 1):.1f} ms/frame, "
              f"{total[0] / max(total[1], 1e-9):.1f} frames/s")
    log.info("%d videos (%s) -> %s", len(videos), f"temporal: {temporal.method}" if temporal else "raw top-1",
             args.out / SUBMISSION)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    require_writable(args.out)
    if args.search is None:
        predict_videos(args)
        return
    templates = image_files(args.templates, "template")
    search = image_files(args.search, "search")
    detector = load_detector(args, score_threshold=args.score_threshold, max_detections=args.max_detections)
    detector.set_templates(templates)
    detections, ms = predict_images(detector, search, args.batch_size)
    print(f"{len(search)} images: {ms:.1f} ms/frame", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    table = predictions_table(search, detections)
    write_csv(args.out / "predictions.csv", table)
    if args.visualize:
        write_visualizations(args.out, search, detections)
    hits = sum(len(d.scores) > 0 for d in detections)
    log.info("%d images, %d with a detection, %d detections at score threshold %.4g -> %s", len(search), hits,
             len(table), detector.score_threshold, args.out)


if __name__ == "__main__":
    run_stage(main)
