"""Stage ``evaluate``: score the trained model on the val split (``python -m pipeline.evaluate``).

Writes ``reports/evaluate/`` (metrics.json as DVC metrics, pr_curve.csv and score_hist.csv as DVC
plots, per_object.csv, per_size.csv, frames.csv, sequences.csv, predictions.csv, gallery.png) and
scores the real-photo check set ``data/realset`` (stage ``realset``) into ``reports/realset/`` the
same way, and adds both sets' metrics (``eval_*``, ``real_*``), settings (tags ``eval.iou_threshold``,
``eval.frames``, ...), per-object and per-sequence tables and figures (PR curve, frames by outcome, gallery) to the
MLflow run of the training (``models/run.json``). Next to the
frame metrics, each sequence (video) gets its spatio-temporal IoU, from the top-1 box above
``evaluate.score_threshold`` per frame (``st_iou``) and, when ``temporal.enabled``, after
smoothing the top-1 box (``st_iou_temporal``) and after tracking over the top-k candidates
(``st_iou_tracked``; ``temporal.track``).

``evaluate.score_threshold: calibrated`` (the default) uses the presence threshold training chose
on the validation split and saved in the checkpoint (0.3 for a checkpoint without one); a number
overrides it. metrics.json records the threshold used and ``score_threshold_source``
(``checkpoint``, ``params`` or ``default``), and the top-1 score's calibration: ``ece`` and the
reliability table ``reliability.csv`` (:mod:`pipeline.metrics.calibration`).

On any other data set, without touching the pipeline's outputs::

    python -m pipeline.evaluate --checkpoint models/best.pt --data DIR [--format auto] [--out DIR]

prepares and resizes ``DIR`` in a temporary folder and scores every frame in it; the inputs
``data.on_error: skip`` dropped are listed in ``--out``'s ``rejected.csv``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from pipeline.cli import UserError, require_writable, run_stage, stage_parser
from pipeline.config import EvaluateConfig, Params, TemporalConfig, TrackConfig, load_params
from pipeline.data.dataset import Sample, load_split
from pipeline.data.scratch import ScratchSet
from pipeline.engine.amp import describe_precision, precision_tags, resolve_precision
from pipeline.engine.run_figures import plot_outcomes, plot_pr_curve
from pipeline.engine.tracking import Tracker
from pipeline.io import atomic_dir, write_csv, write_json
from pipeline.inference import Detector
from pipeline.inference.temporal import resolve_temporal, smooth_track
from pipeline.inference.tracker import Candidates, track
from pipeline.metrics.outputs import score_and_write
from pipeline.metrics.scoring import Scores
from pipeline.metrics.points_lost import points_lost
from pipeline.metrics.stiou import sequence_order, thresholded, top1
from pipeline.metrics.topone import Detection
from pipeline.paths import Paths, ScoredOutputs
from pipeline.realset import is_built

log = logging.getLogger(__name__)

FORMATS = ("auto", "cpn", "refdet", "coco", "video")


def predict_samples(
    detector: Detector, samples: Sequence[Sample], batch_size: int = 8
) -> tuple[list[Detection], float, list[np.ndarray | None]]:
    """Detections for every sample (original pixels, sample order), the mean ms per frame and
    each sample's detection embeddings (``[N, C]``, None from a model without them).

    Samples are grouped by object so each object's references are encoded once (the cached path a
    user of :class:`Detector` gets); the time covers frame decoding and the model, not templates.
    """
    by_object: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_object.setdefault(s.object_id, []).append(i)
    detections: list[Detection] = [None] * len(samples)  # type: ignore[list-item]
    embeddings: list[np.ndarray | None] = [None] * len(samples)
    elapsed = 0.0
    for indices in by_object.values():
        detector.set_templates(list(samples[indices[0]].templates))
        start = time.perf_counter()
        found = detector.predict([samples[i].image for i in indices], batch_size=batch_size)
        elapsed += time.perf_counter() - start
        for i, d in zip(indices, found):
            detections[i] = (d.boxes, d.scores)
            embeddings[i] = d.embeddings
    return detections, 1000.0 * elapsed / max(len(samples), 1), embeddings


def load_detector(checkpoint: Path, params: Params) -> Detector:
    """The model of ``checkpoint`` set up as ``evaluate`` scores it."""
    if not checkpoint.is_file():
        raise UserError(f"{checkpoint}: checkpoint not found; run the train stage first (dvc repro train)")
    ev = params.evaluate
    device = torch.device("cpu")  # evaluate runs on the CPU
    precision = resolve_precision(ev.amp, device, key="evaluate.amp")
    log.info(describe_precision("evaluate.amp", ev.amp, precision))
    # Threshold 0: AP needs every scored box; the top-1 metrics apply the presence threshold themselves.
    return Detector.from_checkpoint(
        checkpoint, device, score_threshold=0.0, nms_iou=ev.nms_iou, max_detections=ev.max_detections,
        flip_tta=ev.flip_tta, template_pad=params.templates.pad, template_pad_value=params.templates.pad_value,
        amp=precision,
    )


def _per_sequence(samples: Sequence[Sample], answer: Callable[[list[int]], list]) -> list:
    """``answer(positions)`` (sample indices of one sequence in frame order -> one answer each)
    for every sequence, gathered back into sample order."""
    out: list = [None] * len(samples)
    order = sequence_order([s.sequence_id for s in samples], [s.frame_index for s in samples])
    for positions in order.values():
        for i, box in zip(positions, answer(positions)):
            out[i] = box
    return out


def temporal_answers(samples: Sequence[Sample], detections: Sequence[Detection], cfg: TemporalConfig) -> list:
    """Per sample the answer of :func:`~pipeline.inference.temporal.smooth_track` run over its
    sequence in frame order: a box ``[4]`` or None (sample order)."""
    boxes, scores = top1(detections)
    return _per_sequence(samples, lambda pos: smooth_track([boxes[i] for i in pos], [scores[i] for i in pos], cfg))


def tracked_answers(samples: Sequence[Sample], detections: Sequence[Detection],
                    embeddings: Sequence[np.ndarray | None], cfg: TrackConfig, threshold: float) -> list:
    """Per sample the answer of :func:`~pipeline.inference.tracker.track` over its sequence's
    candidates in frame order: a box ``[4]`` or None (sample order)."""
    frames = [Candidates(b, s, e) for (b, s), e in zip(detections, embeddings)]
    return _per_sequence(samples, lambda pos: track([frames[i] for i in pos], cfg, threshold))


def evaluate(
    detector: Detector,
    samples: Sequence[Sample],
    ev: EvaluateConfig,
    out: ScoredOutputs,
    temporal: TemporalConfig | None = None,
) -> Scores:
    """Run ``detector`` on ``samples`` and write every file of ``out``; with ``temporal`` (and
    ``temporal.enabled``) the ST-IoU after temporal post-processing too. The score threshold is
    ``ev.score_threshold`` as :meth:`Detector.resolve_threshold` reads it; ``calibrated``
    temporal thresholds follow it."""
    threshold, source = detector.resolve_threshold(ev.score_threshold)
    detections, ms, embeddings = predict_samples(detector, samples)
    smoothed = tracked = None
    if temporal is not None and temporal.enabled:
        smoothed = temporal_answers(samples, detections, resolve_temporal(temporal, threshold))
        tracked = tracked_answers(samples, detections, embeddings, temporal.track, threshold)
    scores = score_and_write(out, samples, detections, score_threshold=threshold,
                             iou_threshold=ev.iou_threshold, ms_per_frame=ms, gallery_frames=ev.gallery_frames,
                             temporal_boxes=smoothed, dtype=detector.precision.name, score_threshold_source=source,
                             tracked_boxes=tracked)
    final, answer = thresholded(*top1(detections), threshold), "per frame"
    if tracked is not None and temporal.method == "track":  # type: ignore[union-attr]
        final, answer = tracked, "tracked"
    elif smoothed is not None:
        final, answer = smoothed, "smoothed"
    write_points_lost(out, samples, detections, final, threshold, ev.iou_threshold, answer)
    s = scores.summary
    log.info("%d frames: AP50 %s, success %s, F1 %s at score threshold %.3g (%s), ECE %s; %d sequences: ST-IoU %s "
             "(smoothed %s, tracked %s); %.1f ms/frame -> %s", s["frames"], s["AP50"], s["success"], s["f1"],
             threshold, source, s["ece"], s["sequences"], s["st_iou"], s["st_iou_temporal"], s["st_iou_tracked"], ms,
             out.folder)
    return scores


def write_points_lost(out: ScoredOutputs, samples: Sequence[Sample], detections: Sequence[Detection],
                      final: Sequence, threshold: float, iou_threshold: float, answer: str) -> dict:
    """Write ``out``'s points_lost.csv / .json (:func:`~pipeline.metrics.points_lost.points_lost`:
    the stage that lost each frame, for the ``answer`` the pipeline gives); returns the summary."""
    table, summary = points_lost([s.sequence_id for s in samples], [s.frame_index for s in samples],
                                 [s.box for s in samples], detections, final, threshold, iou_threshold, answer)
    write_csv(out.points_lost, table)
    write_json(out.points_lost_summary, summary)
    return summary


def evaluate_folder(detector: Detector, folder: Path, fmt: str, params: Params, out: ScoredOutputs) -> Scores:
    """Prepare the data set in ``folder`` (layout ``fmt``) in a temporary folder, resize its
    references to the model's template size and score every frame into ``out``; the inputs
    ``data.on_error: skip`` dropped are listed in ``out``'s ``rejected.csv``."""
    with ScratchSet(folder, fmt, params, detector.template_size, out.folder / "rejected.csv") as data:
        return evaluate(detector, data.samples, params.evaluate, out, params.temporal)


def write_no_realset(out: ScoredOutputs) -> None:
    """``out`` when there is no real-photo check set (``realset.enabled: false``): a metrics.json
    that says so, so the stage's outputs exist and the report can tell."""
    with atomic_dir(out.folder) as tmp:
        write_json(tmp / out.metrics.name, {"available": False})


#: Summary entries that describe the scored set or the settings, not the model: tags
#: ``<prefix>.<key>`` of the run (``eval.iou_threshold``), not metrics.
SETTING_KEYS = ("frames", "frames_with_target", "objects", "sequences", "iou_threshold", "score_threshold",
                "score_threshold_source", "inference_dtype")


def lost_metrics(summary: dict, prefix: str) -> dict[str, float]:
    """MLflow metrics of a points_lost.json: ``<prefix>_lost_<stage>`` (share of the frames with,
    or for ``answered``/``quiet`` without, the target) and ``<prefix>_oracle_st_iou``."""
    out = {f"{prefix}_oracle_st_iou": summary.get("oracle_st_iou")}
    for group in ("present", "absent"):
        for stage, value in summary.get(group, {}).items():
            out[f"{prefix}_lost_{stage.replace(' ', '_')}"] = value.get("share")
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float))}


def log_to_training_run(run_file: Path, scored: dict[str, tuple[Scores, ScoredOutputs]], tags: dict[str, str]) -> None:
    """Add each ``scored`` set's metrics (``<prefix>_AP50``, ... with the dict key as prefix),
    settings (tags ``<prefix>.iou_threshold``, ...), per-object and per-sequence tables
    (``mlflow.log_table``), figures and output files to the MLflow run that trained the model (if any)."""
    if not run_file.is_file():
        log.warning("%s not found: metrics are not added to MLflow", run_file)
        return
    run = json.loads(run_file.read_text())
    if not run.get("run_id"):
        log.warning("training was not tracked in MLflow (%s has no run id)", run_file)
        return
    tracker = Tracker(run["tracking_uri"])
    if tracker.start(None, {}, {}, run_id=run["run_id"]) is None:
        return  # the tracker said why, in one line
    for prefix, (scores, out) in scored.items():
        summary = scores.summary
        tracker.log_metrics({f"{prefix}_{k}": v for k, v in summary.items()
                             if isinstance(v, (int, float)) and k not in SETTING_KEYS})
        tracker.set_tags({f"{prefix}.{k}": str(summary[k]) for k in SETTING_KEYS if summary.get(k) is not None})
        if out.points_lost_summary.is_file():
            tracker.log_metrics(lost_metrics(json.loads(out.points_lost_summary.read_text()), prefix))
        folder = out.folder.name
        for name, table in (("per_object", scores.per_object), ("sequences", scores.sequences)):
            tracker.apply("log_table", lambda mlflow, t=table, n=name: _log_table(mlflow, t, f"{folder}/{n}.json"))
        with tempfile.TemporaryDirectory() as tmp:
            tracker.log_artifact(plot_pr_curve(scores.pr_curve, summary.get("score_threshold"),
                                               f"{folder}: top-1 precision-recall", Path(tmp) / "pr_curve.png"), folder)
            tracker.log_artifact(plot_outcomes(scores.frames["outcome"], f"{folder}: frames by top-1 outcome",
                                               Path(tmp) / "outcomes.png"), folder)
        for path in (out.metrics, out.per_object, out.sequences, out.pr_curve, out.reliability, out.gallery,
                     out.points_lost, out.points_lost_summary):
            if path.is_file():
                tracker.log_artifact(path, folder)
    tracker.set_tags(tags)
    tracker.end()


def _log_table(mlflow, table, artifact_file: str) -> None:
    """``mlflow.log_table`` without the pandas deprecation warnings MLflow's own code raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        mlflow.log_table(table, artifact_file=artifact_file)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = stage_parser(__doc__, "python -m pipeline.evaluate")
    parser.add_argument("--checkpoint", type=Path, help="default: models/best.pt")
    parser.add_argument("--data", type=Path, help="score this data set instead of the pipeline's val split")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="format of --data (default: auto)")
    parser.add_argument("--out", type=Path, help="output folder with --data (default: evaluation-<data folder>)")
    args = parser.parse_args(argv)
    if args.data is None and (args.out is not None or args.format != "auto"):
        parser.error("--out and --format apply only with --data")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    paths = Paths()
    params = load_params(paths.params)
    detector = load_detector(args.checkpoint or paths.models / "best.pt", params)
    if args.data is None:
        scored = {"eval": (evaluate(detector, load_split(paths, "val"), params.evaluate, paths.evaluation,
                                    params.temporal), paths.evaluation)}
        if is_built(paths.realset):
            real = paths.realset_evaluation
            scored["real"] = (evaluate_folder(detector, paths.realset, "refdet", params, real), real)
        else:
            log.info("%s holds no check set (realset.enabled: false): real photos not scored", paths.realset)
            write_no_realset(paths.realset_evaluation)
        log_to_training_run(paths.models / "run.json", scored, precision_tags("evaluate.amp", detector.precision))
        return
    if not args.data.is_dir():
        raise UserError(f"--data {args.data}: not a folder")
    out = ScoredOutputs(args.out or Path(f"evaluation-{args.data.resolve().name}"))
    require_writable(out.folder)
    evaluate_folder(detector, args.data, args.format, params, out)


if __name__ == "__main__":
    run_stage(main)
