import pytest
import torch
from torchvision.ops import (
    box_iou,
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)

from pipeline.config import LossWeights
from pipeline.detector import (
    DetectionCriterion,
    box_iou_pairwise,
    iou_loss,
    weighted_total,
)
from pipeline.detector.heads.dense import decode_boxes

NAN = float("nan")


def test_iou_hand_computed():
    a, b = torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[5.0, 0, 15, 10]])
    torch.testing.assert_close(iou_loss(a, b, "iou"), torch.tensor([2 / 3]))
    # GIoU: enclosing box 15x10 = 150, union 150 -> GIoU = IoU = 1/3
    torch.testing.assert_close(iou_loss(a, b, "giou"), torch.tensor([2 / 3]))
    # DIoU: centres (5,5), (10,5): d^2 = 25, diagonal^2 = 15^2 + 10^2 = 325
    torch.testing.assert_close(iou_loss(a, b, "diou"), torch.tensor([2 / 3 + 25 / 325]))
    c = torch.tensor([[20.0, 0, 30, 10]])  # disjoint: enclosing 30x10=300, union 200
    torch.testing.assert_close(iou_loss(a, c, "giou"), torch.tensor([1 + 100 / 300]))
    torch.testing.assert_close(iou_loss(a, a, "ciou"), torch.tensor([0.0]), atol=1e-6, rtol=0)


def _random_boxes(n):
    xy = torch.rand(n, 2) * 50
    return torch.cat([xy, xy + 1 + torch.rand(n, 2) * 40], 1)


@pytest.mark.parametrize(
    "kind, ref",
    [("giou", generalized_box_iou_loss), ("diou", distance_box_iou_loss), ("ciou", complete_box_iou_loss)],
)
def test_matches_torchvision(kind, ref):
    p, t = _random_boxes(64), _random_boxes(64)
    torch.testing.assert_close(iou_loss(p, t, kind), ref(p, t, reduction="none", eps=1e-7))
    torch.testing.assert_close(iou_loss(p, t, kind, "mean"), ref(p, t, reduction="mean", eps=1e-7))


def test_plain_iou_matches_box_iou_diagonal():
    p, t = _random_boxes(32), _random_boxes(32)
    torch.testing.assert_close(box_iou_pairwise(p, t), box_iou(p, t).diagonal(), atol=1e-6, rtol=1e-5)


def test_bad_iou_type():
    with pytest.raises(ValueError, match="not one of iou, giou, diou, ciou"):
        DetectionCriterion("cio")


def _outputs(b=2, h=8, w=10, stride=4, requires_grad=True):
    logits = torch.randn(b, h, w, requires_grad=requires_grad)
    ltrb = (torch.rand(b, 4, h, w) * 10 + 1).requires_grad_(requires_grad)
    return {"logits": logits, "ltrb": ltrb, "boxes": decode_boxes(ltrb, stride), "stride": stride,
            "image_size": (h * stride, w * stride)}


def test_criterion_against_manual():
    crit = DetectionCriterion("giou", focal_alpha=0.25, focal_gamma=2.0, pos_radius=1)
    out = _outputs()
    gt = torch.tensor([[20.0, 10, 24, 16], [NAN] * 4])
    terms = crit(out, {"boxes": gt})
    assert set(terms) == {"focal", "l1", "iou"}
    # positives: 3x3 cells around row 3, col 5 in sample 0, none in sample 1
    obj = torch.zeros(2, 8, 10)
    obj[0, 2:5, 4:7] = 1
    torch.testing.assert_close(terms["focal"], sigmoid_focal_loss(out["logits"], obj, 0.25, 2.0, "sum") / 9)
    idx = [r * 10 + c for r in (2, 3, 4) for c in (4, 5, 6)]
    pred = out["boxes"][0, idx]
    gt9 = gt[0].expand(9, 4)
    torch.testing.assert_close(terms["l1"], ((pred - gt9).abs() / torch.tensor([40.0, 32, 40, 32])).sum() / 9)
    torch.testing.assert_close(terms["iou"], generalized_box_iou_loss(pred, gt9, reduction="mean"))
    for v in terms.values():
        assert v.dim() == 0 and v.dtype == torch.float32


def test_no_positives_zero_connected_finite():
    crit = DetectionCriterion("ciou")
    out = _outputs()
    terms = crit(out, {"boxes": torch.full((2, 4), NAN)})
    assert terms["l1"].item() == 0 and terms["iou"].item() == 0
    total = weighted_total(terms, LossWeights())
    total.backward()
    assert torch.isfinite(total)
    assert torch.isfinite(out["logits"].grad).all() and torch.isfinite(out["ltrb"].grad).all()
    assert out["ltrb"].grad.abs().sum() == 0


def test_present_flag_overrides_box():
    crit = DetectionCriterion("giou")
    out = _outputs(requires_grad=False)
    box = torch.tensor([[20.0, 10, 24, 16]] * 2)
    a = crit(out, {"boxes": box, "present": torch.tensor([True, False])})
    b = crit(out, {"boxes": torch.tensor([[20.0, 10, 24, 16], [NAN] * 4])})
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_fp32_under_autocast():
    crit = DetectionCriterion("giou")
    out = _outputs(requires_grad=False)
    out = {**out, "logits": out["logits"].bfloat16(), "boxes": out["boxes"].bfloat16()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = crit(out, {"boxes": torch.tensor([[20.0, 10, 24, 16], [1.0, 1, 9, 9]])})
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())


def test_weighted_total():
    terms = {"focal": torch.tensor(1.0), "l1": torch.tensor(2.0), "iou": torch.tensor(3.0)}
    assert weighted_total(terms, LossWeights()).item() == pytest.approx(1 + 5 * 2 + 2 * 3)
    assert weighted_total(terms, {"focal": 0.5, "l1": 0.0, "iou": 1.0}).item() == pytest.approx(3.5)
    with pytest.raises(KeyError, match="'iou' has no weight"):
        weighted_total(terms, {"focal": 1.0, "l1": 1.0})
    prefixed = {**terms, "aux0.focal": torch.tensor(4.0), "refine.iou": torch.tensor(0.5)}
    assert weighted_total(prefixed, {"focal": 1.0, "l1": 0.0, "iou": 2.0}).item() == pytest.approx(1 + 6 + 4 + 1)
