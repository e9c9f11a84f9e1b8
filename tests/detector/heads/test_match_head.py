import pytest
import torch

from pipeline.detector.heads.match_head import MatchHead, and_logits


@pytest.mark.parametrize("scale", [1.0, 10.0, 40.0])
def test_and_logits_is_the_logit_of_the_product_of_probabilities(scale):
    torch.manual_seed(0)
    a, b = torch.randn(1000, dtype=torch.float64) * scale, torch.randn(1000, dtype=torch.float64) * scale
    out = and_logits(a, b)
    assert torch.isfinite(out).all()
    expected = torch.sigmoid(a) * torch.sigmoid(b)
    torch.testing.assert_close(torch.sigmoid(out.double()), expected.float().double(), rtol=1e-4, atol=1e-6)


def test_and_logits_golden_values_and_gradients():
    a = torch.tensor([0.0, 0.0, 2.0, 30.0, -30.0], requires_grad=True)
    b = torch.tensor([0.0, 30.0, -1.0, -2.0, 30.0])
    out = and_logits(a, b)
    # p = 0.25 -> logit log(1/3); p = sigmoid(a) when b is huge; p = sigmoid(2) * sigmoid(-1)
    p = torch.sigmoid(torch.tensor(2.0)) * torch.sigmoid(torch.tensor(-1.0))
    torch.testing.assert_close(out[:3], torch.stack([torch.log(torch.tensor(1 / 3)), torch.tensor(0.0), torch.log(p / (1 - p))]),
                               atol=1e-5, rtol=1e-5)
    # a salient object (a = 30) cannot outvote a poor match (b = -2): the logit stays near b
    assert abs(out[3].item() - (-2.0)) < 1e-3 and out[4].item() < -29
    out.sum().backward()
    assert torch.isfinite(a.grad).all() and (a.grad >= 0).all()


def test_match_head_starts_at_zero_and_needs_inputs():
    head = MatchHead(5)
    assert torch.equal(head(torch.rand(2, 5, 8, 8)), torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="at least one"):
        MatchHead(0)
