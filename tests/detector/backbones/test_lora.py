import copy

import pytest
import timm
import torch
from torch import Tensor, nn

from pipeline.config import LoraConfig
from pipeline.detector.backbones.lora import (
    apply_lora,
    apply_lora_config,
    count_parameters,
    lora_state_dict,
    merge_lora,
)
from pipeline.detector.backbones.timm_cnn import TimmBackbone

LORA = {"rank": 4, "alpha": 8.0, "dropout": 0.0}
VIT_TARGETS = ("qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
CNN_TARGETS = ("conv_pw", "conv_pwl")  # EfficientNet's 1x1 convs; its conv_dw are depth-wise


def tiny_vit() -> nn.Module:
    return timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, depth=2, embed_dim=48,
                             num_heads=2, img_size=56, dynamic_img_size=True)


def tiny_cnn() -> nn.Module:
    return timm.create_model("efficientnet_lite0", pretrained=False, features_only=True)


MODELS = {"vit": (tiny_vit, VIT_TARGETS, (2, 3, 56, 70)), "cnn": (tiny_cnn, CNN_TARGETS, (2, 3, 64, 64))}


def outputs(model: nn.Module, x: Tensor) -> list[Tensor]:
    """Eval-mode outputs: the ViT's token map (every token, not only the pooled one), the CNN's feature maps."""
    model.eval()
    with torch.no_grad():
        out = model.forward_features(x) if hasattr(model, "blocks") and hasattr(model, "cls_token") else model(x)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def assert_outputs_close(got: list[Tensor], want: list[Tensor], tol: float = 1e-5) -> None:
    """Equal up to ``tol`` of each output's scale (max(1, max |want|)): float32 rounding grows with
    the activations, which reach ~10 in the random CNN's deepest maps."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=tol, atol=tol * max(1.0, w.abs().max().item()))


def train_step(model: nn.Module, x: Tensor, lr: float = 1e-2) -> None:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    out = model(x)
    sum(o.square().mean() for o in (out if isinstance(out, (list, tuple)) else [out])).backward()
    opt.step()


def perturbed(model: nn.Module) -> nn.Module:
    """Non-zero ``lora_B`` weights (as after training), so that the adapters change the output."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return model


@pytest.mark.parametrize("kind", MODELS)
def test_only_adapters_train(kind):
    make, targets, _ = MODELS[kind]
    model = make()
    plain_total = count_parameters(model)[1]
    names = apply_lora(model, target_modules=targets, **LORA)
    assert type(model) is type(make())  # in place: the caller's object, class and attributes
    if kind == "vit":
        assert names == [f"blocks.{i}.{t}" for i in range(2) for t in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")]
    else:
        assert names and all(n.endswith((".conv_pw", ".conv_pwl")) for n in names)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(trainable) == 2 * len(names)
    n_trainable, total = count_parameters(model)
    assert n_trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert total == plain_total + n_trainable
    assert n_trainable < 0.2 * plain_total


@pytest.mark.parametrize("kind", MODELS)
def test_untrained_adapter_leaves_outputs_unchanged(kind):
    make, targets, shape = MODELS[kind]
    model, x = make(), torch.rand(shape)
    before = outputs(copy.deepcopy(model), x)
    apply_lora(model, target_modules=targets, **LORA)  # lora_B starts at zero
    assert_outputs_close(outputs(model, x), before, tol=1e-6)


@pytest.mark.parametrize("kind", MODELS)
def test_a_step_trains_the_adapters_and_not_the_base(kind):
    make, targets, shape = MODELS[kind]
    model, x = make(), torch.rand(shape)
    apply_lora(model, target_modules=targets, **LORA)
    before_out = outputs(model, x)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_step(model, x)
    after = dict(model.named_parameters())
    base = [n for n in before if "lora_" not in n]
    assert base and all(torch.equal(before[n], after[n]) for n in base)
    assert all(not torch.equal(before[n], after[n]) for n in before if "lora_B" in n)
    assert any(not torch.allclose(a, b) for a, b in zip(outputs(model, x), before_out))


def test_checkpoint_round_trip():
    model, x = tiny_vit(), torch.rand(2, 3, 56, 56)
    apply_lora(model, target_modules=VIT_TARGETS, **LORA)
    train_step(model, x)
    again = tiny_vit()  # another random init: everything must come from the checkpoint
    apply_lora(again, target_modules=VIT_TARGETS, **LORA)
    again.load_state_dict(model.state_dict(), strict=True)
    assert_outputs_close(outputs(again, x), outputs(model, x), tol=0)


def test_adapters_are_saved_apart_from_the_base():
    base, x = tiny_vit(), torch.rand(2, 3, 56, 56)
    model = copy.deepcopy(base)
    apply_lora(model, target_modules=VIT_TARGETS, **LORA)
    train_step(model, x)
    adapters = lora_state_dict(model)
    assert set(adapters) == {k for k in model.state_dict() if ".lora_A." in k or ".lora_B." in k}
    assert "blocks.0.attn.qkv.lora_B.default.weight" in adapters

    # pretrained base first, then LoRA, then the adapters
    apply_lora(base, target_modules=VIT_TARGETS, **LORA)
    result = base.load_state_dict(adapters, strict=False)
    assert not result.unexpected_keys
    assert set(result.missing_keys) == set(model.state_dict()) - set(adapters)
    assert_outputs_close(outputs(base, x), outputs(model, x), tol=0)


def test_lora_state_dict_of_a_module_without_adapters():
    with pytest.raises(ValueError, match="no LoRA adapters"):
        lora_state_dict(tiny_vit())


@pytest.mark.parametrize("kind", MODELS)
def test_merge_gives_the_same_outputs_with_plain_layers(kind):
    make, targets, shape = MODELS[kind]
    model, x = make(), torch.rand(shape)
    plain_keys = list(model.state_dict())
    names = apply_lora(model, target_modules=targets, **LORA)
    perturbed(model)
    want = outputs(model, x)
    assert merge_lora(model) == len(names)
    assert_outputs_close(outputs(model, x), want)
    assert not [type(m) for m in model.modules() if type(m).__module__.startswith("peft")]
    assert not hasattr(model, "peft_config")
    assert all(isinstance(model.get_submodule(n), (nn.Linear, nn.Conv2d)) for n in names)
    # the plain model's keys again: the merged weights load into a model that never saw peft
    assert list(model.state_dict()) == plain_keys
    fresh = make()
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert_outputs_close(outputs(fresh, x), want)
    assert not any(p.requires_grad for p in model.parameters())  # as apply_lora left the base
    assert merge_lora(model) == 0


def test_autocast_bf16_on_cpu():
    model = tiny_vit()
    apply_lora(model, rank=4, alpha=8.0, dropout=0.1, target_modules=VIT_TARGETS)
    perturbed(model).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_features(torch.rand(2, 3, 56, 56))
    out.float().square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert all(g.abs().sum() > 0 for n, g in grads.items() if "lora_A" in n)


def test_backbone_keeps_its_attributes():
    bb = TimmBackbone("convnext_atto", [2, 3])
    names = apply_lora(bb, rank=4, alpha=8.0, dropout=0.0, target_modules=["mlp.fc1", "mlp.fc2"])  # 1x1 convs here
    assert len(names) == 2 * (2 + 2)  # two blocks in each of the two stages run
    assert isinstance(bb, TimmBackbone) and bb.channels == [40, 80]
    feats = bb(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, 40, 16, 16), (1, 80, 8, 8)]


def test_no_match_names_the_targets_and_what_there_is():
    with pytest.raises(ValueError, match=r"'attn\.qkvv' of \['attn\.qkvv'\] match no layer of VisionTransformer; "
                                         r"its Linear / Conv2d layers include .*qkv \(blocks\.0\.attn\.qkv\)"):
        apply_lora(tiny_vit(), target_modules=["attn.qkvv"], **LORA)


def test_a_misspelt_target_among_good_ones():
    model = tiny_vit()
    with pytest.raises(ValueError, match=r"target\(s\) 'fc3' of \['qkv', 'fc3'\] match no layer"):
        apply_lora(model, target_modules=["qkv", "fc3"], **LORA)
    assert count_parameters(model)[0] == count_parameters(tiny_vit())[0]  # left untouched


@pytest.mark.parametrize("rank", [0, -2])
def test_rank_below_one(rank):
    with pytest.raises(ValueError, match="rank must be >= 1"):
        apply_lora(tiny_vit(), rank=rank, alpha=8.0, dropout=0.0, target_modules=VIT_TARGETS)


def test_depthwise_conv_is_refused():
    # peft would adapt it only for a rank that is a multiple of groups, and could never merge it.
    with pytest.raises(ValueError, match=r"'blocks\.0\.0\.conv_dw' is a depth-wise Conv2d \(groups=32\).*"
                                         r"cannot merge.*conv_pw \(blocks\.0\.0\.conv_pw\)"):
        apply_lora(tiny_cnn(), rank=32, alpha=8.0, dropout=0.0, target_modules=["conv_dw"])


@pytest.mark.parametrize("target, kind", [("mlp", "Mlp"), ("norm1", "LayerNorm")])
def test_a_target_that_is_not_a_layer(target, kind):
    with pytest.raises(ValueError, match=f"is of type {kind}; LoRA adapts nn.Linear and nn.Conv2d"):
        apply_lora(tiny_vit(), target_modules=[target], **LORA)


def test_applying_twice_is_refused():
    model = tiny_vit()
    apply_lora(model, target_modules=["qkv"], **LORA)
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        apply_lora(model, target_modules=["mlp.fc1"], **LORA)


def test_config_rank_0_adds_nothing():
    model = tiny_vit()
    assert apply_lora_config(model, LoraConfig()) == []
    assert all(p.requires_grad for p in model.parameters())


def test_config_rank_adapts_its_targets():
    model = tiny_vit()
    names = apply_lora_config(model, LoraConfig(rank=2, alpha=4.0, targets=("qkv",)))
    assert names == ["blocks.0.attn.qkv", "blocks.1.attn.qkv"]
    assert model.blocks[0].attn.qkv.r["default"] == 2 and model.blocks[0].attn.qkv.scaling["default"] == 2.0
    assert all(("lora_" in n) == p.requires_grad for n, p in model.named_parameters())
