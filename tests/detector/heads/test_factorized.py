import pytest
import torch

from pipeline.config import parse_params
from pipeline.detector.heads.base import HeadInputs
from pipeline.detector.heads.factorized import FactorizedHead, FactorizedHeadConfig
from pipeline.detector.heads.match_head import and_logits
from pipeline.detector.registry import HEADS


def inputs(b=2, c=8, sims=3):
    return HeadInputs(features=[torch.randn(b, c, 8, 12), torch.randn(b, c, 4, 6)],
                      correlations=[torch.randn(b, c, 8, 12), torch.randn(b, c, 4, 6)],
                      similarities=[torch.rand(b, sims, 8, 12)], level_weights=torch.tensor([0.25, 0.75]),
                      image_size=(32, 48))


def speaking(head: FactorizedHead) -> FactorizedHead:
    """The match head starts at 0: give it weights so it speaks."""
    with torch.no_grad():
        for p in head.match.parameters():
            p.normal_(0, 0.3)
    return head


def test_match_head_reads_a_cosine_per_level_and_the_similarities():
    head = FactorizedHead(8, 2, 3, 4, 32, 16.0, "sum", similarity_skip=False)
    assert head.match.tower[0].in_channels == 2 + 3 and head.match.tower[0].out_channels == 16
    assert head.dense.tower[0].in_channels == 8


@pytest.mark.parametrize("gate", ["sum", "and"])
def test_logit_is_objectness_gated_by_the_match_and_boxes_ignore_it(gate):
    torch.manual_seed(0)
    head = speaking(FactorizedHead(8, 2, 3, 4, 16, 16.0, gate, similarity_skip=False))
    a = inputs()
    b = HeadInputs(a.features, [torch.randn_like(c) for c in a.correlations], [torch.rand(2, 3, 8, 12)],
                   a.level_weights, a.image_size)
    out_a, out_b = head(a), head(b)
    torch.testing.assert_close(out_a["boxes"], out_b["boxes"])
    assert not torch.allclose(out_a["logits"], out_b["logits"])
    objectness, _ = head.dense(a.features[0])
    cosines = [torch.nn.functional.interpolate(c.mean(1, keepdim=True), size=(8, 12), mode="bilinear",
                                               align_corners=False) for c in a.correlations]
    match = head.match(torch.cat(cosines + list(a.similarities), dim=1))
    want = objectness + match if gate == "sum" else and_logits(objectness, match)
    torch.testing.assert_close(out_a["logits"], want[:, 0], rtol=1e-5, atol=1e-5)


def test_bad_gate():
    with pytest.raises(ValueError, match="gate must be 'sum' or 'and', got 'or'"):
        FactorizedHead(8, 2, 3, 4, 16, 16.0, "or", similarity_skip=False)


def test_built_from_config():
    cfg = parse_params({"model": {"head": {"channels": 16, "gate": "sum", "similarity_skip": True}}}).model.head
    assert cfg == FactorizedHeadConfig(type="factorized", channels=16, box_prior=16.0, similarity_skip=True, gate="sum")
    head = HEADS.build(cfg, channels=8, levels=3, similarities=4, stride=8)
    assert isinstance(head, FactorizedHead) and (head.gate, head.stride) == ("sum", 8)
    assert head.similarity_gain is not None and head.match.tower[0].in_channels == 3 + 4
