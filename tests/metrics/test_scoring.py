import json

import numpy as np
import pandas as pd
import pytest

from pipeline.data.dataset import Sample
from pipeline.metrics.coco import coco_ap
from pipeline.metrics.outputs import score_and_write
from pipeline.metrics.scoring import PER_OBJECT_COLUMNS, PER_SIZE_COLUMNS, predictions_table, score_detections
from pipeline.paths import ScoredOutputs


def sample(obj, box, i=0, image="f.jpg"):
    return Sample(image=image, object_id=obj, sequence_id=f"{obj}-s", frame_index=i, box=box, templates=("t.jpg",),
                  width=200, height=100)


def det(*rows):
    a = np.array(rows, dtype=float).reshape(-1, 5)
    return a[:, :4], a[:, 4]


def test_coco_ap_perfect_and_one_confident_false_positive():
    assert coco_ap([(0, 0, 40, 40)], [det((0, 0, 40, 40, 0.9))])["AP"] == pytest.approx(1.0)
    # the false positive on the empty frame outranks the hit: precision 1/2 at every recall
    ap = coco_ap([(0, 0, 40, 40), None], [det((0, 0, 40, 40, 0.5)), det((0, 0, 40, 40, 0.9))])
    assert ap["AP50"] == pytest.approx(0.5)


def test_coco_ap_by_iou_threshold():
    # IoU 0.82 (40x40 box shifted by 40 * 0.18 / 1.82 px): a hit up to threshold 0.80, not at 0.85
    shift = 40 * (1 - 0.82) / (1 + 0.82)
    ap = coco_ap([(0, 0, 40, 40)], [det((shift, 0, 40 + shift, 40, 0.9))])
    assert (ap["AP50"], ap["AP75"]) == (pytest.approx(1.0), pytest.approx(1.0))
    assert ap["AP"] == pytest.approx(0.7)  # thresholds 0.50..0.80 of 0.50..0.95 -> 7 of 10


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_coco_ap_golden_values_on_both_backends(backend):
    ap = coco_ap([(0, 0, 40, 40), None], [det((0, 0, 40, 40, 0.5)), det((0, 0, 40, 40, 0.9))], backend=backend)
    assert ap["AP50"] == pytest.approx(0.5)


def random_frames(seed: int = 3, frames: int = 300) -> tuple[list, list]:
    """Per frame a truth (or None, one in five) and 0-5 noisy detections around it."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(frames):
        side = rng.uniform(10, 90, 2)
        xy = rng.uniform(0, 500, 2)
        gts.append(tuple(np.r_[xy, xy + side]) if rng.random() < 0.8 else None)
        n = int(rng.integers(0, 6))
        boxes = np.concatenate([xy + rng.normal(0, 8, (n, 2)), xy + side + rng.normal(0, 8, (n, 2))], axis=1)
        dets.append((boxes, rng.uniform(0, 1, n)))
    return gts, dets


def test_coco_ap_equals_pycocotools_own_loadres_path():
    # coco_ap builds the result annotations itself (no loadRes); pycocotools' documented route
    # (COCO json + loadRes + COCOeval.summarize) must give the same AP, AP50 and AP75
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gts, dets = random_frames(5)
    gt = COCO()
    gt.dataset = {
        "images": [{"id": i, "width": 10_000, "height": 10_000} for i in range(len(gts))],
        "annotations": [{"id": i + 1, "image_id": i, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                         "area": (b[2] - b[0]) * (b[3] - b[1]), "iscrowd": 0} for i, b in enumerate(gts) if b is not None],
        "categories": [{"id": 1, "name": "target"}],
    }
    gt.createIndex()
    results = [{"image_id": i, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": float(s)}
               for i, (boxes, scores) in enumerate(dets) for b, s in zip(boxes, scores)]
    ev = COCOeval(gt, gt.loadRes(results), iouType="bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    ours = coco_ap(gts, dets, backend="pycocotools")
    assert 0.05 < ev.stats[0] < 0.95
    assert [ours["AP"], ours["AP50"], ours["AP75"]] == pytest.approx(list(ev.stats[:3]), abs=1e-9)
    assert coco_ap(gts, dets)["AP"] == pytest.approx(ev.stats[0], abs=1e-9)


def test_faster_coco_eval_matches_pycocotools_on_random_frames():
    from pipeline.metrics.coco import SIZE_BINS

    gts, dets = random_frames(3)
    fast = coco_ap(gts, dets, None, SIZE_BINS, backend="faster")
    ref = coco_ap(gts, dets, None, SIZE_BINS, backend="pycocotools")
    assert fast.keys() == ref.keys()
    assert 0.05 < ref["AP"] < 0.95  # a non-trivial case
    for key in ref:
        assert fast[key] == pytest.approx(ref[key], abs=1e-9), key


def test_coco_ap_rejects_an_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        coco_ap([(0, 0, 40, 40)], [det((0, 0, 40, 40, 0.9))], backend="nope")


def test_scores_overall_per_object_and_per_size():
    samples = [sample("a", (0, 0, 10, 10)), sample("a", None, 1), sample("b", (0, 0, 40, 40)), sample("b", (0, 0, 100, 80))]
    dets = [det((0, 0, 10, 10, 0.9)), det((5, 5, 9, 9, 0.8)), det((0, 0, 40, 40, 0.9)), det()]
    s = score_detections(samples, dets, 0.5, 0.5, ms_per_frame=3.0)
    assert s.summary["frames"] == 4 and s.summary["objects"] == 2 and s.summary["ms_per_frame"] == 3.0
    assert s.summary["recall"] == pytest.approx(2 / 3) and s.summary["fp_rate"] == 1.0
    assert s.summary["AP_large"] == 0.0 and s.summary["AP_tiny"] == pytest.approx(1.0)
    assert s.summary["AP_small"] is None  # no truth in that bin: undefined, not 0
    json.dumps(s.summary, allow_nan=False)  # valid JSON, no NaN
    assert list(s.per_object.columns) == PER_OBJECT_COLUMNS
    a, b = s.per_object.set_index("object_id").loc[["a", "b"]].to_dict("records")
    assert (a["frames"], a["recall"], a["fp_rate"]) == (2, 1.0, 1.0)
    assert (b["recall"], b["precision"]) == (0.5, 1.0)
    assert list(s.per_size.columns) == PER_SIZE_COLUMNS
    sizes = s.per_size.set_index("size")
    assert sizes.loc["tiny", "frames"] == 1 and sizes.loc["medium", "frames"] == 1 and sizes.loc["large", "frames"] == 1
    assert sizes.loc["large", "success"] == 0.0
    assert list(s.frames["outcome"]) == ["TP", "FP", "TP", "FN"]


def test_predictions_table_one_row_per_detection():
    samples = [sample("a", None, image="x.jpg"), sample("a", None, 1, image="y.jpg")]
    table = predictions_table(samples, [det((0, 0, 1, 1, 0.2), (2, 2, 3, 3, 0.7)), det()])
    assert list(table.columns) == ["image", "object_id", "x1", "y1", "x2", "y2", "score"]
    assert table["score"].tolist() == [0.7, 0.2] and table["image"].tolist() == ["x.jpg", "x.jpg"]


def test_score_and_write_writes_every_output(tmp_path):
    import cv2

    image = tmp_path / "f.png"
    cv2.imwrite(str(image), np.full((100, 200, 3), 90, np.uint8))
    samples = [sample("a", (10, 10, 40, 40), i, str(image)) for i in range(3)] + [sample("a", None, 3, str(image))]
    dets = [det((10, 10, 40, 40, 0.9)), det((60, 10, 90, 40, 0.8)), det(), det((0, 0, 9, 9, 0.7))]
    out = ScoredOutputs(tmp_path / "eval")
    score_and_write(out, samples, dets, score_threshold=0.5, iou_threshold=0.5, ms_per_frame=None, gallery_frames=2)
    for path in (out.metrics, out.per_object, out.per_size, out.pr_curve, out.score_hist, out.frames, out.predictions,
                 out.reliability, out.gallery):
        assert path.is_file() and path.stat().st_size > 0, path
    assert out.gallery.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads(out.metrics.read_text())
    assert metrics["ms_per_frame"] is None and metrics["success"] == pytest.approx(1 / 3)
    # top-1 right in frame 0 only: bin 9 (0.9, right), bin 8 (0.8, wrong), bin 0 (no box), bin 7 (0.7, no target)
    assert metrics["ece"] == pytest.approx((0.1 + 0.8 + 0.0 + 0.7) / 4)
    assert "score_threshold_source" not in metrics  # only when the caller says
    reliability = pd.read_csv(out.reliability)
    assert reliability["frames"].sum() == 4 and len(reliability) == 10
    assert not list(out.folder.glob("*.tmp"))
