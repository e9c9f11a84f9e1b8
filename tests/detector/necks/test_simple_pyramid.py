import pytest
import torch
from torch import nn

from pipeline.detector.necks.simple_pyramid import SimplePyramid


@pytest.mark.parametrize("levels", [[2, 3], [2, 3, 4, 5], [4], [3, 5, 6]])
def test_shapes_from_a_stride_16_map(levels):
    neck = SimplePyramid([32], [16], 24, levels)
    assert (neck.in_channels, neck.out_channels, neck.levels) == ([32], 24, levels)
    assert neck.strides == [2**lvl for lvl in levels]
    out = neck([torch.rand(2, 32, 4, 6)])
    assert [tuple(o.shape) for o in out] == [(2, 24, 4 * 16 // s, 6 * 16 // s) for s in neck.strides]


def test_pooling_floors_odd_sizes():
    out = SimplePyramid([16], [16], 8, [4, 5])([torch.rand(1, 16, 5, 7)])
    assert [tuple(o.shape) for o in out] == [(1, 8, 5, 7), (1, 8, 2, 3)]


def test_ratio_8_repeats_the_deconv():
    neck = SimplePyramid([64], [16], 16, [1])
    deconvs = [m for m in neck.branches[0].modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in deconvs] == [(64, 32), (32, 16), (16, 8)]
    assert tuple(neck([torch.rand(1, 64, 3, 5)])[0].shape) == (1, 16, 24, 40)


def test_branch_layouts_follow_vitdet():
    neck = SimplePyramid([32], [16], 8, [2, 3, 4, 5])
    resample = [branch[0] for branch in neck.branches]
    assert [type(m).__name__ for m in resample[0]] == ["ConvTranspose2d", "LayerNorm2d", "GELU", "ConvTranspose2d"]
    assert [type(m).__name__ for m in resample[1]] == ["ConvTranspose2d"]
    assert isinstance(resample[2], nn.Identity)
    assert isinstance(resample[3], nn.MaxPool2d) and resample[3].kernel_size == 2


def test_deconv_doubles_size_and_identity_passes_the_map():
    neck = SimplePyramid([8], [16], 8, [3, 4])
    x = torch.rand(1, 8, 3, 4)
    deconv = neck.branches[0][0][0]
    y = deconv(x)
    assert tuple(y.shape) == (1, 4, 6, 8)
    # kernel 2, stride 2: each input cell alone makes its 2x2 output block
    want = torch.einsum("bchw,cokl->bohkwl", x, deconv.weight).reshape(1, 4, 6, 8) + deconv.bias[:, None, None]
    torch.testing.assert_close(y, want)
    assert neck.branches[1][0](x) is x


def test_only_the_last_map_is_used():
    neck = SimplePyramid([8, 16], [8, 16], 8, [3, 4])
    last = torch.rand(1, 16, 2, 3)
    a = neck([torch.rand(1, 8, 4, 6), last])
    b = neck([torch.zeros(1, 8, 4, 6), last])
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_gradient_flows():
    neck = SimplePyramid([16], [16], 8, [2, 3, 4, 5])
    x = torch.rand(1, 16, 4, 4, requires_grad=True)
    sum(o.square().mean() for o in neck([x])).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in neck.parameters())


@pytest.mark.parametrize("levels, match", [
    ([], "must not be empty"),
    ([3, 2], "strictly increasing"),
    ([2, 2], "strictly increasing"),
    ([-1, 2], "strictly increasing and >= 0"),
])
def test_bad_levels(levels, match):
    with pytest.raises(ValueError, match=match):
        SimplePyramid([16], [16], 8, levels)


def test_non_power_of_two_ratio():
    # a patch-14 ViT's raw stride: 14 / 4 is no power of two
    with pytest.raises(ValueError, match="stride 14 is not a power of two"):
        SimplePyramid([16], [14], 8, [2, 3])


def test_mismatched_inputs():
    with pytest.raises(ValueError, match="same length"):
        SimplePyramid([16, 32], [16], 8, [2])
    with pytest.raises(ValueError, match="expected 1 feature maps, got 2"):
        SimplePyramid([16], [16], 8, [2])([torch.rand(1, 16, 2, 2)] * 2)
