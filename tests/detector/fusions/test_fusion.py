import pytest
import torch

from pipeline.config import ConfigError, parse_params
from pipeline.detector.fusions.attention import AttentionFusion
from pipeline.detector.fusions.average import AverageFusion
from pipeline.detector.fusions.base import FusionConfig, TemplateFusion
from pipeline.detector.registry import FUSIONS

FUSION_CLASSES = [AttentionFusion, AverageFusion]


@pytest.mark.parametrize("cls", FUSION_CLASSES)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_shapes(cls, k):
    f = cls(16)
    assert f.channels == 16 and "channels=16" in repr(f)
    assert f(torch.rand(2, k, 16, 5, 5)).shape == (2, 16, 5, 5)


def test_single_template_is_identity():
    x = torch.rand(2, 1, 8, 4, 4)
    for cls in FUSION_CLASSES:
        torch.testing.assert_close(cls(8)(x), x[:, 0])


def test_average_is_mean():
    x = torch.rand(2, 3, 8, 4, 4)
    torch.testing.assert_close(AverageFusion(8)(x), x.mean(1))
    assert not list(AverageFusion(8).parameters())


def test_untrained_attention_is_the_average():
    # the score MLP's last layer starts at zero: equal scores, equal weights
    x = torch.rand(2, 3, 8, 4, 4)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    torch.testing.assert_close(AttentionFusion(8)(x, mask), AverageFusion(8)(x, mask))


def _randomise(f: TemplateFusion):
    for p in f.parameters():
        torch.nn.init.normal_(p)
    return f


@pytest.mark.parametrize("cls", FUSION_CLASSES)
def test_permutation_invariant(cls):
    f = _randomise(cls(8))
    x = torch.rand(2, 3, 8, 4, 4)
    ref = f(x)
    for perm in ([2, 0, 1], [1, 2, 0], [0, 2, 1]):
        torch.testing.assert_close(f(x[:, perm]), ref)


@pytest.mark.parametrize("cls", FUSION_CLASSES)
def test_mask_excludes_padded(cls):
    f = _randomise(cls(8))
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
    f = _randomise(AttentionFusion(8))
    x = torch.rand(1, 3, 8, 4, 4)
    w = f.weights(x)
    assert w.shape == (1, 3)
    torch.testing.assert_close(w.sum(1), torch.ones(1))
    assert not torch.allclose(w, torch.full_like(w, 1 / 3))
    torch.testing.assert_close(f(x), (w[:, :, None, None, None] * x).sum(1))


@pytest.mark.parametrize("cls", FUSION_CLASSES)
def test_all_masked_is_an_error(cls):
    with pytest.raises(ValueError, match=f"{cls.__name__}: every sample needs at least one valid template"):
        cls(8)(torch.rand(2, 2, 8, 3, 3), torch.tensor([[True, False], [False, False]]))


@pytest.mark.parametrize("cls", FUSION_CLASSES)
def test_bad_shapes(cls):
    with pytest.raises(ValueError, match=r"expected features \[B, K, C, h, w\]"):
        cls(8)(torch.rand(2, 8, 3, 3))
    with pytest.raises(ValueError, match=r"mask shape \(2, 3\) != \(B, K\) = \(2, 2\)"):
        cls(8)(torch.rand(2, 2, 8, 3, 3), torch.ones(2, 3, dtype=torch.bool))


@pytest.mark.parametrize("name, cls", [("attention", AttentionFusion), ("average", AverageFusion)])
def test_built_by_type(name, cls):
    cfg = parse_params({"model": {"fusion": {"type": name}}}).model.fusion
    assert cfg == FusionConfig(type=name)
    f = FUSIONS.build(cfg, channels=8)
    assert type(f) is cls and f.channels == 8


def test_bad_mode():
    with pytest.raises(ConfigError, match="model.fusion.type: 'max' is not one of attention, average"):
        parse_params({"model": {"fusion": {"type": "max"}}})
