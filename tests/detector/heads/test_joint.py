import pytest
import torch

from pipeline.config import parse_params
from pipeline.detector.heads.base import HeadInputs
from pipeline.detector.heads.dense import cell_centers
from pipeline.detector.heads.joint import JointHead, JointHeadConfig
from pipeline.detector.losses import DetectionCriterion
from pipeline.detector.registry import HEADS


def inputs(b=2, c=8, sims=3, image_size=(30, 42)):
    """Two levels at strides 4 and 8 of a search image padded to 32 x 48."""
    return HeadInputs(features=[torch.randn(b, c, 8, 12), torch.randn(b, c, 4, 6)],
                      correlations=[torch.randn(b, c, 8, 12), torch.randn(b, c, 4, 6)],
                      similarities=[torch.rand(b, sims, 8, 12)] if sims else [],
                      level_weights=torch.tensor([0.25, 0.75]), image_size=image_size)


@pytest.mark.parametrize("search_features, in_channels", [(True, 2 * 8 + 3), (False, 8 + 3)])
def test_input_channels(search_features, in_channels):
    head = JointHead(8, 3, 4, 16, 16.0, search_features, similarity_skip=False)
    assert head.dense.tower[0].in_channels == in_channels and head.similarity_gain is None


def test_outputs_cropped_to_the_image_and_box_prior():
    head = JointHead(8, 3, 4, 16, 16.0, True, similarity_skip=False)
    out = head(inputs())
    assert out["stride"] == 4 and out["image_size"] == (30, 42)
    assert out["logits"].shape == (2, 8, 11) and out["ltrb"].shape == (2, 4, 8, 11)
    assert out["boxes"].shape == (2, 88, 4)
    torch.testing.assert_close(out["ltrb"].mean(), torch.tensor(16.0), atol=1.0, rtol=0)  # box_prior px
    centres = cell_centers(8, 11, 4)
    torch.testing.assert_close((out["boxes"][..., :2] + out["boxes"][..., 2:]) / 2 - centres,
                               (out["ltrb"][:, 2:] - out["ltrb"][:, :2]).flatten(2).transpose(1, 2) / 2)


def test_without_search_features_the_features_do_not_count():
    x = inputs()
    other = HeadInputs([torch.randn_like(f) for f in x.features], x.correlations, x.similarities, x.level_weights,
                       x.image_size)
    blind, seeing = JointHead(8, 3, 4, 16, 16.0, False, False), JointHead(8, 3, 4, 16, 16.0, True, False)
    torch.testing.assert_close(blind(x)["logits"], blind(other)["logits"])
    assert not torch.allclose(seeing(x)["logits"], seeing(other)["logits"])


def test_criterion_and_decode():
    head = JointHead(8, 0, 4, 16, 16.0, True, similarity_skip=True)
    out = head(inputs(sims=0))
    crit = head.criterion("giou", 0.25, 2.0, 1)
    assert isinstance(crit, DetectionCriterion) and (crit.iou_type, crit.pos_radius) == ("giou", 1)
    terms = crit(out, {"boxes": torch.tensor([[4.0, 4, 20, 20], [float("nan")] * 4])})
    assert set(terms) == {"focal", "l1", "iou"}
    dets = head.decode(out, 0.0, 0.5, 5)
    assert len(dets) == 2 and all(b.shape == (5, 4) and s.shape == (5,) for b, s in dets)


def test_built_from_config():
    cfg = parse_params({"model": {"head": {"type": "joint", "channels": 16, "search_features": False,
                                           "box_prior": 8.0}}}).model.head
    assert cfg == JointHeadConfig(type="joint", channels=16, box_prior=8.0, similarity_skip=False, search_features=False)
    head = HEADS.build(cfg, channels=8, levels=2, similarities=3, stride=4)
    assert isinstance(head, JointHead) and not head.search_features
    assert head.dense.tower[0].in_channels == 8 + 3 and head.dense.tower[0].out_channels == 16
