import math

import torch

from pipeline.detector.heads.dense import (
    PRIOR_PROB,
    DetectionHead,
    cell_centers,
    decode_boxes,
    ltrb_from_raw,
)


def test_objectness_prior():
    head = DetectionHead(16, 32, num_convs=2)
    torch.testing.assert_close(head.obj.bias, torch.tensor([-4.59512]), atol=1e-4, rtol=0)
    logits, raw = head(torch.randn(2, 16, 8, 8))
    assert logits.shape == (2, 1, 8, 8) and raw.shape == (2, 4, 8, 8)
    assert abs(torch.sigmoid(logits).mean().item() - PRIOR_PROB) < 0.005


def test_box_prior_in_cells():
    head = DetectionHead(8, 16, box_prior=4.0)
    _, raw = head(torch.randn(1, 8, 5, 5))
    ltrb = ltrb_from_raw(raw, stride=8)
    torch.testing.assert_close(ltrb.mean(), torch.tensor(32.0), atol=1.0, rtol=0)


def test_ltrb_positive_fp32():
    raw = torch.tensor([-100.0, 0.0, 3.0, 50.0], dtype=torch.bfloat16).view(1, 4, 1, 1)
    ltrb = ltrb_from_raw(raw, 4)
    assert ltrb.dtype == torch.float32 and (ltrb >= 0).all()
    torch.testing.assert_close(ltrb[0, 1, 0, 0], torch.tensor(4 * math.log(2.0)))


def test_cell_centers_row_major():
    c = cell_centers(2, 3, 4)
    torch.testing.assert_close(c, torch.tensor([[2.0, 2], [6, 2], [10, 2], [2, 6], [6, 6], [10, 6]]))


def test_decode_boxes_golden():
    ltrb = torch.zeros(1, 4, 2, 3)
    ltrb[0, :, 0, 0] = torch.tensor([1.0, 2, 3, 4])  # centre (4, 4) at stride 8
    ltrb[0, :, 1, 2] = torch.tensor([10.0, 0, 5, 1])  # centre (20, 12)
    boxes = decode_boxes(ltrb, 8)
    assert boxes.shape == (1, 6, 4)
    torch.testing.assert_close(boxes[0, 0], torch.tensor([3.0, 2, 7, 8]))
    torch.testing.assert_close(boxes[0, 5], torch.tensor([10.0, 12, 25, 13]))
    torch.testing.assert_close(boxes[0, 1], torch.tensor([12.0, 4, 12, 4]))  # zero distances: the centre
