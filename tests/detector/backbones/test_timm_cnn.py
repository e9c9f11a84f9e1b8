import time

import pytest
import timm
import torch

from pipeline.detector.backbones import weights as weights_mod
from pipeline.detector.backbones.timm_cnn import TimmBackbone, available_levels


@pytest.mark.parametrize(
    "name, levels, channels",
    [
        ("convnext_atto", [2, 3], [40, 80]),
        ("convnext_atto", [3, 4, 5], [80, 160, 320]),
        ("resnet18", [2, 3], [64, 128]),
        ("resnet18", [3, 4, 5], [128, 256, 512]),
    ],
)
def test_levels_channels_strides(name, levels, channels):
    bb = TimmBackbone(name, levels)
    assert bb.levels == levels
    assert bb.channels == channels
    assert bb.strides == [2**lvl for lvl in levels]
    feats = bb(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(1, c, 64 // s, 96 // s) for c, s in zip(channels, bb.strides)]


def test_truncated_after_last_level():
    small, full = TimmBackbone("convnext_atto", [2, 3]), TimmBackbone("convnext_atto", [2, 3, 4, 5])
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in full.parameters()) / 4


def test_efficientnet_runs_no_block_after_the_last_level():
    # timm's EfficientNet feature model keeps all 7 block stages whatever out_indices asks for.
    small = TimmBackbone("tf_efficientnet_lite0", [2, 3])
    assert len(small.body.blocks) == 3  # stem, then blocks 0-2: strides 2, 4, 8
    full = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=(1, 2))
    x = torch.rand(1, 3, 64, 96)
    small.body.load_state_dict({k: v for k, v in full.state_dict().items() if k in small.body.state_dict()})
    for got, want in zip(small.eval()(x), full.eval()(x)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name, level, layers", [
    ("convnext_atto", 2, ["stem_0", "stem_1", "stages_0"]),
    ("tf_efficientnet_lite0", 2, ["conv_stem", "bn1", "blocks.0", "blocks.1"]),
    ("tf_efficientnet_lite0", 1, ["conv_stem", "bn1", "blocks.0"]),
])
def test_freeze_through_a_level_keeps_weights_and_bn_statistics(name, level, layers):
    torch.manual_seed(0)
    bb = TimmBackbone(name, [2, 3])
    assert bb.freeze_through(level) == layers
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    bb.train()
    opt = torch.optim.SGD([p for p in bb.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        sum(f.square().mean() for f in bb(torch.rand(2, 3, 64, 64))).backward()
        opt.step()
    after = bb.state_dict()
    frozen = [k for k in before if any(k.startswith(f"body.{n}.") for n in layers)]
    trained = [k for k in before if k not in frozen and k.endswith("weight")]
    assert frozen and trained
    assert all(torch.equal(before[k], after[k]) for k in frozen)  # weights and running stats alike
    assert any(not torch.equal(before[k], after[k]) for k in trained)
    # A frozen model's checkpoint loads into a plain one (inference never freezes).
    TimmBackbone(name, [2, 3]).load_state_dict(after, strict=True)


def test_freeze_through_a_level_the_backbone_does_not_run():
    with pytest.raises(ValueError, match="has no layer of level 4"):
        TimmBackbone("convnext_atto", [2, 3]).freeze_through(4)


def test_available_levels():
    assert available_levels("convnext_atto") == [2, 3, 4, 5]
    assert available_levels("resnet18") == [1, 2, 3, 4, 5]


def test_bad_level_names_level_and_available():
    with pytest.raises(ValueError, match=r"no level 1 \(stride 2\); available levels: \[2, 3, 4, 5\]"):
        TimmBackbone("convnext_atto", [1, 2])


def test_levels_must_increase():
    with pytest.raises(ValueError, match="strictly increasing"):
        TimmBackbone("convnext_atto", [3, 2])


def test_unknown_model():
    with pytest.raises(ValueError, match="not a timm model"):
        TimmBackbone("convnext_attoo_nope", [2])


def test_missing_weights_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match=str(path)):
        TimmBackbone("convnext_atto", [2, 3], pretrained=str(path))


def test_unsupported_weights_suffix(tmp_path):
    path = tmp_path / "weights.txt"
    path.write_text("x")
    with pytest.raises(ValueError, match="unsupported suffix"):
        TimmBackbone("convnext_atto", [2, 3], pretrained=path)


def _assert_loaded(bb: TimmBackbone, ref_sd: dict):
    sd = bb.body.state_dict()
    assert sd, "empty backbone"
    for k, v in sd.items():
        assert torch.equal(v, ref_sd[k]), k


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_round_trip(tmp_path, suffix):
    ref = timm.create_model("convnext_atto", pretrained=False)
    sd = {k: v.contiguous() for k, v in ref.state_dict().items()}
    path = tmp_path / f"convnext_atto{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save({"state_dict": sd}, path)
    bb = TimmBackbone("convnext_atto", [2, 3], pretrained=str(path))
    # features_only flattens module names: stem.0 -> stem_0, stages.0 -> stages_0
    flat = {k.replace("stem.", "stem_", 1).replace("stages.", "stages_", 1): v for k, v in sd.items()}
    _assert_loaded(bb, flat)
    rand = TimmBackbone("convnext_atto", [2, 3])
    assert not torch.equal(rand.body.stem_0.weight, bb.body.stem_0.weight)


def test_backbone_checkpoint_round_trip(tmp_path):
    src = TimmBackbone("resnet18", [3, 4])
    path = tmp_path / "bb.pth"
    torch.save({f"backbone.body.{k}": v for k, v in src.body.state_dict().items()} | {"head.w": torch.zeros(1)}, path)
    bb = TimmBackbone("resnet18", [3, 4], pretrained=path)
    _assert_loaded(bb, src.body.state_dict())


def test_other_classifier_size_loads(tmp_path):
    ref = timm.create_model("resnet18", pretrained=False, num_classes=7)
    path = tmp_path / "finetuned.pth"
    torch.save(ref.state_dict(), path)
    bb = TimmBackbone("resnet18", [2, 3], pretrained=path)
    _assert_loaded(bb, ref.state_dict())


def test_wrong_weights_file(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit backbone 'convnext_atto'"):
        TimmBackbone("convnext_atto", [2, 3], pretrained=path)


def test_hub_offline_fails_fast(monkeypatch):
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="set model.pretrained to that file's path"):
        TimmBackbone("convnext_atto", [2, 3], pretrained=True)
    assert time.monotonic() - t0 < 10


def test_hub_unreachable_fails_fast(monkeypatch):
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for var in ("TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)

    def refuse(*a, **k):
        raise OSError("Name or service not known")

    monkeypatch.setattr(weights_mod.socket, "create_connection", refuse)
    with pytest.raises(RuntimeError, match="unreachable"):
        TimmBackbone("convnext_atto", [2, 3], pretrained=True)


def test_hub_cache_is_used(monkeypatch, tmp_path):
    from safetensors.torch import save_file

    ref = timm.create_model("convnext_atto", pretrained=False)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: str(path))
    monkeypatch.setattr(weights_mod.socket, "create_connection", None)  # must not touch the network
    bb = TimmBackbone("convnext_atto", [2], pretrained=True)
    assert torch.equal(bb.body.stem_0.weight, ref.stem[0].weight)


def test_built_from_config_with_lora():
    from pipeline.config import parse_params
    from pipeline.detector.backbones.timm_cnn import TimmBackboneConfig
    from pipeline.detector.registry import BACKBONES

    raw = {"name": "convnext_atto", "pretrained": False, "lora": {"rank": 2, "targets": ["mlp.fc1"]}}
    cfg = parse_params({"model": {"backbone": raw}}).model.backbone
    assert isinstance(cfg, TimmBackboneConfig) and cfg.type == "timm" and cfg.lora.targets == ("mlp.fc1",)
    bb = BACKBONES.build(cfg, levels=[2, 3])
    assert isinstance(bb, TimmBackbone) and (bb.levels, bb.channels) == ([2, 3], [40, 80])
    trainable = [n for n, p in bb.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 4 and all(".lora_" in n and ".mlp.fc1." in n for n in trainable)
    plain = BACKBONES.build(parse_params({"model": {"backbone": {**raw, "lora": {"rank": 0}}}}).model.backbone,
                            levels=[2, 3])
    assert all(p.requires_grad for p in plain.parameters())
