import pytest
import torch
import torch.nn.functional as F

from pipeline.config import parse_params
from pipeline.detector.registry import CORRELATIONS
from pipeline.detector.similarity import correlation as correlation_mod
from pipeline.detector.similarity.correlation import (
    Correlation,
    CorrelationConfig,
    depthwise_xcorr,
    shifted_xcorr,
)


def slow_xcorr(search, kernel):
    b, c, h, w = search.shape
    kh, kw = kernel.shape[-2:]
    out = torch.zeros_like(search)
    for bi in range(b):
        for ci in range(c):
            s = F.pad(search[bi, ci], ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2))
            for i in range(h):
                for j in range(w):
                    out[bi, ci, i, j] = (s[i : i + kh, j : j + kw] * kernel[bi, ci]).sum()
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("xcorr", [depthwise_xcorr, shifted_xcorr])
def test_matches_slow_loop(k, xcorr):
    search, kernel = torch.randn(2, 3, 6, 7, dtype=torch.float64), torch.randn(2, 3, k, k, dtype=torch.float64)
    out = xcorr(search, kernel)
    assert out.shape == search.shape
    torch.testing.assert_close(out, slow_xcorr(search, kernel))


def test_delta_kernel_is_identity():
    search = torch.randn(1, 2, 5, 5)
    kernel = torch.zeros(1, 2, 3, 3)
    kernel[..., 1, 1] = 1
    torch.testing.assert_close(depthwise_xcorr(search, kernel), search)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="equal B, C"):
        depthwise_xcorr(torch.rand(2, 3, 5, 5), torch.rand(2, 4, 3, 3))


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("k", [3, 8])
def test_module(normalize, k):
    corr = Correlation(k, normalize)
    search, template = torch.randn(2, 16, 20, 24), torch.randn(2, 16, 12, 12)
    out = corr(search, template)
    assert out.shape == (2, 16, 20, 24)
    kernel = F.adaptive_avg_pool2d(template, k)
    if normalize:
        ref = depthwise_xcorr(F.normalize(search, dim=1), F.normalize(kernel, dim=1)) * 16 / k**2
    else:
        ref = depthwise_xcorr(search, kernel) / k**2
    torch.testing.assert_close(out, ref)


def test_normalized_channel_mean_is_cosine():
    corr = Correlation(1, normalize=True)
    search, template = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 2, 2)
    cos = F.cosine_similarity(search, template.mean((2, 3), keepdim=True), dim=1)
    torch.testing.assert_close(corr(search, template).mean(1), cos)
    # scale-invariant and bounded
    torch.testing.assert_close(corr(search * 100, template * 0.01), corr(search, template))
    assert corr(search, template).mean(1).abs().max() <= 1 + 1e-6


@pytest.mark.parametrize("k", [1, 3])
def test_shifted_form_while_exporting(monkeypatch, k):
    # the grouped conv bakes the batch into the graph; exporting must take the shifted sum
    corr = Correlation(k, normalize=True)
    search, template = torch.randn(2, 8, 6, 7), torch.randn(2, 8, 4, 4)
    want = corr(search, template)

    def no_grouped_conv(*args):
        raise AssertionError("depthwise_xcorr used while exporting")

    monkeypatch.setattr(correlation_mod, "exporting", lambda: True)
    monkeypatch.setattr(correlation_mod, "depthwise_xcorr", no_grouped_conv)
    torch.testing.assert_close(corr(search, template), want)


def test_bad_kernel_size():
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        Correlation(0, normalize=True)


def test_built_from_config():
    cfg = parse_params({"model": {"correlation": {"kernel": 5, "normalize": False}}}).model.correlation
    assert cfg == CorrelationConfig(type="depthwise", kernel=5, normalize=False)
    corr = CORRELATIONS.build(cfg)
    assert isinstance(corr, Correlation) and (corr.kernel_size, corr.normalize) == (5, False)
