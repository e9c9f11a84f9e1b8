import pytest
import torch

from pipeline.config import parse_params
from pipeline.detector.necks.fpn import FPN, NeckConfig, build_fpn
from pipeline.detector.registry import NECKS


def test_shapes():
    fpn = FPN([40, 80, 160], 32, [4, 8, 16])
    assert (fpn.in_channels, fpn.out_channels, fpn.strides) == ([40, 80, 160], 32, [4, 8, 16])
    feats = [torch.rand(2, 40, 16, 24), torch.rand(2, 80, 8, 12), torch.rand(2, 160, 4, 6)]
    out = fpn(feats)
    assert [tuple(o.shape) for o in out] == [(2, 32, 16, 24), (2, 32, 8, 12), (2, 32, 4, 6)]


def test_non_divisible_sizes():
    out = FPN([8, 16], 8, [4, 8])([torch.rand(1, 8, 9, 7), torch.rand(1, 16, 5, 4)])
    assert [tuple(o.shape) for o in out] == [(1, 8, 9, 7), (1, 8, 5, 4)]


def test_strides_and_maps_must_match():
    with pytest.raises(ValueError, match="1 strides for 2 input maps"):
        FPN([8, 16], 8, [4])
    with pytest.raises(ValueError, match="expected 2 feature maps, got 1"):
        FPN([8, 16], 8, [4, 8])([torch.rand(1, 8, 4, 4)])


def test_registered_builder_reads_the_config():
    cfg = parse_params({"model": {"neck": {"type": "fpn", "channels": 24}}}).model.neck
    assert cfg == NeckConfig(type="fpn", channels=24)
    fpn = NECKS.build(cfg, in_channels=[40, 80], in_strides=[4, 8], levels=[2, 3])
    assert isinstance(fpn, FPN) and (fpn.out_channels, fpn.strides) == (24, [4, 8])


def test_builder_refuses_maps_that_are_not_the_levels():
    # a ViT's single stride-16 map: the FPN cannot make levels 2 and 3 from it
    with pytest.raises(ValueError, match=r"strides of model.levels \[4, 8\], got \[16\].*simple_pyramid"):
        build_fpn(NeckConfig(channels=16), in_channels=[32], in_strides=[16], levels=[2, 3])
