import pytest
import torch
import torch.nn.functional as F

from pipeline.config import parse_params
from pipeline.detector.registry import SIMILARITIES
from pipeline.detector.similarity.colour import (
    ColourConfig,
    ColourSimilarity,
    chroma_votes,
    colour_similarity,
    template_histogram,
)


def solid(rgb, h=8, w=8):
    return torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1).expand(3, h, w).clone()


def test_chroma_votes_bin_of_a_pure_colour_and_dark_pixels_vote_nothing():
    image = torch.stack([solid((1.0, 0.0, 0.0)), solid((0.05, 0.0, 0.0))])  # red; too dark
    votes = chroma_votes(image, bins=8)
    assert votes.shape == (2, 64, 8, 8)
    assert votes[0, 7 * 8 + 0].eq(1).all() and votes[0].sum(0).eq(1).all()  # r -> last bin, g -> first
    assert votes[1].sum() == 0


def test_chroma_ignores_brightness():
    bright, dim = solid((0.8, 0.4, 0.2)), solid((0.4, 0.2, 0.1))
    assert torch.equal(chroma_votes(bright[None], 8), chroma_votes(dim[None], 8))


def test_template_histogram_pools_valid_references_only():
    red, blue = solid((0.9, 0.1, 0.1), 16, 16), solid((0.1, 0.1, 0.9), 16, 16)
    templates = torch.stack([red, blue])[None]  # [1, K=2, 3, 16, 16]
    both = template_histogram(templates, bins=4)
    only_red = template_histogram(templates, torch.tensor([[True, False]]), bins=4)
    assert both.shape == (1, 16) and both.sum().item() == pytest.approx(1.0)
    assert sorted(both[0][both[0] > 0].tolist()) == pytest.approx([0.5, 0.5])
    assert only_red[0].max().item() == pytest.approx(1.0)


def test_colour_similarity_is_high_where_the_reference_colour_is():
    frame = torch.full((1, 3, 64, 96), 0.5)
    frame[0, :, 16:40, 8:32] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1, 1)  # red object
    frame[0, :, 16:40, 60:84] = torch.tensor([0.1, 0.2, 0.9]).view(3, 1, 1)  # blue object
    red = template_histogram(solid((0.9, 0.1, 0.1), 16, 16)[None, None], bins=8)
    sim = colour_similarity(frame, red, stride=4, windows=(8, 16))
    assert sim.shape == (1, 2, 16, 24)
    assert sim[0, 0, 7, 5].item() == pytest.approx(1.0, abs=1e-4)  # centre of the red square
    assert sim[0, 0, 7, 18].item() < 0.05  # centre of the blue square
    assert sim.min() >= 0 and sim.max() <= 1 + 1e-5


@pytest.mark.parametrize("size,stride,windows", [((72, 128), 8, (16, 32, 64)), ((63, 95), 4, (8, 16, 32)), ((37, 41), 3, (5, 9, 2))])
def test_colour_similarity_equals_two_d_average_pooling_of_the_votes(size, stride, windows):
    # the separable box mean must be the plain avg_pool2d the design describes, odd sizes included
    torch.manual_seed(0)
    frame = torch.rand(2, 3, *size)
    frame[:, :, : size[0] // 3] *= 0.1  # dark rows vote nothing
    reference = torch.rand(2, 64)
    reference /= reference.sum(1, keepdim=True)
    votes = chroma_votes(F.avg_pool2d(frame, 2, ceil_mode=True), 8)
    h0, w0 = -(-size[0] // stride), -(-size[1] // stride)
    expected = []
    for window in windows:
        k = max(1, window // 2)
        local = F.avg_pool2d(votes, k, stride=max(1, stride // 2), padding=k // 2, count_include_pad=False)
        local = local / local.sum(1, keepdim=True).clamp_min(1e-12)
        local = torch.where(local.sum(1, keepdim=True) > 0, local, torch.full_like(local, 1 / 64))[..., :h0, :w0]
        local = F.pad(local, (0, w0 - local.shape[-1], 0, h0 - local.shape[-2]), mode="replicate")
        expected.append((local.sqrt() * reference.sqrt()[:, :, None, None]).sum(1))
    got = colour_similarity(frame, reference, stride, windows)
    torch.testing.assert_close(got, torch.stack(expected, 1), atol=1e-6, rtol=0)


def test_module_encodes_the_histogram_and_pads_to_the_feature_grid():
    m = ColourSimilarity(bins=4, stride=4)
    assert (m.channels, m.encodes, m.windows) == (3, True, (8, 16, 32))
    templates = torch.rand(2, 3, 3, 16, 16)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    encoded = m.encode(templates, mask)
    assert encoded.shape == (2, 16, 1, 1)
    torch.testing.assert_close(encoded[..., 0, 0], template_histogram(templates, mask, 4))
    search = torch.rand(2, 3, 30, 42)  # 8 x 11 cells; the padded input's features are 8 x 12
    out = m(search, [torch.rand(2, 8, 8, 12)], [], encoded, torch.ones(1))
    assert out.shape == (2, 3, 8, 12)
    torch.testing.assert_close(out[..., :11], colour_similarity(search, encoded.flatten(1), 4, m.windows, 4))
    assert out[..., 11:].eq(0).all()


def test_built_from_config():
    cfg = parse_params({"model": {"similarities": {"colour": {"bins": 6}}}}).model.similarities
    assert cfg == (ColourConfig(type="colour", bins=6),)
    m = SIMILARITIES.build(cfg[0], stride=8)
    assert isinstance(m, ColourSimilarity) and (m.bins, m.stride) == (6, 8)
    with pytest.raises(ValueError, match="bins must be >= 1"):
        ColourSimilarity(0, 4)
