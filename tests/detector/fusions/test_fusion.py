import pytest
import torch

from pipeline.detector import TemplateFusion


@pytest.mark.parametrize("mode", ["attention", "average"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_shapes(mode, k):
    f = TemplateFusion(16, mode)
    assert f(torch.rand(2, k, 16, 5, 5)).shape == (2, 16, 5, 5)


def test_single_template_is_identity():
    x = torch.rand(2, 1, 8, 4, 4)
    for mode in ("attention", "average"):
        torch.testing.assert_close(TemplateFusion(8, mode)(x), x[:, 0])


def test_average_is_mean():
    x = torch.rand(2, 3, 8, 4, 4)
    torch.testing.assert_close(TemplateFusion(8, "average")(x), x.mean(1))


def _randomise(f: TemplateFusion):
    for p in f.parameters():
        torch.nn.init.normal_(p)
    return f


@pytest.mark.parametrize("mode", ["attention", "average"])
def test_permutation_invariant(mode):
    f = _randomise(TemplateFusion(8, mode))
    x = torch.rand(2, 3, 8, 4, 4)
    ref = f(x)
    for perm in ([2, 0, 1], [1, 2, 0], [0, 2, 1]):
        torch.testing.assert_close(f(x[:, perm]), ref)


@pytest.mark.parametrize("mode", ["attention", "average"])
def test_mask_excludes_padded(mode):
    f = _randomise(TemplateFusion(8, mode))
    x = torch.rand(2, 3, 8, 4, 4)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out = f(x, mask)
    garbage = x.clone()
    garbage[0, 2] = 1e6
    garbage[1, 1:] = float("nan")
    torch.testing.assert_close(f(garbage, mask), out)
    torch.testing.assert_close(out[0], f(x[:1, :2])[0])
    torch.testing.assert_close(out[1], x[1, 0])  # one valid template -> itself


def test_attention_weights_learned_softmax():
    f = _randomise(TemplateFusion(8, "attention"))
    x = torch.rand(1, 3, 8, 4, 4)
    w = f.weights(x)
    assert w.shape == (1, 3)
    torch.testing.assert_close(w.sum(1), torch.ones(1))
    assert not torch.allclose(w, torch.full_like(w, 1 / 3))
    torch.testing.assert_close(f(x), (w[:, :, None, None, None] * x).sum(1))


def test_all_masked_is_an_error():
    with pytest.raises(ValueError, match="at least one valid template"):
        TemplateFusion(8, "average")(torch.rand(2, 2, 8, 3, 3), torch.tensor([[True, False], [False, False]]))


def test_bad_mode():
    with pytest.raises(ValueError, match="not one of attention, average"):
        TemplateFusion(8, "max")
