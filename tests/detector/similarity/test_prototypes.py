import pytest
import torch
import torch.nn.functional as F

from pipeline.config import parse_params
from pipeline.detector.registry import SIMILARITIES
from pipeline.detector.similarity.prototypes import (
    PrototypeMatching,
    PrototypesConfig,
    prototype_similarity,
)


def test_golden_values_for_one_hot_features():
    # template: left half channel 0, right half channel 1; search cells: ch0, ch1, ch2, ch0+ch1
    template = torch.zeros(1, 3, 4, 4)
    template[0, 0, :, :2] = 1
    template[0, 1, :, 2:] = 1
    search = torch.zeros(1, 3, 1, 4)
    search[0, 0, 0, 0] = 1
    search[0, 1, 0, 1] = 1
    search[0, 2, 0, 2] = 1
    search[0, :2, 0, 3] = 1
    sim = prototype_similarity(search, template, grid=2, top=2)
    assert sim.shape == (1, 2, 1, 4)
    torch.testing.assert_close(sim[0, 0, 0], torch.tensor([1.0, 1.0, 0.0, 2**-0.5]))
    torch.testing.assert_close(sim[0, 1, 0], torch.tensor([1.0, 1.0, 0.0, 2**-0.5]))  # two parts per half


def test_invariant_to_rotating_the_template():
    torch.manual_seed(0)
    template, search = torch.randn(2, 8, 8, 8), torch.randn(2, 8, 5, 7)
    a = prototype_similarity(search, template, grid=4, top=5, center=0.5)
    b = prototype_similarity(search, template.rot90(1, dims=(2, 3)), grid=4, top=5, center=0.5)
    torch.testing.assert_close(a, b)
    assert (a[:, :-1] >= a[:, 1:]).all()  # sorted, best first


def test_bad_arguments():
    with pytest.raises(ValueError, match="top <= grid"):
        PrototypeMatching(grid=2, top=5)
    with pytest.raises(ValueError, match="grid >= 1"):
        PrototypeMatching(grid=0, top=1)


def test_module_is_the_level_weighted_sum_at_the_finest_grid():
    torch.manual_seed(0)
    m = PrototypeMatching(grid=2, top=3, center=0.5)
    assert m.channels == 3 and not m.encodes and m.encode(torch.rand(1, 1, 3, 8, 8), None) is None
    feats = [torch.randn(2, 8, 8, 12), torch.randn(2, 8, 4, 6)]
    fused = [torch.randn(2, 8, 6, 6), torch.randn(2, 8, 3, 3)]
    weights = torch.tensor([0.3, 0.7])
    out = m(torch.rand(2, 3, 32, 48), feats, fused, None, weights)
    assert out.shape == (2, 3, 8, 12)
    coarse = F.interpolate(prototype_similarity(feats[1], fused[1], 2, 3, 0.5), size=(8, 12), mode="bilinear",
                           align_corners=False)
    torch.testing.assert_close(out, 0.3 * prototype_similarity(feats[0], fused[0], 2, 3, 0.5) + 0.7 * coarse)


def test_built_from_config_with_top_capped_at_the_parts():
    cfg = parse_params({"model": {"similarities": {"prototypes": {"grid": 2, "top": 9}}}}).model.similarities
    assert cfg == (PrototypesConfig(type="prototypes", grid=2, top=9),)
    m = SIMILARITIES.build(cfg[0], stride=4)
    assert isinstance(m, PrototypeMatching) and (m.grid, m.top, m.channels) == (2, 4, 4)
