"""How much of a metric is luck of the draw: a seeded bootstrap over objects.

The val split is a few objects; a new model that fixes or breaks one object moves success by
1/objects. Objects are resampled with replacement (``RESAMPLES`` times, ``numpy`` generator seeded
with ``SEED``, so the same files give the same numbers), each object with all its frames and
sequences, and the top-1 metrics are recomputed from per-object sums of ``frames.csv`` (at the
thresholds its ``outcome`` column was written with) and ``sequences.csv``. The standard deviation
over the resamples is the standard error (SE). A difference between two runs on the same objects
is resampled paired (the same objects drawn for both), otherwise each run is drawn on its own.
AP is not resampled (it needs every box, not one per frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

RESAMPLES = 2000
SEED = 0
#: Metrics the bootstrap estimates, as metrics.json names them.
METRICS = ("success", "precision", "recall", "f1", "fp_rate", "mean_iou", "st_iou", "st_iou_temporal")
_SUMS = ("present", "hits", "fired", "tp", "fp", "absent", "tp_iou", "seq", "st_iou", "seq_t", "st_iou_t")


@dataclass(frozen=True)
class ObjectSums:
    """Per object (rows, sorted by id) the counts and sums the metrics are ratios of."""

    ids: tuple[str, ...]
    sums: np.ndarray  # [objects, len(_SUMS)]


def object_sums(frames: pd.DataFrame, sequences: pd.DataFrame | None, iou_threshold: float) -> ObjectSums:
    """The sums of every object in ``frames`` (``object_id, present, iou, outcome``) and ``sequences``
    (``object_id, st_iou, st_iou_temporal``; optional)."""
    f = frames.assign(object_id=frames["object_id"].astype(str))
    present = f["present"].astype(str).str.lower().eq("true")
    iou = pd.to_numeric(f["iou"], errors="coerce").fillna(0.0)
    outcome = f["outcome"].astype(str)
    tp = outcome.eq("TP")
    columns = pd.DataFrame({
        "object_id": f["object_id"],
        "present": present, "hits": present & (iou >= iou_threshold),
        "fired": outcome.isin(["TP", "FP", "miss"]), "tp": tp, "fp": outcome.eq("FP"), "absent": ~present,
        "tp_iou": iou.where(tp, 0.0),
    })
    per = columns.groupby("object_id", sort=True).sum(numeric_only=False).astype(float)
    for name in ("seq", "st_iou", "seq_t", "st_iou_t"):
        per[name] = 0.0
    if sequences is not None and not sequences.empty:
        s = sequences.assign(object_id=sequences["object_id"].astype(str))
        st = pd.to_numeric(s["st_iou"], errors="coerce")
        temporal = pd.to_numeric(s.get("st_iou_temporal", pd.Series(np.nan, index=s.index)), errors="coerce")
        seq = pd.DataFrame({"object_id": s["object_id"], "seq": st.notna(), "st_iou": st.fillna(0.0),
                            "seq_t": temporal.notna(), "st_iou_t": temporal.fillna(0.0)})
        seq = seq.groupby("object_id", sort=True).sum().astype(float)
        per.loc[:, list(seq.columns)] = seq.reindex(per.index).fillna(0.0).to_numpy()
    return ObjectSums(tuple(per.index), per[list(_SUMS)].to_numpy(dtype=float))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def metrics_of(totals: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics of summed objects: ``totals`` is ``[..., len(_SUMS)]``."""
    t = {name: totals[..., i] for i, name in enumerate(_SUMS)}
    precision, recall = _ratio(t["tp"], t["fired"]), _ratio(t["tp"], t["present"])
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = np.where(np.isnan(precision) | np.isnan(recall), np.nan, f1)
    return {"success": _ratio(t["hits"], t["present"]), "precision": precision, "recall": recall, "f1": f1,
            "fp_rate": _ratio(t["fp"], t["absent"]), "mean_iou": _ratio(t["tp_iou"], t["tp"]),
            "st_iou": _ratio(t["st_iou"], t["seq"]), "st_iou_temporal": _ratio(t["st_iou_t"], t["seq_t"])}


def _weights(rng: np.random.Generator, n: int) -> np.ndarray:
    """``[RESAMPLES, n]`` how often each of ``n`` objects is drawn in each resample."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=RESAMPLES).astype(float)


def _se(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def standard_errors(new: ObjectSums, old: ObjectSums | None = None) -> dict[str, float | None]:
    """SE of each metric of ``new``, or, with ``old``, of the difference ``new - old``."""
    if not new.ids:
        return {m: None for m in METRICS}
    rng = np.random.default_rng(SEED)
    w_new = _weights(rng, len(new.ids))
    values = metrics_of(w_new @ new.sums)
    if old is not None and old.ids:
        w_old = w_new if old.ids == new.ids else _weights(rng, len(old.ids))
        before = metrics_of(w_old @ old.sums)
        values = {m: values[m] - before[m] for m in METRICS}
    return {m: _se(values[m]) for m in METRICS}


def beyond_noise(change: float | None, se: float | None, factor: float = 2.0) -> bool | None:
    """Whether ``|change| > factor × se``; None when either is undefined."""
    if change is None or se is None or (isinstance(change, float) and math.isnan(change)):
        return None
    return abs(change) > factor * se
