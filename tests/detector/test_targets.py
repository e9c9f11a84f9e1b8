import torch

from pipeline.detector.targets import build_targets

NAN = float("nan")


def cells(mask):
    return sorted(map(tuple, mask.nonzero().tolist()))


def test_radius_one_square():
    # centre (22, 13) px at stride 4 -> cell row 3, col 5
    obj, pos = build_targets(torch.tensor([[20.0, 10, 24, 16]]), (8, 10), 4, pos_radius=1)
    assert obj.shape == pos.shape == (1, 8, 10) and obj.dtype == torch.float32 and pos.dtype == torch.bool
    assert cells(pos) == [(0, r, c) for r in (2, 3, 4) for c in (4, 5, 6)]
    torch.testing.assert_close(obj, pos.float())


def test_radius_zero_single_cell():
    _, pos = build_targets(torch.tensor([[0.0, 0, 16, 16]]), (4, 4), 8, pos_radius=0)
    assert cells(pos) == [(0, 1, 1)]  # centre (8, 8) lies on the border of cells -> floor -> (1, 1)


def test_clipped_at_image_border():
    _, pos = build_targets(torch.tensor([[0.0, 0, 6, 6]]), (5, 5), 4, pos_radius=1)
    assert cells(pos) == [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)]
    _, pos = build_targets(torch.tensor([[30.0, 30, 40, 40]]), (5, 5), 4, pos_radius=2)  # centre outside
    assert cells(pos) == [(0, r, c) for r in (2, 3, 4) for c in (2, 3, 4)]


def test_absent_nan_and_present_flag():
    boxes = torch.tensor([[NAN] * 4, [20.0, 10, 24, 16], [20.0, 10, 24, 16]])
    obj, pos = build_targets(boxes, (8, 10), 4, 1, present=torch.tensor([True, True, False]))
    assert pos[0].sum() == 0 and pos[1].sum() == 9 and pos[2].sum() == 0
    assert not obj.isnan().any()
