import torch

from pipeline.detector import FPN


def test_shapes():
    fpn = FPN([40, 80, 160], 32)
    feats = [torch.rand(2, 40, 16, 24), torch.rand(2, 80, 8, 12), torch.rand(2, 160, 4, 6)]
    out = fpn(feats)
    assert [tuple(o.shape) for o in out] == [(2, 32, 16, 24), (2, 32, 8, 12), (2, 32, 4, 6)]


def test_non_divisible_sizes():
    out = FPN([8, 16], 8)([torch.rand(1, 8, 9, 7), torch.rand(1, 16, 5, 4)])
    assert [tuple(o.shape) for o in out] == [(1, 8, 9, 7), (1, 8, 5, 4)]
