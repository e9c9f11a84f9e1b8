"""Tune ``temporal.track`` on the validation split by ST-IoU (``python -m pipeline.tune_temporal``).

Runs the trained model once over the val split (``models/best.pt`` by default), then searches the
tracker's knobs on its candidates: a grid per key, visited one key at a time (coordinate search,
repeated until no key improves the mean ST-IoU over the val sequences), starting from the
values in params.yaml. The test split is never read. Writes ``reports/tuning/`` (``--out``):

* ``temporal.csv``: every setting tried and its ST-IoU, best first;
* ``temporal.yaml``: the chosen ``temporal.track`` values, as a params fragment; the command that
  adopts them in a DVC experiment (``dvc exp run -S temporal.track.<key>=<value> ...``) is printed.

``--grid KEY=V1,V2,...`` replaces the grid of one key (repeatable).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from pipeline.cli import UserError, require_writable, run_stage, stage_parser
from pipeline.config import ConfigError, TrackConfig, load_params, parse_params
from pipeline.data.dataset import Sample, load_split
from pipeline.evaluate import load_detector, predict_samples, tracked_answers
from pipeline.io import write_csv, write_text
from pipeline.metrics.stiou import sequence_table, summarize_sequences, thresholded, top1
from pipeline.metrics.topone import Detection
from pipeline.paths import Paths

log = logging.getLogger(__name__)

#: Values tried per key unless ``--grid`` replaces them.
DEFAULT_GRID: dict[str, tuple[Any, ...]] = {
    "score_weight": (0.5, 1.0, 2.0, 4.0),
    "switch_cost": (0.0, 0.5, 1.0, 2.0, 4.0, 8.0),
    "appearance_weight": (0.0, 1.0, 3.0),
    "motion_weight": (0.0, 0.05, 0.1, 0.3),
    "motion_noise": (0.5, 1.0, 2.0, 4.0),
    "max_gap": (0, 3, 7, 15),
    "min_segment": (1, 3, 6, 12, 24),
}
#: Rounds of the coordinate search at most (each visits every key once).
MAX_ROUNDS = 3


class Scorer:
    """Mean ST-IoU over the val sequences of the tracked answers for a :class:`TrackConfig`
    (cached: a setting is tracked once)."""

    def __init__(self, samples: Sequence[Sample], detections: Sequence[Detection],
                 embeddings: Sequence[np.ndarray | None], threshold: float) -> None:
        self.samples, self.detections, self.embeddings = samples, detections, embeddings
        self.threshold = threshold
        self._ids = ([s.sequence_id for s in samples], [s.object_id for s in samples], [s.frame_index for s in samples])
        self._truth = [s.box for s in samples]
        self.tried: dict[TrackConfig, float] = {}

    def per_frame(self) -> float:
        """The mean ST-IoU of the per-frame top-1 answer above the threshold, for comparison."""
        boxes, scores = top1(self.detections)
        table = sequence_table(*self._ids, self._truth, thresholded(boxes, scores, self.threshold))
        return float(summarize_sequences(table)["st_iou"])  # type: ignore[arg-type]

    def __call__(self, cfg: TrackConfig) -> float:
        if cfg not in self.tried:
            answers = tracked_answers(self.samples, self.detections, self.embeddings, cfg, self.threshold)
            table = sequence_table(*self._ids, self._truth, answers)
            self.tried[cfg] = float(summarize_sequences(table)["st_iou"])  # type: ignore[arg-type]
        return self.tried[cfg]


def coordinate_search(score: Scorer, start: TrackConfig, grid: Mapping[str, Iterable[Any]],
                      rounds: int = MAX_ROUNDS) -> TrackConfig:
    """The best setting found by visiting each key's grid in turn from ``start`` (keeping the
    best value of each), for up to ``rounds`` rounds or until a round changes nothing. Ties keep
    the current value, so the result does not depend on grid order among equals."""
    best, best_score = start, score(start)
    for _ in range(rounds):
        changed = False
        for key, values in grid.items():
            for value in values:
                candidate = dataclasses.replace(best, **{key: value})
                s = score(candidate)
                if s > best_score + 1e-12:
                    best, best_score, changed = candidate, s, True
        if not changed:
            break
    return best


def parse_grid(items: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """``DEFAULT_GRID`` with each ``KEY=V1,V2`` of ``items`` replacing a key's values; a key that
    is not a ``temporal.track`` knob or a value it rejects is a :class:`UserError`."""
    grid = dict(DEFAULT_GRID)
    names = {f.name for f in dataclasses.fields(TrackConfig)} - {"mode"}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise UserError(f"--grid {item!r}: expected KEY=V1,V2,...")
        if key not in names:
            raise UserError(f"--grid {item!r}: {key!r} is not one of {', '.join(sorted(names))}")
        parsed = []
        for text in values.split(","):
            try:
                value = yaml.safe_load(text)
                parse_params({"temporal": {"track": {key: value}}})
            except (ConfigError, yaml.YAMLError) as exc:
                raise UserError(f"--grid {item!r}: {exc}") from None
            parsed.append(value)
        grid[key] = tuple(parsed)
    return grid


def tried_table(tried: Mapping[TrackConfig, float], keys: Iterable[str]) -> pd.DataFrame:
    """One row per setting tried: the searched keys and ``st_iou``, best first (ties in the
    order tried)."""
    keys = list(keys)
    rows = [{**{k: getattr(cfg, k) for k in keys}, "st_iou": s} for cfg, s in tried.items()]
    return pd.DataFrame(rows, columns=[*keys, "st_iou"]).sort_values("st_iou", ascending=False, kind="stable")


def adopt_command(cfg: TrackConfig, base: TrackConfig) -> str:
    """The ``dvc exp run`` line that sets every value of ``cfg`` differing from ``base``."""
    sets = [f"-S temporal.track.{f.name}={getattr(cfg, f.name)}" for f in dataclasses.fields(cfg)
            if getattr(cfg, f.name) != getattr(base, f.name)]
    return " ".join(["dvc exp run -n tuned-temporal", *sets]) if sets else "(params.yaml already holds the best values)"


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = stage_parser(__doc__, "python -m pipeline.tune_temporal")
    parser.add_argument("--checkpoint", type=Path, help="default: models/best.pt")
    parser.add_argument("--out", type=Path, help="output folder (default: reports/tuning)")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="values to try for one temporal.track key (repeatable)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    paths = Paths()
    params = load_params(paths.params)
    grid = parse_grid(args.grid)
    out = args.out or paths.temporal_tuning
    require_writable(out)
    detector = load_detector(args.checkpoint or paths.models / "best.pt", params)
    threshold, source = detector.resolve_threshold(params.evaluate.score_threshold)
    samples = load_split(paths, "val")
    detections, _, embeddings = predict_samples(detector, samples)
    score = Scorer(samples, detections, embeddings, threshold)
    start = params.temporal.track
    best = coordinate_search(score, start, grid)
    log.info("val ST-IoU over %d frames at threshold %.3g (%s): per-frame %.4f, params.yaml's tracker %.4f, "
             "tuned %.4f (%d settings tried)", len(samples), threshold, source, score.per_frame(), score(start),
             score(best), len(score.tried))
    write_csv(out / "temporal.csv", tried_table(score.tried, grid))
    fragment = {"temporal": {"track": {f.name: getattr(best, f.name) for f in dataclasses.fields(best)}}}
    write_text(out / "temporal.yaml", yaml.safe_dump(fragment, sort_keys=False))
    print(adopt_command(best, start))


if __name__ == "__main__":
    run_stage(main)
