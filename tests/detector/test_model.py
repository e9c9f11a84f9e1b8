import time

import pytest
import torch

from pipeline.config import ModelConfig, TrainConfig
from pipeline.detector import (
    Backbone,
    DetectionCriterion,
    ReferenceDetector,
    build_criterion,
    build_detector,
    weighted_total,
)

NAN = float("nan")


def tiny(name="convnext_atto", levels=(2, 3), fusion="attention", **kw):
    return ReferenceDetector(Backbone(name, levels), fpn_channels=16, fusion=fusion, corr_kernel=3,
                             corr_normalize=True, head_channels=16, **kw)


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
    model = tiny(colour_bins=colour_bins).eval()
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


def test_builders_from_config():
    model = build_detector(ModelConfig())
    assert model.stride == 4 and model.backbone.levels == [2, 3] and model.fusions[0].mode == "attention"
    assert model.correlation.kernel_size == 3 and model.correlation.normalize
    crit = build_criterion(TrainConfig(iou_type="ciou", pos_radius=2, focal_alpha=0.5))
    assert (crit.iou_type, crit.pos_radius, crit.focal_alpha, crit.focal_gamma) == ("ciou", 2, 0.5, 2.0)


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
    model = ReferenceDetector(Backbone("convnext_atto", [2, 3]), 32, "attention", 3, True, 32)
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


@pytest.mark.parametrize("colour_bins", [0, 8])
def test_shifted_pairs_reuse_search_features_and_roll_templates(colour_bins):
    torch.manual_seed(0)
    model = tiny(colour_bins=colour_bins).eval()
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
    with_skip = tiny(similarity_skip=True).eval()
    without = tiny(similarity_skip=False).eval()
    state = {k: v for k, v in with_skip.state_dict().items() if k != "similarity_gain"}
    without.load_state_dict(state)
    templates, search = torch.rand(2, 3, 3, 32, 32), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a, b = with_skip(templates, search)["logits"], without(templates, search)["logits"]
        delta = (a - b) / with_skip.similarity_gain
    assert not torch.allclose(a, b)
    # centred per image: the added map sums to zero over each image
    torch.testing.assert_close(delta.mean(dim=(1, 2)), torch.zeros(2), atol=1e-5, rtol=0)
    assert delta.abs().max() <= 2.0  # a difference of two cosines


def test_build_detector_reports_backbone_problems_as_config_errors(tmp_path):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="model.pretrained.*missing.safetensors"):
        build_detector(ModelConfig(pretrained=str(tmp_path / "missing.safetensors")))
    with pytest.raises(ConfigError, match="no level 1"):
        build_detector(ModelConfig(levels=(1, 2)))
    with pytest.raises(ConfigError, match="model.backbone"):
        build_detector(ModelConfig(backbone="no_such_net_xyz"))


def test_colour_similarity_reaches_the_head_and_its_histogram_is_cached():
    model = tiny(colour_bins=4).eval()
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
    model = tiny(head="factorized", colour_bins=4, match_grid=2, match_top=2, similarity_skip=False)
    with torch.no_grad():  # the match head starts at 0: give it weights so it speaks
        for p in model.match_head.parameters():
            p.normal_(0, 0.3)
    model.eval()
    search = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a = model(torch.rand(2, 3, 3, 32, 32), search)
        b = model(torch.rand(2, 3, 3, 32, 32), search)
        objectness, _ = model.head(model._features(search)[0])
    # boxes are class-agnostic: other references, the same boxes
    torch.testing.assert_close(a["boxes"], b["boxes"])
    assert not torch.allclose(a["logits"], b["logits"])
    # the logit is objectness (search only) + match (similarities only)
    match_a = a["logits"] - objectness[:, 0]
    match_b = b["logits"] - objectness[:, 0]
    assert not torch.allclose(match_a, match_b)
    in_channels = model.match_head.tower[0].in_channels
    assert in_channels == len(model.fusions) + 2 + 3  # cosines per level, top-2 matches, 3 colour windows


def test_factorized_match_head_starts_silent_and_learns():
    model = tiny(head="factorized", similarity_skip=False)
    templates, search = torch.rand(2, 2, 3, 32, 32), torch.rand(2, 3, 64, 64)
    out = model(templates, search)
    objectness, _ = model.head(model._features(search)[0])
    torch.testing.assert_close(out["logits"], objectness[:, 0])
    terms = DetectionCriterion()(out, {"boxes": torch.tensor([[10.0, 10, 40, 40], [NAN] * 4])})
    weighted_total(terms, {"focal": 1, "l1": 5, "iou": 2}).backward()
    assert model.match_head.out.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="head must be"):
        tiny(head="both")


def test_factorized_and_gate_caps_the_score_by_the_match():
    torch.manual_seed(0)
    model = tiny(head="factorized", match_gate="and", colour_bins=4, similarity_skip=False)
    with torch.no_grad():
        model.head.obj.bias.fill_(20.0)  # everything looks like an object ...
        model.match_head.out.bias.fill_(-3.0)  # ... but nothing matches
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, 2, 3, 32, 32), torch.rand(1, 3, 64, 64))
    # sigmoid(20) * sigmoid(-3 + small): the probability stays at the match's
    assert torch.sigmoid(out["logits"]).max() < torch.sigmoid(torch.tensor(-2.5))
    with pytest.raises(ValueError, match="match_gate must be"):
        tiny(head="factorized", match_gate="or")


def test_match_head_cosines_are_channel_means_of_the_upsampled_correlation():
    # the cosines are averaged before upsampling (one channel resized, not fpn_channels); bilinear
    # resizing is linear, so they must equal the mean of each level's upsampled correlation map
    torch.manual_seed(0)
    model = tiny(levels=(2, 3, 4), head="factorized", similarity_skip=False).eval()
    seen = {}
    model.match_head.register_forward_hook(lambda mod, args, out: seen.update(x=args[0]))
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
