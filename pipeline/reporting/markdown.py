"""Pure rendering: report data -> markdown text (no I/O, no clock, no absolute paths).

Numbers have a fixed format (3 decimals, 1 for milliseconds, ``n/a`` for undefined) and tables are
not padded to a column width, so a changed value changes one line of ``git diff``, nothing else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from pipeline.reporting.ablation import AblationTable
from pipeline.reporting.comparison import Comparison
from pipeline.reporting.figures import Figure
from pipeline.reporting.inputs import ReportInputs
from pipeline.reporting.noise import RESAMPLES, SEED, beyond_noise
from pipeline.reporting.ordering import natural_key

# metrics.json key -> label, in the order the headline table shows them
HEADLINE = {
    "success": "success",
    "fp_rate": "FP rate",
    "AP": "AP",
    "AP50": "AP50",
    "AP75": "AP75",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "mean_iou": "mean IoU",
    "ece": "ECE (top-1 score)",
    "st_iou": "ST-IoU",
    "st_iou_temporal": "ST-IoU (smoothed)",
    "st_iou_tracked": "ST-IoU (tracked)",
    "ms_per_frame": "ms/frame",
}
# per-object / per-size CSV columns shown, with their labels
OBJECT_METRICS = {"success": "success", "precision": "precision", "recall": "recall", "f1": "F1",
                  "mean_iou": "mean IoU", "fp_rate": "FP rate"}
SIZE_METRICS = {"AP": "AP", "success": "success"}
SEQUENCE_METRICS = {"st_iou": "ST-IoU (per frame)", "st_iou_temporal": "ST-IoU (smoothed)",
                    "st_iou_tracked": "ST-IoU (tracked)"}
SIZE_ORDER = ("tiny", "small", "medium", "large")
NA = "n/a"
NO_REALSET = ("No real-photo check set was scored (`realset.enabled: false`, or the `realset` and `evaluate` "
              "stages have not run).")
#: metrics.json ``score_threshold_source`` -> what the headline says about the model's threshold
THRESHOLD_SOURCE = {
    "checkpoint": ", chosen on the validation split at the end of training, so the validation figures at it are "
                  "optimistic; the real-photo column is the unbiased check",
    "default": ", the fixed default: the checkpoint saved no calibrated threshold",
    "params": ", set in params (evaluate.score_threshold)",
}
REAL_PREFIX = "real_"  # MLflow metrics of the real-photo check set (evaluate logs eval_* and real_*)
NOISE_FACTOR = 2.0  # a change is "beyond noise" when |change| > NOISE_FACTOR x its bootstrap SE
SUBJECT_CHARS = 80  # a base commit's subject line is cut to this many characters


# ----------------------------------------------------------------------------------------------
# Numbers and tables
# ----------------------------------------------------------------------------------------------


def metric_label(key: str) -> str:
    """The report's label of a metric; ``real_<key>`` is that metric on the real-photo check set."""
    if key.startswith(REAL_PREFIX):
        return f"{HEADLINE.get(key[len(REAL_PREFIX):], key[len(REAL_PREFIX):])}, real photos"
    return HEADLINE.get(key, key)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def format_number(value: Any, digits: int = 3, signed: bool = False) -> str:
    """``value`` with ``digits`` decimals; ``n/a`` when undefined; never ``-0.000``."""
    if _missing(value):
        return NA
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:+d}" if signed and value else str(value)
    text = f"{float(value):.{digits}f}"
    if float(text) == 0:
        return f"{0:.{digits}f}"  # a value that rounds to zero shows no sign
    return f"+{text}" if signed and not text.startswith("-") else text


def digits_for(key: str) -> int:
    """Milliseconds get 1 decimal, every other metric 3."""
    return 1 if key.startswith("ms") or key.endswith("ms_per_frame") else 3


def format_metric(key: str, value: Any, signed: bool = False) -> str:
    return format_number(value, digits_for(key), signed)


def format_mean_std(key: str, mean: Any, std: Any, n: int) -> str:
    """``mean ± std`` for several runs, the plain value for one."""
    if n > 1 and not _missing(std) and not _missing(mean):
        return f"{format_metric(key, mean)} ± {format_metric(key, std)}"
    return format_metric(key, mean)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    """A GitHub markdown table; ``numeric`` columns are right-aligned."""
    numeric = list(numeric) if numeric is not None else [False] * len(headers)
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------


def headline_section(inputs: ReportInputs) -> str:
    """Learned model against the classical baseline, metric by metric; the model on the
    real-photo check set beside them, where there is one."""
    model, base, real = inputs.model, inputs.baseline, inputs.real
    m = model.metrics
    parts = ["## Learned model vs classical baseline", ""]
    context = (
        f"Validation split: {format_number(m.get('frames'))} frames, "
        f"{format_number(m.get('frames_with_target'))} with the target, {format_number(m.get('objects'))} objects; "
        f"IoU threshold {format_number(m.get('iou_threshold'))}; score threshold "
        f"{format_number(m.get('score_threshold'))} (model{THRESHOLD_SOURCE.get(m.get('score_threshold_source'), '')})"
    )
    if base is not None:
        context += f", {format_number(base.metrics.get('score_threshold'))} (baseline)"
    parts += [context + ".", ""]
    if real is not None:
        r = real.metrics
        parts += [f"Real photos (the last column): the real-photo check set (`data/realset`, stage `realset`), "
                  f"{format_number(r.get('frames'))} frames, {format_number(r.get('frames_with_target'))} with "
                  f"the target, {format_number(r.get('objects'))} objects, the same model and thresholds.", ""]
    headers = ["metric", "model"] + (["baseline"] if base is not None else []) + (
        ["model, real photos"] if real is not None else [])
    rows = []
    for key, label in HEADLINE.items():
        row = [label, format_metric(key, m.get(key))]
        if base is not None:
            row.append(format_metric(key, base.metrics.get(key)))
        if real is not None:
            row.append(format_metric(key, real.metrics.get(key)))
        rows.append(row)
    parts.append(table(headers, rows, [False] + [True] * (len(headers) - 1)))
    if base is None:
        parts += ["", inputs.notes["baseline"]]
    if real is None:
        parts += ["", NO_REALSET]
    return "\n".join(parts)


def _with_se(key: str, value: Any, se: float | None) -> str:
    text = format_metric(key, value)
    return text if se is None or text == NA else f"{text} ± {format_metric(key, se)}"


def _count(share: Any, total: Any) -> str:
    """``share × total`` as a whole number of frames (``n/a`` when either is undefined)."""
    if _missing(share) or _missing(total):
        return NA
    return str(round(float(share) * float(total)))


def lead_section(inputs: ReportInputs, noise: dict[str, float | None],
                 real_noise: dict[str, float | None] | None = None) -> str:
    """The page's first lines: does the top answer find the object, and does it answer where the
    object is absent; with bootstrap SEs (``noise``: :func:`pipeline.reporting.noise.standard_errors`)."""
    m = inputs.model.metrics
    absent = None if _missing(m.get("frames")) or _missing(m.get("frames_with_target")) else (
        m["frames"] - m["frames_with_target"])
    parts = ["## Top-1 success and false alarms", ""]
    parts.append(
        f"- **Top-1 success {_with_se('success', m.get('success'), noise.get('success'))}**: the top box hits the "
        f"object (IoU ≥ {format_number(m.get('iou_threshold'))}, at any score) on "
        f"{_count(m.get('success'), m.get('frames_with_target'))} of the {format_number(m.get('frames_with_target'))} "
        f"validation frames with the target.")
    parts.append(
        f"- **False-positive rate {_with_se('fp_rate', m.get('fp_rate'), noise.get('fp_rate'))}** on frames without "
        f"the target: the detector still answers (score ≥ {format_number(m.get('score_threshold'))}) on "
        f"{_count(m.get('fp_rate'), absent)} of the {format_number(absent)} frames where the object is absent.")
    if inputs.real is not None:
        r, rn = inputs.real.metrics, real_noise or {}
        parts.append(f"- Real photos: success {_with_se('success', r.get('success'), rn.get('success'))}, "
                     f"false-positive rate {_with_se('fp_rate', r.get('fp_rate'), rn.get('fp_rate'))}.")
    objects = [format_number(m.get("objects"))] + ([format_number(inputs.real.metrics.get("objects"))]
                                                    if inputs.real is not None else [])
    parts += ["", f"± is one standard error: a bootstrap over the {objects[0]} validation objects"
              + (f" ({objects[1]} on the real photos)" if len(objects) > 1 else "")
              + f", {RESAMPLES} resamples, seed {SEED}."]
    return "\n".join(parts)


def _subject(text: str) -> str:
    return text if len(text) <= SUBJECT_CHARS else text[:SUBJECT_CHARS - 1].rstrip() + "…"


def diff_section(comparison: Comparison, source: str) -> str:
    """Metrics that changed against their previous committed version (``dvc metrics diff``), with
    the base commit and the bootstrap SE of each change."""
    parts = ["## Change against the committed metrics", ""]
    base, diff = comparison.base, comparison.diff
    if base is None or diff is None:
        parts.append(f"No committed metrics to compare with (no commit holds a `{source}` other than this one).")
        return "\n".join(parts)
    where = f"commit `{base.short}` (\"{_subject(base.subject)}\")"
    if diff.empty:
        parts.append(f"No change beyond round-off against `{source}` at {where}.")
        return "\n".join(parts)
    drawn = {
        "paired": f"a paired bootstrap over the {comparison.objects} objects (the same objects drawn for both runs)",
        "independent": "bootstrapping each run's objects on its own (the base commit scored other objects)",
        "new": f"a bootstrap of the new values over their {comparison.objects} objects (the base commit has no "
               "frames.csv)",
    }[comparison.kind]
    parts += [
        f"Old: `{source}` at {where}, the newest commit whose metrics differ from these. New: this run. "
        f"Only changed metrics. SE: one standard error of the change, from {drawn}, {RESAMPLES} resamples, seed "
        f"{SEED}; AP and timings are not resampled. A change counts as beyond noise when it is larger than "
        f"{NOISE_FACTOR:g} SE.", ""]
    rows = []
    for r in diff.itertuples(index=False):
        se = comparison.noise.get(r.metric)
        verdict = beyond_noise(r.change, se, NOISE_FACTOR)
        rows.append([r.metric, format_metric(r.metric, r.old), format_metric(r.metric, r.new),
                     format_metric(r.metric, r.change, signed=True), format_metric(r.metric, se),
                     NA if verdict is None else "yes" if verdict else "no"])
    parts.append(table(["metric", "old", "new", "change", "SE", "beyond noise"], rows,
                       [False, True, True, True, True, False]))
    return "\n".join(parts)


def ablation_section(ablation: AblationTable | None, note: str | None) -> str:
    """One row per setting of the ablation params over every MLflow run with evaluate metrics."""
    parts = ["## Ablations (MLflow runs)", ""]
    if ablation is None or ablation.frame.empty:
        parts.append(note or "No MLflow runs with evaluate metrics yet.")
        return "\n".join(parts)
    n_runs = int(ablation.frame["n"].sum())
    intro = (
        f"{n_runs} run{'s' if n_runs != 1 else ''} with evaluate metrics, grouped by "
        f"{', '.join(f'`{p}`' for p in ablation.params)}; mean ± std over runs where a setting ran more than once "
        f"(seeds: `train.seed`); sorted by {HEADLINE.get(ablation.sort_by, ablation.sort_by)}, best first."
    )
    intro += (" Runs come from `reports/runs.csv` (committed, written by `python -m pipeline.export_runs`) and the "
              "local MLflow store.")
    if ablation.store_only:
        intro += (f" {ablation.store_only} run{'s' if ablation.store_only != 1 else ''} of the local store "
                  f"{'are' if ablation.store_only != 1 else 'is'} not in `reports/runs.csv` yet, so a clone does not "
                  "show them: run `python -m pipeline.export_runs`, then the report again.")
    if ablation.skipped:
        intro += f" {ablation.skipped} run{'s' if ablation.skipped != 1 else ''} without evaluate metrics left out."
    if ablation.unrecorded:
        intro += (f" {ablation.unrecorded} run{'s' if ablation.unrecorded != 1 else ''} from code that did not yet "
                  "record every param under study left out.")
    sort_label = HEADLINE.get(ablation.sort_by, ablation.sort_by)
    intro += (
        f" Last column: the difference of mean {sort_label} to the best row, and whether it is larger than the "
        f"seed-to-seed spread, i.e. |difference| > std(best row) + std(this row) (sample std over seeds; "
        f"\"1 seed\" where either row ran once, so there is no spread to compare with)."
    )
    other = bool(ablation.other_params)
    if other:
        intro += (" Runs that also differ in other params (" + ", ".join(f"`{p}`" for p in ablation.other_params)
                  + ") are separate rows; the \"other params\" column names their values.")
    parts += [intro, ""]
    labels = [metric_label(k) for k in ablation.metrics]
    headers = [*ablation.params, *(["other params"] if other else []), "seeds", "n", *labels, f"vs best ({sort_label})"]
    rows = []
    for i, rec in enumerate(ablation.frame.to_dict("records")):
        row = [rec[p] for p in ablation.params] + ([rec["other"]] if other else []) + [rec["seeds"], str(rec["n"])]
        row += [format_mean_std(k, rec[k], rec[f"{k}_std"], rec["n"]) for k in ablation.metrics]
        row.append(_vs_best(ablation.sort_by, rec, first=i == 0))
        rows.append(row)
    numeric = [False] * (len(ablation.params) + int(other) + 1) + [True] * (1 + len(labels)) + [False]
    parts.append(table(headers, rows, numeric))
    return "\n".join(parts)


def _vs_best(key: str, rec: dict[str, Any], first: bool) -> str:
    """``best``, or the signed difference to the best row and how it compares with the spread."""
    if first:
        return "best"
    diff = format_metric(key, rec["vs_best"], signed=True)
    if diff == NA:
        return NA
    flag = rec["beyond_spread"]
    verdict = "beyond spread" if flag is True else "within spread" if flag is False else "1 seed"
    return f"{diff} ({verdict})"


def _paired(model_value: Any, base_value: Any, key: str, with_baseline: bool) -> str:
    if not with_baseline:
        return format_metric(key, model_value)
    return f"{format_metric(key, model_value)} / {format_metric(key, base_value)}"


def _lookup(frame: pd.DataFrame | None, key_col: str) -> dict[str, dict[str, Any]]:
    if frame is None:
        return {}
    return {str(r[key_col]): r for r in frame.to_dict("records")}


def _breakdown_start(
    title: str, model: pd.DataFrame | None, missing_note: str, baseline: pd.DataFrame | None, key_col: str
) -> tuple[list[str], dict[str, dict[str, Any]] | None]:
    """The opening of a per-object / per-size / per-sequence section: its heading lines, and the
    baseline's rows by ``key_col`` (empty without a baseline). Without the model's table the lines
    end with ``missing_note`` and the rows are None: the section is complete."""
    parts = [f"## {title}", ""]
    if model is None:
        return parts + [missing_note], None
    return parts, _lookup(baseline, key_col)


def per_object_section(inputs: ReportInputs) -> str:
    """Success, precision, ... per validation object; ``model / baseline`` when both exist."""
    model = inputs.model.per_object
    parts, base = _breakdown_start("Per object", model, inputs.notes.get("per_object", ""),
                                   inputs.baseline.per_object if inputs.baseline else None, "object_id")
    if base is None:
        return "\n".join(parts)
    with_base = bool(base)
    if with_base:
        parts += ["Cells read model / baseline.", ""]
    records = sorted(model.to_dict("records"), key=lambda r: natural_key(r["object_id"]))
    never = [str(r["object_id"]) for r in records if not _missing(r["success"]) and float(r["success"]) == 0.0]
    if never:
        parts += [f"**{len(never)} of {len(records)} objects are never found** (success 0: the top box misses "
                  f"the object on every frame with it), marked ⚠: {', '.join(never)}.", ""]
    rows = []
    for rec in records:
        b = base.get(str(rec["object_id"]), {})
        label = f"⚠ {rec['object_id']}" if str(rec["object_id"]) in never else str(rec["object_id"])
        rows.append([label, format_number(_int(rec["frames"])),
                     format_number(_int(rec["frames_with_target"]))]
                    + [_paired(rec[k], b.get(k), k, with_base) for k in OBJECT_METRICS])
    headers = ["object", "frames", "with target", *OBJECT_METRICS.values()]
    parts.append(table(headers, rows, [False] + [True] * (len(headers) - 1)))
    return "\n".join(parts)


def _int(value: Any) -> Any:
    """CSV integers come back as floats when a column has gaps; show them as integers."""
    if _missing(value):
        return None
    return int(value) if float(value).is_integer() else value


OPEN_END_PX = 1e5  # an upper bin edge this large means "no upper edge" (COCO's 1e5 ** 2 area)


def _px_range(lo: Any, hi: Any) -> str:
    lo, hi = _int(lo), _int(hi)
    if _missing(hi) or float(hi) >= OPEN_END_PX:
        return f"≥ {format_number(lo, 1)}"
    return f"{format_number(lo, 1)}–{format_number(hi, 1)}"


def per_size_section(inputs: ReportInputs) -> str:
    """AP and success per object size (tiny, small, medium, large)."""
    model = inputs.model.per_size
    parts, base = _breakdown_start("Per size", model, inputs.notes.get("per_size", ""),
                                   inputs.baseline.per_size if inputs.baseline else None, "size")
    if base is None:
        return "\n".join(parts)
    with_base = bool(base)
    if with_base:
        parts += ["Cells read model / baseline.", ""]
    order = {s: i for i, s in enumerate(SIZE_ORDER)}
    records = sorted(model.to_dict("records"), key=lambda r: (order.get(str(r["size"]), len(order)), str(r["size"])))
    empty = [i for i, r in enumerate(records) if _missing(r["frames"]) or int(r["frames"]) == 0]
    if empty:
        parts += ["Size bins without frames are left out: " + ", ".join(
            f"{records[i]['size']} ({_px_range(records[i]['min_px'], records[i]['max_px'])} px)" for i in empty)
            + ".", ""]
    rows = []
    for rec in (r for i, r in enumerate(records) if i not in empty):
        b = base.get(str(rec["size"]), {})
        rows.append([str(rec["size"]), _px_range(rec["min_px"], rec["max_px"]), format_number(_int(rec["frames"]))]
                    + [_paired(rec[k], b.get(k), k, with_base) for k in SIZE_METRICS])
    headers = ["size", "px", "frames", *SIZE_METRICS.values()]
    parts.append(table(headers, rows, [False, False] + [True] * (len(headers) - 2)))
    return "\n".join(parts)


def per_sequence_section(inputs: ReportInputs) -> str:
    """Spatio-temporal IoU per sequence (video): the per-frame top-1, smoothed, and tracked over
    the candidates (``temporal.method``: smooth / track)."""
    model = inputs.model.sequences
    parts, base = _breakdown_start("Per sequence (ST-IoU)", model, inputs.notes.get("sequences", ""),
                                   inputs.baseline.sequences if inputs.baseline else None, "sequence_id")
    if base is None:
        return "\n".join(parts)
    with_base = bool(base)
    parts += ["ST-IoU: IoU summed over the frames where truth and answer both exist, divided by the frames where "
              "either does (every false-positive or missed frame costs a whole box); the headline value is the mean "
              "over sequences. Per frame: the top-1 box where it reaches the threshold; smoothed: score and box "
              "EMA with hysteresis; tracked: the best path through each frame's top-k candidates (`temporal.track`)."
              + (" Cells read model / baseline." if with_base else ""), ""]
    rows = []
    for rec in sorted(model.to_dict("records"), key=lambda r: natural_key(r["sequence_id"])):
        b = base.get(str(rec["sequence_id"]), {})
        rows.append([str(rec["sequence_id"]), str(rec["object_id"]), format_number(_int(rec["frames"])),
                     format_number(_int(rec["frames_with_target"]))]
                    + [_paired(rec.get(k), b.get(k), k, with_base) for k in SEQUENCE_METRICS])
    headers = ["sequence", "object", "frames", "with target", *SEQUENCE_METRICS.values()]
    parts.append(table(headers, rows, [False, False] + [True] * (len(headers) - 2)))
    return "\n".join(parts)


def points_lost_section(inputs: ReportInputs) -> str:
    """Per set (demo val, real photos): the stage that lost each frame with the target, what the
    frames without it got, and the achieved vs candidate-oracle ST-IoU."""
    parts = ["## Where the points are lost"]
    sets = [("demo val", inputs.model.points_lost), ("real photos", inputs.real.points_lost if inputs.real else None)]
    sets = [(name, lost) for name, lost in sets if lost]
    if not sets:
        return "\n\n".join(parts + ["No `points_lost.json` yet (made by stage `evaluate`)."])
    parts += ["", "Each frame with the target counts once: `success` when the final answer hits it (IoU at or above "
              "the threshold), else the first stage that failed it, in pipeline order. A matching error is a "
              "candidate that hits while the top-1 does not; a threshold rejection a top-1 hit below the presence "
              "threshold; a temporal removal a per-frame hit the temporal answer drops. The oracle answers the best "
              "candidate on every frame with the target and nothing elsewhere: the most a better choice among the "
              "candidates could score. Per frame in `reports/evaluate/points_lost.csv`. The real-photo set's "
              "sequences are separate photos of one object, not video (the object is pasted anew in each), so a "
              "temporal answer, which assumes motion, can only lose there; read its per-frame figures.", ""]
    headers = ["outcome", *(f"{name}: frames" for name, _ in sets), *(f"{name}: share" for name, _ in sets)]
    rows = []
    for group in ("present", "absent"):
        for stage in sets[0][1].get("order", {}).get(group, sets[0][1].get(group, {})):
            label = f"target present: {stage}" if group == "present" else f"target absent: {stage}"
            cells = [lost.get(group, {}).get(stage, {"frames": None, "share": None}) for _, lost in sets]
            rows.append([label, *(format_number(_int(c["frames"])) for c in cells),
                         *(format_number(c["share"]) for c in cells)])
    for key, label in (("st_iou", "ST-IoU achieved"), ("oracle_st_iou", "ST-IoU of the candidate oracle")):
        rows.append([label, *(format_number(lost.get(key)) for _, lost in sets), *([""] * len(sets))])
    parts.append(table(headers, rows, [False] + [True] * (len(headers) - 1)))
    answers = {lost.get("answer") for _, lost in sets}
    parts += ["", f"Final answer: {', '.join(sorted(str(a) for a in answers))} (`temporal.method`)."]
    return "\n".join(parts)


def figures_section(figures: Sequence[Figure], folder_link: str) -> str:
    """Each figure embedded by a link relative to the report, or a line saying why it is missing."""
    parts = ["## Figures"]
    for fig in figures:
        parts += ["", f"### {fig.title}", ""]
        if fig.filename is None:
            parts.append(fig.missing or "Not available.")
        else:
            parts.append(f"![{fig.title}]({folder_link}/{fig.filename})")
    return "\n".join(parts)


def render_report(
    inputs: ReportInputs,
    comparison: Comparison,
    diff_source: str,
    ablation: AblationTable | None,
    ablation_note: str | None,
    figures: Sequence[Figure],
    figures_link: str,
    noise: dict[str, float | None] | None = None,
    real_noise: dict[str, float | None] | None = None,
) -> str:
    """The whole ``reports/metrics.md``: title, then the sections in a fixed order. ``noise`` and
    ``real_noise``: bootstrap SEs of the model's metrics on the val split and the real photos."""
    sections = [
        (
            "# Evaluation report\n\n"
            "Written by `python -m pipeline.report` (DVC stage `report`); edit the code or params, not this file."
        ),
        lead_section(inputs, noise or {}, real_noise),
        headline_section(inputs),
        diff_section(comparison, diff_source),
        ablation_section(ablation, ablation_note),
        per_object_section(inputs),
        per_size_section(inputs),
        per_sequence_section(inputs),
        points_lost_section(inputs),
        figures_section(figures, figures_link),
    ]
    text = "\n\n".join(sections) + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)
