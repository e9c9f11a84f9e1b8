import pytest
import torch

from pipeline.detector.matching import PrototypeMatching, prototype_similarity


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
