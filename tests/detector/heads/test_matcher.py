import itertools

import pytest
import torch

from pipeline.detector.heads.matcher import hungarian_match, matching_cost

SIZE = (60, 80)  # (H, W)


def random_boxes(gen, n):
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([60.0, 40.0])
    wh = 2 + torch.rand(n, 2, generator=gen) * 18
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("seed, n, m", [(0, 4, 1), (1, 4, 2), (2, 4, 3), (3, 5, 2), (4, 5, 3), (5, 5, 1)])
def test_matches_the_brute_force_assignment(seed, n, m):
    gen = torch.Generator().manual_seed(seed)
    logits, boxes = torch.randn(1, n, generator=gen) * 2, random_boxes(gen, n)[None]
    gt = random_boxes(gen, m)
    cost = matching_cost(logits[0], boxes[0], gt, SIZE)
    assert cost.shape == (n, m) and cost.dtype == torch.float32
    best = min(sum(float(cost[q, g]) for g, q in enumerate(perm)) for perm in itertools.permutations(range(n), m))
    (queries, gts), = hungarian_match(logits, boxes, [gt], SIZE)
    assert queries.dtype == gts.dtype == torch.int64 and queries.shape == gts.shape == (m,)
    assert sorted(gts.tolist()) == list(range(m)) and len(set(queries.tolist())) == m
    assert float(cost[queries, gts].sum()) == pytest.approx(best, abs=1e-5)


def test_cost_terms():
    """A query on the box costs less than one beside it; a confident query less than a doubtful one."""
    gt = torch.tensor([[10.0, 10, 30, 30]])
    boxes = torch.tensor([[10.0, 10, 30, 30], [40.0, 10, 60, 30]])
    cost = matching_cost(torch.zeros(2), boxes, gt, SIZE, class_weight=0.0)
    torch.testing.assert_close(cost[0, 0], torch.tensor(-2.0))  # L1 0, GIoU 1
    assert cost[1, 0] > cost[0, 0]
    cls = matching_cost(torch.tensor([3.0, -3.0]), boxes[[0, 0]], gt, SIZE, l1_weight=0.0, giou_weight=0.0)
    assert cls[0, 0] < cls[1, 0]


def test_batch_with_an_empty_image():
    gen = torch.Generator().manual_seed(7)
    logits, boxes = torch.randn(2, 4, generator=gen), torch.stack([random_boxes(gen, 4), random_boxes(gen, 4)])
    out = hungarian_match(logits, boxes, [torch.zeros(0, 4), random_boxes(gen, 1)], SIZE)
    assert [q.numel() for q, _ in out] == [0, 1] and out[1][1].tolist() == [0]
    with pytest.raises(ValueError, match="do not fit"):
        hungarian_match(logits, boxes, [torch.zeros(0, 4)], SIZE)


def test_a_batch_matches_as_its_images_alone():
    gen = torch.Generator().manual_seed(11)
    logits, boxes = torch.randn(3, 5, generator=gen), torch.stack([random_boxes(gen, 5) for _ in range(3)])
    gts = [random_boxes(gen, 2), torch.zeros(0, 4), random_boxes(gen, 3)]
    together = hungarian_match(logits, boxes, gts, SIZE)
    for i, gt in enumerate(gts):
        (q, g), = hungarian_match(logits[i:i + 1], boxes[i:i + 1], [gt], SIZE)
        assert together[i][0].tolist() == q.tolist() and together[i][1].tolist() == g.tolist()
