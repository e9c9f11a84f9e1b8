"""RoI verifier: pooling in the right coordinate frame, box deltas, peak picking, the untrained
pass-through, labels and terms of its criterion, two-phase training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.config import ConfigError, parse_params
from pipeline.detector import build_criterion, build_detector, weighted_total
from pipeline.detector.heads.base import HeadInputs
from pipeline.detector.refiners.criterion import RefineCriterion, centre_cell_logits, jitter_boxes
from pipeline.detector.postprocess import candidate_peaks
from pipeline.detector.refiners.roi import RoiVerifier, apply_deltas, pool_boxes
from pipeline.detector.losses import box_iou_pairwise
from pipeline.engine.trainer import set_refine_phase
from tests.models import model_config


def _coordinate_map(h: int, w: int, stride: int) -> torch.Tensor:
    """``[1, 2, h, w]``: each cell holds its centre ``(x, y)`` in input pixels."""
    ys = (torch.arange(h) + 0.5) * stride
    xs = (torch.arange(w) + 0.5) * stride
    return torch.stack([xs.expand(h, w), ys[:, None].expand(h, w)])[None]


def test_pooled_boxes_read_the_features_under_the_box_in_input_pixels():
    stride = 4
    features = _coordinate_map(24, 32, stride)
    boxes = torch.tensor([[[20.0, 12.0, 60.0, 40.0], [64.0, 30.0, 72.0, 86.0]]])
    pooled = pool_boxes(features, boxes, stride, 4)  # [2, 2, 4, 4]
    assert pooled.shape == (2, 2, 4, 4)
    for roi, (x1, y1, x2, y2) in zip(pooled, boxes[0].tolist()):
        # a linear ramp sampled at each bin's centre: bin i of 4 covers x1 + [i, i + 1] * (x2 - x1) / 4
        bins_x = x1 + (torch.arange(4) + 0.5) * (x2 - x1) / 4
        bins_y = y1 + (torch.arange(4) + 0.5) * (y2 - y1) / 4
        torch.testing.assert_close(roi[0], bins_x.expand(4, 4), atol=1e-4, rtol=0)
        torch.testing.assert_close(roi[1], bins_y[:, None].expand(4, 4), atol=1e-4, rtol=0)


def test_pooled_boxes_keep_each_image_to_its_own_map():
    features = torch.stack([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)])
    boxes = torch.tensor([[[0.0, 0, 16, 16]], [[8.0, 8, 24, 24]]])
    pooled = pool_boxes(features, boxes, 4, 2)
    assert pooled[0].abs().max() == 0 and torch.allclose(pooled[1], torch.ones(3, 2, 2))


def test_box_deltas_golden_values():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # centre (20, 40), size 20 x 40
    torch.testing.assert_close(apply_deltas(boxes, torch.zeros(1, 4)), boxes)
    # dx = 1 moves the centre by 0.1 widths; dw = log(2) / 0.2 doubles the width
    moved = apply_deltas(boxes, torch.tensor([[1.0, -1.0, torch.log(torch.tensor(2.0)) / 0.2, 0.0]]))
    torch.testing.assert_close(moved, torch.tensor([[2.0, 16.0, 42.0, 56.0]]))


def test_candidate_peaks_keep_local_maxima_only():
    logits = torch.full((1, 5, 5), -5.0)
    logits[0, 1, 1], logits[0, 1, 2] = 3.0, 2.5  # a peak and its weaker neighbour
    logits[0, 4, 4] = 1.0  # a second, separate peak
    top = candidate_peaks(logits).flatten(1).topk(2).indices[0].tolist()
    assert top == [1 * 5 + 1, 4 * 5 + 4]


def test_centre_cell_logits_and_jitter():
    logits = torch.arange(12.0).reshape(1, 3, 4)
    boxes = torch.tensor([[[0.0, 0, 8, 8], [4.0, 0, 12, 8], [100.0, 100, 120, 120]]])
    assert centre_cell_logits(logits, boxes, 4).tolist() == [[5.0, 6.0, 11.0]]
    torch.manual_seed(0)
    gt = torch.tensor([[40.0, 40.0, 80.0, 70.0]])
    sampled = jitter_boxes(gt, 200)
    iou = box_iou_pairwise(sampled[0], gt.expand(200, 4))
    assert sampled.shape == (1, 200, 4) and 0.7 < (iou >= 0.5).float().mean() < 1.0  # mostly on the object
    assert (iou < 0.95).float().mean() > 0.5  # but seldom the box itself


def _inputs(b: int = 2, c: int = 8) -> tuple[dict, HeadInputs]:
    torch.manual_seed(0)
    logits = torch.randn(b, 6, 8)
    boxes = torch.rand(b, 48, 2) * 20
    boxes = torch.cat([boxes, boxes + 6 + torch.rand(b, 48, 2) * 8], dim=-1)
    head_out = {"logits": logits, "boxes": boxes, "stride": 4, "image_size": (24, 32)}
    inputs = HeadInputs(features=[torch.randn(b, c, 6, 8)], correlations=[], similarities=[],
                        level_weights=torch.ones(1), image_size=(24, 32), templates=[torch.randn(b, c, 4, 4)])
    return head_out, inputs


def test_an_untrained_verifier_scores_the_head_s_peaks_as_the_head_does():
    head_out, inputs = _inputs()
    verifier = RoiVerifier(8, 4, top_k=3, pool=3, hidden=16)
    out = verifier(head_out, inputs)
    assert out["logits"].shape == (2, 1, 3) and out["boxes"].shape == (2, 3, 4)
    peaks = candidate_peaks(head_out["logits"]).flatten(1).topk(3)
    torch.testing.assert_close(out["logits"][:, 0], peaks.values)  # peaks are their own logits
    torch.testing.assert_close(out["boxes"], out["candidates"])
    torch.testing.assert_close(out["candidates"][0, 0], head_out["boxes"][0, peaks.indices[0, 0]])


def test_the_verifier_depends_on_the_references_once_trained():
    head_out, inputs = _inputs()
    verifier = RoiVerifier(8, 4, top_k=3, pool=3, hidden=16)
    torch.nn.init.normal_(verifier.score.weight, std=0.5)
    a = verifier(head_out, inputs)["logits"]
    other = HeadInputs(inputs.features, [], [], inputs.level_weights, inputs.image_size,
                       templates=[torch.randn_like(inputs.templates[0])])
    assert not torch.allclose(a, verifier(head_out, other)["logits"])


def _criterion(verifier: RoiVerifier, samples: int) -> RefineCriterion:
    first = lambda outputs, targets: {"focal": outputs["logits"].sum() * 0}  # noqa: E731
    return RefineCriterion(first, verifier.verify, 4, "giou", samples, 0.5, 0.4)


def test_verify_term_is_the_bce_of_candidates_labelled_by_iou():
    head_out, inputs = _inputs()
    verifier = RoiVerifier(8, 4, top_k=3, pool=3, hidden=16)
    out = verifier(head_out, inputs)
    gt = out["candidates"][:, 0].clone()  # image 0's best candidate is the target ...
    gt[1] = float("nan")  # ... and image 1 has none (as a shifted pair with another object)
    terms = _criterion(verifier, 0)(out, {"boxes": gt})
    iou = box_iou_pairwise(out["candidates"][0], gt[0].expand(3, 4))
    labels = torch.zeros(2, 3)
    labels[0] = (iou >= 0.5).float()
    labelled = torch.ones(2, 3, dtype=torch.bool)
    labelled[0] = (iou >= 0.5) | (iou < 0.4)
    bce = F.binary_cross_entropy_with_logits(out["logits"][:, 0], labels, reduction="none")
    assert labels[0, 0] == 1
    torch.testing.assert_close(terms["verify"], bce[labelled].mean())
    assert terms["refine.iou"].item() == pytest.approx(0.0, abs=1e-6)  # the positive is the truth itself
    assert set(terms) == {"focal", "verify", "rank.verify", "refine.l1", "refine.iou"}
    # only image 0 has a positive candidate: the softmax over its 3 should pick the best-overlapping
    torch.testing.assert_close(terms["rank.verify"], F.cross_entropy(out["logits"][:1, 0], iou.argmax()[None]))


def test_sampled_boxes_train_the_verifier_and_an_inactive_criterion_gives_zeros():
    head_out, inputs = _inputs()
    verifier = RoiVerifier(8, 4, top_k=3, pool=3, hidden=16)
    out = verifier(head_out, inputs)
    crit = _criterion(verifier, 6)
    targets = {"boxes": torch.tensor([[8.0, 4, 20, 14], [2.0, 2, 12, 12]])}
    terms = crit(out, targets)
    weighted_total(terms, {"focal": 1, "verify": 1, "l1": 5, "iou": 2}).backward()
    # zero-initialised outputs: the first step teaches them, the comparison learns from the next
    assert verifier.score.weight.grad[0, :16].abs().sum() > 0 and verifier.delta.weight.grad.abs().sum() > 0
    assert terms["refine.l1"] > 0
    torch.optim.SGD(verifier.parameters(), lr=0.1).step()
    verifier.zero_grad()
    crit(verifier(head_out, inputs), targets)["verify"].backward()
    assert verifier.compare[0].weight.grad.abs().sum() > 0
    crit.active = False
    off = crit(verifier(head_out, inputs), targets)
    assert all(off[k] == 0 for k in ("verify", "rank.verify", "refine.l1", "refine.iou"))


def test_built_from_params_trains_end_to_end_and_phases_freeze_the_rest():
    model = build_detector(model_config(refine={"type": "roi", "channels": 16, "top_k": 4, "samples": 4}))
    crit = build_criterion(parse_params({}).train, model)
    templates, search = torch.rand(2, 2, 3, 32, 32), torch.rand(2, 3, 64, 96)
    boxes = torch.tensor([[10.0, 10, 40, 40], [30.0, 20, 60, 50]])
    out = model(templates, search, shifted_pairs=True)
    targets = {"boxes": torch.cat([boxes, torch.full_like(boxes, float("nan"))])}
    terms = crit(out, targets)
    assert {"focal", "l1", "iou", "verify", "rank.verify", "refine.l1", "refine.iou"} == set(terms)
    # the correlation's channels and the similarity maps
    assert model.refiner.maps == 16 + sum(s.channels for s in model.similarities)
    weighted_total(terms, parse_params({}).train.loss_weights).backward()
    assert model.refiner.score.weight.grad is not None and model.neck is not None
    set_refine_phase(model, crit, 0, 2)
    assert not crit.active and all(p.requires_grad for p in model.head.parameters())
    set_refine_phase(model, crit, 2, 2)
    assert crit.active and not any(p.requires_grad for n, p in model.named_parameters() if not n.startswith("refiner."))
    assert all(p.requires_grad for p in model.refiner.parameters())


def test_bad_iou_bounds_are_a_config_error():
    with pytest.raises(ConfigError, match="model.refine"):
        build_detector(model_config(refine={"type": "roi", "positive_iou": 0.3, "negative_iou": 0.5}))
    with pytest.raises(ConfigError, match="model.refine.type"):
        model_config(refine={"type": "rpn"})
