import copy
import dataclasses
import time

import pytest
import torch

from pipeline.config import ConfigError, ModelConfig, TrainConfig, parse_params
from pipeline.detector import (
    DetectionCriterion,
    ReferenceDetector,
    build_criterion,
    build_detector,
    weighted_total,
)
from pipeline.detector.backbones.timm_cnn import TimmBackbone
from pipeline.detector.fusions.attention import AttentionFusion
from pipeline.detector.fusions.average import AverageFusion
from pipeline.detector.heads.factorized import FactorizedHead
from pipeline.detector.heads.joint import JointHead
from pipeline.detector.necks.fpn import FPN
from pipeline.detector.similarity.colour import ColourSimilarity
from pipeline.detector.similarity.correlation import Correlation
from pipeline.detector.similarity.prototypes import PrototypeMatching

NAN = float("nan")

#: The small detector most tests use, as params.yaml's model section: a random-init ConvNeXt-atto,
#: 16-channel neck and head, a 3x3 correlation kernel, the joint head on the correlation, the
#: search features and the SiamFC-style similarity skip, no further similarity maps.
TINY = {
    "backbone": {"type": "timm", "name": "convnext_atto", "pretrained": False},
    "levels": [2, 3],
    "neck": {"type": "fpn", "channels": 16},
    "fusion": {"type": "attention"},
    "correlation": {"type": "depthwise", "kernel": 3, "normalize": True},
    "similarities": {},
    "head": {"type": "joint", "channels": 16, "box_prior": 32.0, "search_features": True, "similarity_skip": True},
}


def _merge(base: dict, extra: dict) -> dict:
    """``extra`` merged into ``base``: a mapping into a mapping (unless it names another ``type``:
    the keys are that part's then), anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        old = out.get(key)
        same_part = isinstance(old, dict) and isinstance(value, dict) and value.get("type", old.get("type")) == old.get("type")
        out[key] = _merge(old, value) if same_part else value
    return out


def tiny_config(name="convnext_atto", levels=(2, 3), **sections) -> ModelConfig:
    """:data:`TINY` on backbone ``name`` at ``levels``, with ``sections`` merged in (see :func:`_merge`)."""
    raw = _merge(TINY, {"backbone": {"name": name}, "levels": list(levels)})
    return parse_params({"model": _merge(raw, sections)}).model


def tiny(name="convnext_atto", levels=(2, 3), **sections) -> ReferenceDetector:
    return build_detector(tiny_config(name, levels, **sections))


def factorized(gate="sum", **head):
    """``head`` section of a factorized head (the old default gate: sum) without the skip."""
    return {"type": "factorized", "channels": 16, "box_prior": 32.0, "gate": gate, "similarity_skip": False, **head}


def colour(bins):
    return {"colour": {"bins": bins}} if bins else {}


@pytest.mark.parametrize("name", ["convnext_atto", "resnet18"])
@pytest.mark.parametrize("levels", [(2, 3), (3, 4, 5)])
def test_shapes_and_finite(name, levels):
    model = tiny(name, levels)
    stride = 2 ** levels[0]
    templates, search = torch.rand(2, 3, 3, 64, 64), torch.rand(2, 3, 96, 128)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    out = model(templates, search, mask)
    h0, w0 = 96 // stride, 128 // stride
    assert out["stride"] == stride and out["image_size"] == (96, 128)
    assert out["logits"].shape == (2, h0, w0)
    assert out["ltrb"].shape == (2, 4, h0, w0)
    assert out["boxes"].shape == (2, h0 * w0, 4)
    for k in ("logits", "ltrb", "boxes"):
        assert torch.isfinite(out[k]).all(), k
    terms = DetectionCriterion()(out, {"boxes": torch.tensor([[30.0, 20, 70, 60], [NAN] * 4])})
    weighted_total(terms, {"focal": 1, "l1": 5, "iou": 2}).backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    assert model.level_logits.grad.abs().sum() > 0 and model.backbone.body.parameters().__next__().grad.abs().sum() > 0


def test_any_input_size():
    model = tiny(levels=(2, 3, 4)).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 2, 3, 50, 70), torch.rand(1, 3, 100, 150))
    assert out["logits"].shape == (1, 25, 38) and out["boxes"].shape == (1, 25 * 38, 4)
    assert torch.isfinite(out["boxes"]).all()


def test_same_weights_crop_and_frame():
    model = tiny().eval()
    t = torch.rand(1, 1, 3, 64, 64)
    with torch.no_grad():
        enc = model.encode_templates(t)
        assert model.detect(torch.rand(1, 3, 64, 64), enc)["logits"].shape == (1, 16, 16)
        assert model.detect(torch.rand(1, 3, 144, 256), enc)["logits"].shape == (1, 36, 64)


@pytest.mark.parametrize("colour_bins", [0, 8])
def test_encode_cache_broadcast_and_mask(colour_bins):
    model = tiny(similarities=colour(colour_bins)).eval()
    templates, search = torch.rand(1, 3, 3, 64, 64), torch.rand(3, 3, 64, 96)
    with torch.no_grad():
        enc = model.encode_templates(templates)
        cached = model.detect(search, enc)
        full = model(templates.expand(3, -1, -1, -1, -1), search)
        torch.testing.assert_close(cached["logits"], full["logits"], atol=1e-5, rtol=1e-5)
        # a padded template does not change the result
        padded = torch.cat([templates[:, :2], torch.rand(1, 1, 3, 64, 64)], 1)
        mask = torch.tensor([[True, True, False]])
        a = model(padded, search[:1], mask)["logits"]
        b = model(templates[:, :2], search[:1])["logits"]
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        # [B, 3, T, T] is one template per sample
        assert model.encode_templates(templates[:, 0])[0].shape == enc[0].shape


def test_batch_mismatch_is_an_error():
    model = tiny()
    enc = model.encode_templates(torch.rand(2, 1, 3, 64, 64))
    with pytest.raises(ValueError, match="template batch 2 does not match search batch 3"):
        model.detect(torch.rand(3, 3, 64, 64), enc)


def test_uint8_images_rejected():
    with pytest.raises(TypeError, match="float images"):
        tiny()(torch.zeros(1, 1, 3, 64, 64, dtype=torch.uint8), torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_bad_shapes_are_errors():
    model = tiny()
    with pytest.raises(ValueError, match=r"expected templates \[B, K, 3, T, T\], got \(1, 1, 1, 32, 32\)"):
        model.encode_templates(torch.rand(1, 1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"expected search \[B, 3, H, W\], got \(1, 1, 3, 32, 32\)"):
        model.detect(torch.rand(1, 1, 3, 32, 32), model.encode_templates(torch.rand(1, 3, 32, 32)))


def test_builders_from_config():
    # the defaults of params.yaml's model section
    model = build_detector(ModelConfig())
    assert model.stride == 4 and model.backbone.levels == [2, 3] and model.backbone.name == "efficientnet_lite0"
    assert isinstance(model.neck, FPN) and model.neck.out_channels == 64
    assert all(isinstance(f, AttentionFusion) for f in model.fusions) and len(model.fusions) == 2
    assert isinstance(model.correlation, Correlation)
    assert model.correlation.kernel_size == 1 and model.correlation.normalize
    assert [type(s) for s in model.similarities] == [PrototypeMatching, ColourSimilarity]
    assert isinstance(model.head, FactorizedHead) and model.head.gate == "and" and model.head.similarity_gain is None
    # every part as the config says
    cfg = tiny_config(levels=(2, 3, 4), fusion={"type": "average"}, correlation={"kernel": 3, "normalize": False},
                      similarities={"prototypes": {"grid": 2, "top": 3}, "colour": {"bins": 4}},
                      head={"search_features": False, "similarity_skip": False})
    model = build_detector(cfg)
    assert model.stride == 4 and model.pad_multiple == 16 and model.backbone.levels == [2, 3, 4]
    assert model.neck.strides == [4, 8, 16] and model.neck.out_channels == 16
    assert len(model.fusions) == 3 and all(isinstance(f, AverageFusion) for f in model.fusions)
    assert (model.correlation.kernel_size, model.correlation.normalize) == (3, False)
    (prototypes, col) = model.similarities
    assert (prototypes.grid, prototypes.top, col.bins, col.stride) == (2, 3, 4, 4)
    assert isinstance(model.head, JointHead) and not model.head.search_features and model.head.similarity_gain is None
    assert model.head.dense.tower[0].in_channels == 16 + 3 + 3  # correlation, top-3 matches, 3 colour windows
    crit = build_criterion(TrainConfig(iou_type="ciou", pos_radius=2, focal_alpha=0.5), model)
    assert isinstance(crit, DetectionCriterion)
    assert (crit.iou_type, crit.pos_radius, crit.focal_alpha, crit.focal_gamma) == ("ciou", 2, 0.5, 2.0)


def test_levels_of_fusions_and_neck_must_agree():
    backbone = TimmBackbone("convnext_atto", [2, 3])
    neck = FPN(backbone.channels, 16, backbone.strides)
    head = JointHead(16, 0, 4, 16, 32.0, True, False)
    with pytest.raises(ValueError, match="1 fusions for 2 levels"):
        ReferenceDetector(backbone, neck, [AverageFusion(16)], Correlation(1, True), [], head)


def test_bf16_autocast_channels_last():
    model = tiny().to(memory_format=torch.channels_last)
    t = torch.rand(2, 2, 3, 64, 64)
    s = torch.rand(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(t, s)
        terms = DetectionCriterion()(out, {"boxes": torch.tensor([[10.0, 10, 40, 40], [NAN] * 4])})
    assert out["boxes"].dtype == torch.float32
    loss = weighted_total(terms, {"focal": 1, "l1": 5, "iou": 2})
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()


def test_overfit_four_samples():
    torch.set_num_threads(2)
    # built from its parts, as any caller may: 32-channel FPN and joint head, 3x3 normalised correlation
    backbone = TimmBackbone("convnext_atto", [2, 3])
    model = ReferenceDetector(backbone, FPN(backbone.channels, 32, backbone.strides),
                              [AttentionFusion(32) for _ in range(2)], Correlation(3, True), [],
                              JointHead(32, 0, 4, 32, 32.0, search_features=True, similarity_skip=True))
    crit = DetectionCriterion("giou", 0.25, 2.0, 1)
    templates, search = torch.rand(4, 1, 3, 64, 64), torch.rand(4, 3, 96, 96)
    boxes = torch.tensor([[10.0, 20, 50, 60], [40, 30, 90, 80], [30, 50, 70, 90], [NAN] * 4])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0)
    weights = {"focal": 1.0, "l1": 5.0, "iou": 2.0}
    losses, t0 = [], time.monotonic()
    for _ in range(60):
        loss = weighted_total(crit(model(templates, search), {"boxes": boxes}), weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        out = model(templates, search)
    assert losses[-1] < losses[0] / 5, (losses[0], losses[-1], time.monotonic() - t0)
    # the best cell of each frame with the target is (next to) the box centre
    for i in range(3):
        best = out["logits"][i].flatten().argmax().item()
        r, c = divmod(best, out["logits"].shape[-1])
        cx, cy = (boxes[i, 0] + boxes[i, 2]) / 8, (boxes[i, 1] + boxes[i, 3]) / 8
        assert abs(r - int(cy)) <= 1 and abs(c - int(cx)) <= 1
    assert torch.sigmoid(out["logits"][3]).max() < torch.sigmoid(out["logits"][:3]).amax((1, 2)).min()
    # the head decodes its own outputs: the best box of each frame with the target is near it
    for i, (b, s) in enumerate(model.decode(out, 0.0, 0.5, 3)[:3]):
        assert b.shape == (3, 4) and (s[:-1] >= s[1:]).all()
        centre = (b[0, :2] + b[0, 2:]) / 2
        assert (centre - (boxes[i, :2] + boxes[i, 2:]) / 2).abs().max() <= 8


@pytest.mark.parametrize("colour_bins", [0, 8])
def test_shifted_pairs_reuse_search_features_and_roll_templates(colour_bins):
    torch.manual_seed(0)
    model = tiny(similarities=colour(colour_bins)).eval()
    templates, search = torch.rand(3, 2, 3, 32, 32), torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        both = model(templates, search, shifted_pairs=True)
        plain = model(templates, search)
        rolled = model(templates.roll(1, dims=0), search)
    assert both["logits"].shape == (6, 16, 16)
    torch.testing.assert_close(both["logits"][:3], plain["logits"])
    torch.testing.assert_close(both["logits"][3:], rolled["logits"])
    torch.testing.assert_close(both["boxes"][3:], rolled["boxes"])


def test_similarity_skip_adds_centred_cosine_map_to_logits():
    torch.manual_seed(0)
    with_skip = tiny(head={"similarity_skip": True}).eval()
    without = tiny(head={"similarity_skip": False}).eval()
    assert without.head.similarity_gain is None
    state = {k: v for k, v in with_skip.state_dict().items() if k != "head.similarity_gain"}
    assert len(state) == len(with_skip.state_dict()) - 1
    without.load_state_dict(state)
    templates, search = torch.rand(2, 3, 3, 32, 32), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a, b = with_skip(templates, search)["logits"], without(templates, search)["logits"]
        delta = (a - b) / with_skip.head.similarity_gain
    assert not torch.allclose(a, b)
    # centred per image: the added map sums to zero over each image
    torch.testing.assert_close(delta.mean(dim=(1, 2)), torch.zeros(2), atol=1e-5, rtol=0)
    assert delta.abs().max() <= 2.0  # a difference of two cosines


def test_build_detector_reports_part_problems_as_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="model.backbone.*missing.safetensors"):
        build_detector(tiny_config(backbone={"pretrained": str(tmp_path / "missing.safetensors")}))
    with pytest.raises(ConfigError, match="no level 1"):
        # (parse_params itself refuses these levels: train.freeze_through_level 3 is above them)
        build_detector(dataclasses.replace(tiny_config(), levels=(1, 2)))
    with pytest.raises(ConfigError, match="model.backbone"):
        build_detector(tiny_config("no_such_net_xyz"))
    # a ViT's one stride-16 map needs the simple pyramid, not an FPN
    with pytest.raises(ConfigError, match=r"model\.neck / model\.levels: neck fpn needs .*simple_pyramid"):
        build_detector(tiny_config(backbone={"type": "vit", "name": "vit_small_patch14_dinov2", "blocks": 1}))


def test_colour_similarity_reaches_the_head_and_its_histogram_is_cached():
    model = tiny(similarities=colour(4)).eval()
    templates = torch.rand(1, 2, 3, 32, 32)
    enc = model.encode_templates(templates)
    assert len(enc) == len(model.fusions) + 1 and enc[-1].shape == (1, 16, 1, 1)
    with torch.no_grad():
        red = model.detect(torch.rand(1, 3, 64, 64) * torch.tensor([1.0, 0.1, 0.1]).view(3, 1, 1), enc)
        # same features, other colours: only the colour input of the head changed
        blue = model.detect(torch.rand(1, 3, 64, 64) * torch.tensor([0.1, 0.1, 1.0]).view(3, 1, 1), enc)
    assert not torch.allclose(red["logits"], blue["logits"])
    with pytest.raises(ValueError, match="expected 3 encoded template tensors, got 2"):
        model.detect(torch.rand(1, 3, 64, 64), enc[:2])


def test_factorized_head_boxes_ignore_the_references_and_logits_do_not():
    torch.manual_seed(0)
    model = tiny(head=factorized(), similarities={"prototypes": {"grid": 2, "top": 2}, **colour(4)})
    with torch.no_grad():  # the match head starts at 0: give it weights so it speaks
        for p in model.head.match.parameters():
            p.normal_(0, 0.3)
    model.eval()
    search = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a = model(torch.rand(2, 3, 3, 32, 32), search)
        b = model(torch.rand(2, 3, 3, 32, 32), search)
        objectness, _ = model.head.dense(model._features(search)[0])
    # boxes are class-agnostic: other references, the same boxes
    torch.testing.assert_close(a["boxes"], b["boxes"])
    assert not torch.allclose(a["logits"], b["logits"])
    # the logit is objectness (search only) + match (similarities only)
    match_a = a["logits"] - objectness[:, 0]
    match_b = b["logits"] - objectness[:, 0]
    assert not torch.allclose(match_a, match_b)
    in_channels = model.head.match.tower[0].in_channels
    assert in_channels == len(model.fusions) + 2 + 3  # cosines per level, top-2 matches, 3 colour windows


def test_factorized_match_head_starts_silent_and_learns():
    model = tiny(head=factorized())
    templates, search = torch.rand(2, 2, 3, 32, 32), torch.rand(2, 3, 64, 64)
    out = model(templates, search)
    objectness, _ = model.head.dense(model._features(search)[0])
    torch.testing.assert_close(out["logits"], objectness[:, 0])
    terms = DetectionCriterion()(out, {"boxes": torch.tensor([[10.0, 10, 40, 40], [NAN] * 4])})
    weighted_total(terms, {"focal": 1, "l1": 5, "iou": 2}).backward()
    assert model.head.match.out.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="model.head.type: 'both' is not one of factorized, joint, query"):
        tiny(head={"type": "both"})


def test_factorized_and_gate_caps_the_score_by_the_match():
    torch.manual_seed(0)
    model = tiny(head=factorized(gate="and"), similarities=colour(4))
    with torch.no_grad():
        model.head.dense.obj.bias.fill_(20.0)  # everything looks like an object ...
        model.head.match.out.bias.fill_(-3.0)  # ... but nothing matches
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, 2, 3, 32, 32), torch.rand(1, 3, 64, 64))
    # sigmoid(20) * sigmoid(-3 + small): the probability stays at the match's
    assert torch.sigmoid(out["logits"]).max() < torch.sigmoid(torch.tensor(-2.5))
    with pytest.raises(ConfigError, match="model.head.gate: 'or' is not one of sum, and"):
        tiny(head=factorized(gate="or"))


def test_match_head_cosines_are_channel_means_of_the_upsampled_correlation():
    # the cosines are averaged before upsampling (one channel resized, not the neck's channels);
    # bilinear resizing is linear, so they must equal the mean of each level's upsampled correlation map
    torch.manual_seed(0)
    model = tiny(levels=(2, 3, 4), head=factorized()).eval()
    seen = {}
    model.head.match.register_forward_hook(lambda mod, args, out: seen.update(x=args[0]))
    templates, search = torch.rand(1, 2, 3, 32, 32), torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        model(templates, search)
        feats = model._features(search)
        encoded = model.encode_templates(templates)
        size0 = feats[0].shape[-2:]
        expected = [torch.nn.functional.interpolate(model.correlation(f, t), size=size0, mode="bilinear",
                                                    align_corners=False).mean(1) for f, t in zip(feats, encoded)]
    assert seen["x"].shape[1] == 3
    torch.testing.assert_close(seen["x"], torch.stack(expected, 1), rtol=1e-5, atol=1e-6)


def test_joint_head_without_search_features_reads_only_the_matching():
    model = tiny(head={"search_features": False}, similarities={"prototypes": {"grid": 2, "top": 2}})
    assert model.head.dense.tower[0].in_channels == 16 + 2
    out = model(torch.rand(2, 2, 3, 32, 32), torch.rand(2, 3, 64, 64))
    assert out["logits"].shape == (2, 16, 16)


def test_checkpoint_round_trip_through_the_config():
    # what training saves and inference rebuilds: the same config gives the same state-dict keys
    cfg = tiny_config(head=factorized(gate="and"), similarities={"prototypes": {"grid": 2, "top": 2}, **colour(4)})
    model = build_detector(cfg).eval()
    again = build_detector(cfg).eval()
    again.load_state_dict(model.state_dict(), strict=True)
    templates, search = torch.rand(1, 2, 3, 32, 32), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(templates, search)["logits"], model(templates, search)["logits"])
