import pytest
import torch

from pipeline.config import parse_params
from pipeline.detector import build_detector
from pipeline.detector.heads.base import HeadInputs
from pipeline.detector.heads.query import QueryHead, QueryHeadConfig, sine_positions
from pipeline.detector.heads.set_criterion import SetCriterion
from pipeline.detector.losses import weighted_total
from pipeline.detector.registry import HEADS
from tests.models import model_config

NAN = [float("nan")] * 4
WEIGHTS = {"focal": 1.0, "l1": 5.0, "iou": 2.0}


def inputs(b=2, c=8, sims=3, image_size=(30, 42), seed=0):
    """Two levels at strides 4 and 8 of a search image padded to 32 x 48, with reference maps."""
    gen = torch.Generator().manual_seed(seed)
    return HeadInputs(features=[torch.randn(b, c, 8, 12, generator=gen), torch.randn(b, c, 4, 6, generator=gen)],
                      correlations=[torch.randn(b, c, 8, 12, generator=gen), torch.randn(b, c, 4, 6, generator=gen)],
                      similarities=[torch.rand(b, sims, 8, 12, generator=gen)] if sims else [],
                      level_weights=torch.tensor([0.25, 0.75]), image_size=image_size,
                      templates=[torch.randn(b, c, 4, 4, generator=gen), torch.randn(b, c, 2, 2, generator=gen)])


def head(queries=5, layers=2, aux_loss=True, sims=3):
    torch.manual_seed(0)
    return QueryHead(8, 2, sims, 4, 16, queries, layers, 4, 8.0, aux_loss=aux_loss)


def test_sine_positions():
    pos = sine_positions(3, 4, 8)
    assert pos.shape == (12, 8) and pos.dtype == torch.float32
    assert len({tuple(p.tolist()) for p in pos}) == 12  # every cell its own code
    torch.testing.assert_close(pos[:4, :4], pos[:1, :4].expand(4, 4))  # y half: same along a row
    with pytest.raises(ValueError, match="multiple of 4"):
        sine_positions(3, 4, 6)


def test_outputs_and_box_prior():
    out = head()(inputs())
    assert out["logits"].shape == (2, 1, 5) and out["boxes"].shape == (2, 5, 4)
    assert out["boxes"].dtype == torch.float32 and out["stride"] == 4 and out["image_size"] == (30, 42)
    assert len(out["aux"]) == 1 and out["aux"][0]["logits"].shape == (2, 1, 5)
    wh = out["boxes"][..., 2:] - out["boxes"][..., :2]
    torch.testing.assert_close(wh, torch.full_like(wh, 16.0), atol=1e-3, rtol=0)  # 2 x box_prior
    torch.testing.assert_close(out["logits"].sigmoid().mean(), torch.tensor(0.01), atol=0.01, rtol=0)
    centres = (out["boxes"][0, :, :2] + out["boxes"][0, :, 2:]) / 2  # queries start at different places
    assert torch.cdist(centres, centres).add(torch.eye(5) * 100).min() > 0.5
    assert "aux" not in head(aux_loss=False)(inputs())


def test_queries_depend_on_the_references():
    h, x = head(), inputs()
    other = HeadInputs(x.features, x.correlations, x.similarities, x.level_weights, x.image_size,
                       [t + torch.randn_like(t) for t in x.templates])
    assert not torch.allclose(h(x)["logits"], h(other)["logits"])
    with torch.no_grad():  # untrained, every box is its query's anchor: let the box MLP speak
        h.box[-1].weight.normal_(0, 0.1)
    assert not torch.allclose(h(x)["boxes"], h(other)["boxes"])
    with pytest.raises(ValueError, match="reference maps"):
        h(HeadInputs(x.features, x.correlations, x.similarities, x.level_weights, x.image_size))


def test_criterion_terms_and_a_frame_without_target():
    h = head()
    crit = h.criterion("ciou", 0.25, 2.0, 1)
    assert isinstance(crit, SetCriterion) and crit.iou_type == "ciou" and crit.costs == (2.0, 5.0, 2.0)
    out = h(inputs())
    terms = crit(out, {"boxes": torch.tensor([[4.0, 4, 20, 20], NAN])})
    assert set(terms) == {"focal", "l1", "iou", "aux0.focal", "aux0.l1", "aux0.iou", "proposal.focal"}
    assert all(v.dtype == torch.float32 and v.dim() == 0 and v > 0 for v in terms.values())
    empty = crit(out, {"boxes": torch.tensor([[4.0, 4, 20, 20], NAN]), "present": torch.tensor([False, False])})
    values = {k: float(v.detach()) for k, v in empty.items()}
    assert values["focal"] > 0 and values["l1"] == values["iou"] == 0.0
    weighted_total(empty, WEIGHTS).backward()  # l1 / iou of nothing stay in the graph
    assert h.score.bias.grad is not None and h.box[0].weight.grad is not None
    assert h.proposal.weight.grad is not None  # query selection learns from its dense term


def test_queries_start_at_the_proposal_peaks():
    h, x = head(queries=3), inputs()
    with torch.no_grad():  # a proposal score that peaks at three known cells of the 8 x 12 map
        h.proposal.weight.zero_()
        h.proposal.bias.zero_()
    finest = torch.zeros(2, 16, 8, 12)
    finest[:, :, 1, 2], finest[:, :, 5, 9], finest[:, :, 6, 0] = 1.0, 2.0, 3.0
    with torch.no_grad():
        h.proposal.weight.fill_(1.0)
        proposals, anchors, picked = h._select(finest, x.image_size)
    assert proposals.shape == (2, 8, 11)  # ceil(42 / 4) columns of the 30 x 42 image
    centres = anchors.sigmoid() * torch.tensor([42.0, 30.0])
    torch.testing.assert_close(centres[0], torch.tensor([[2.0, 26.0], [38.0, 22.0], [10.0, 6.0]]))
    out = h(x)
    boxes = out["boxes"]  # untrained box MLP: each query's box is centred on its anchor
    assert out["proposal_logits"].shape == (2, 8, 11) and boxes.shape == (2, 3, 4)


def test_matched_query_gets_the_positive_label():
    """With one target, exactly one query (the Hungarian match) is trained towards it."""
    h, crit = head(aux_loss=False), SetCriterion()
    out = h(inputs(b=1))
    target = out["boxes"][0, 3].detach()[None]
    terms = crit(out, {"boxes": target})
    assert float(terms["l1"].detach()) < 1e-6 and float(terms["iou"].detach()) < 1e-5  # query 3 is a perfect match


def test_a_few_steps_reduce_the_loss():
    h = head(queries=4, layers=1)
    x, crit = inputs(b=2, seed=3), SetCriterion()
    targets = {"boxes": torch.tensor([[6.0, 8, 18, 22], NAN])}
    opt = torch.optim.AdamW(h.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = weighted_total(crit(h(x), targets), WEIGHTS)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_decode_best_first_without_nms():
    h = head()
    out = h(inputs())
    out["logits"] = torch.tensor([[[0.0, 3.0, -1.0, 2.0, -9.0]], [[-9.0] * 5]])
    out["boxes"] = torch.tensor([[10.0, 10, 20, 20]]).expand(2, 5, 4)  # identical boxes: all kept
    (boxes, scores), (none, no_scores) = h.decode(out, 0.3, 0.5, 3)
    torch.testing.assert_close(scores, torch.tensor([3.0, 2.0, 0.0]).sigmoid())
    assert boxes.shape == (3, 4) and none.shape == (0, 4) and no_scores.shape == (0,)
    assert h.decoding == "top"


def test_built_from_config():
    cfg = parse_params({"model": {"head": {"type": "query", "channels": 16, "queries": 6, "layers": 3,
                                           "attention_heads": 2, "aux_loss": False}}}).model.head
    assert cfg == QueryHeadConfig(channels=16, queries=6, layers=3, attention_heads=2, aux_loss=False)
    h = HEADS.build(cfg, channels=8, levels=2, similarities=3, stride=4)
    assert isinstance(h, QueryHead) and len(h.layers) == 3 and h.query_embed.shape == (6, 16)
    assert h.inputs[0].in_channels == 2 * 8 + 3 and h.inputs[1].in_channels == 2 * 8
    with pytest.raises(ValueError, match="attention_heads"):
        HEADS.build(QueryHeadConfig(channels=12, attention_heads=8), channels=8, levels=2, similarities=0, stride=4)


def test_tiny_detector_trains_with_shifted_pairs():
    torch.manual_seed(0)
    cfg = model_config(head={"type": "query", "channels": 16, "queries": 4, "layers": 2}, search_size=[64, 64])
    model = build_detector(cfg)
    templates, search = torch.rand(2, 2, 3, 32, 32), torch.rand(2, 3, 64, 64)
    out = model(templates, search, shifted_pairs=True)
    assert out["logits"].shape == (4, 1, 4) and out["boxes"].shape == (4, 4, 4)
    targets = {"boxes": torch.tensor([[8.0, 8, 24, 30], NAN, NAN, NAN]), "present": torch.tensor([True, False] * 2)}
    terms = model.head.criterion("giou", 0.25, 2.0, 1)(out, targets)
    weighted_total(terms, WEIGHTS).backward()
    assert model.head.query_embed.grad is not None and model.head.condition.weight.grad is not None
    assert model.level_logits.grad is None or torch.isfinite(model.level_logits.grad).all()
    model.eval()
    with torch.no_grad():
        dets = model.decode(model.detect(search, model.encode_templates(templates)), 0.0, 0.5, 3)
    assert [b.shape for b, _ in dets] == [(3, 4), (3, 4)]
