"""Parts chosen by name: a new part is one class and one registration, names are checked against
the registries, and the ViT path builds from params alone."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.config import (
    ConfigError,
    ModelConfig,
    PartConfig,
    TrainConfig,
    bounds,
    parse_params,
    to_raw,
)
from pipeline.detector import (
    BACKBONES,
    FUSIONS,
    HEADS,
    NECKS,
    DetectionCriterion,
    ReferenceDetector,
    build_criterion,
    build_detector,
    load_parts,
    weighted_total,
)
from pipeline.detector.fusions.base import FusionConfig
from pipeline.detector.heads.base import HeadInputs
from pipeline.detector.heads.dense_base import DenseHead, DenseHeadConfig
from pipeline.detector.necks.fpn import NeckConfig
from pipeline.detector.similarity.base import resize

NAN = float("nan")

#: A small detector: random-init ConvNeXt-atto, 16-channel neck and head.
SMALL = {"backbone": {"name": "convnext_atto", "pretrained": False}, "neck": {"channels": 16},
         "head": {"channels": 16}}


def small_config(**model) -> ModelConfig:
    """:data:`SMALL` with the sections of ``model`` in place of its own."""
    return parse_params({"model": {**SMALL, **model}}).model


def run_and_backward(model: ReferenceDetector, size=(64, 96)) -> dict:
    """Forward two samples (2 references of 32 px each), the head's loss and its backward."""
    templates, search = torch.rand(2, 2, 3, 32, 32), torch.rand(2, 3, *size)
    out = model(templates, search, torch.tensor([[True, True], [True, False]]))
    crit = build_criterion(TrainConfig(), model)
    terms = crit(out, {"boxes": torch.tensor([[8.0, 8, 40, 40], [NAN] * 4])})
    weighted_total(terms, {"focal": 1, "l1": 5, "iou": 2}).backward()
    assert all(torch.isfinite(out[k]).all() for k in ("logits", "ltrb", "boxes"))
    return out


# -- new parts: one class and one registration each -------------------------------------------------


class MaxFusion(nn.Module):
    """The channel-wise maximum over the valid templates."""

    def __init__(self, cfg: FusionConfig, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is not None:
            features = features.masked_fill(~mask.bool()[:, :, None, None, None], float("-inf"))
        return features.amax(1)


@dataclass(frozen=True)
class ConvHeadConfig(DenseHeadConfig):
    """A key of its own (``kernel``) next to those every dense head has."""

    type: str = "conv_test"
    kernel: int = field(default=1, metadata=bounds(1))


class ConvHead(DenseHead):
    """One conv from the level-weighted correlation and the similarity maps to objectness and box."""

    def __init__(self, cfg: ConvHeadConfig, channels: int, levels: int, similarities: int, stride: int):
        super().__init__(stride, cfg.similarity_skip)
        self.conv = nn.Conv2d(channels + similarities, 1 + 4, cfg.kernel, padding=cfg.kernel // 2)

    def forward(self, inputs: HeadInputs) -> dict:
        size0 = inputs.features[0].shape[-2:]
        corr = sum(resize(c, size0) * w for w, c in zip(inputs.level_weights, inputs.correlations))
        cosines = [resize(c.float().mean(1, keepdim=True), size0) for c in inputs.correlations]
        out = self.conv(torch.cat([corr, *inputs.similarities], dim=1))
        return self.outputs(out[:, :1], out[:, 1:], cosines, inputs)


class ConvNeck(nn.Module):
    """A 1x1 conv per backbone map: the backbone's maps must be the levels already."""

    def __init__(self, cfg: NeckConfig, in_channels: Sequence[int], in_strides: Sequence[int], levels: Sequence[int]):
        super().__init__()
        if list(in_strides) != [2**lvl for lvl in levels]:
            raise ValueError(f"ConvNeck needs maps at the strides of the levels, got {list(in_strides)}")
        self.strides = list(in_strides)
        self.convs = nn.ModuleList(nn.Conv2d(c, cfg.channels, 1) for c in in_channels)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        return [conv(f) for conv, f in zip(self.convs, features)]


@dataclass(frozen=True)
class ConvStackConfig(PartConfig):
    type: str = "conv_stack_test"
    width: int = field(default=8, metadata=bounds(1))


class ConvStack(nn.Module):
    """A stride-2 conv + ReLU per level up to the deepest of ``levels``; returns the maps of ``levels``."""

    def __init__(self, cfg: ConvStackConfig, levels: Sequence[int]):
        super().__init__()
        self.levels = [int(lvl) for lvl in levels]
        widths = [3] + [cfg.width * (i + 1) for i in range(max(self.levels))]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in pairwise(widths))
        self.channels = [widths[lvl] for lvl in self.levels]
        self.strides = [2**lvl for lvl in self.levels]
        self.mean, self.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    def freeze_through(self, level: int) -> list[str]:
        names = [f"convs.{i}" for i in range(level)]
        for conv in self.convs[:level]:
            conv.requires_grad_(False)
        return names

    def forward(self, x: Tensor) -> list[Tensor]:
        maps = []
        for level, conv in enumerate(self.convs, 1):
            x = F.relu(conv(x))
            if level in self.levels:
                maps.append(x)
        return maps


@pytest.fixture
def max_fusion():
    load_parts()
    FUSIONS.register("max_test", FusionConfig)(MaxFusion)
    yield MaxFusion
    FUSIONS._entries.pop("max_test")


@pytest.fixture
def conv_head():
    load_parts()
    HEADS.register("conv_test", ConvHeadConfig)(ConvHead)
    yield ConvHead
    HEADS._entries.pop("conv_test")


@pytest.fixture
def conv_neck():
    load_parts()
    NECKS.register("conv_test", NeckConfig)(ConvNeck)
    yield ConvNeck
    NECKS._entries.pop("conv_test")


@pytest.fixture
def conv_stack():
    load_parts()
    BACKBONES.register("conv_stack_test", ConvStackConfig)(ConvStack)
    yield ConvStack
    BACKBONES._entries.pop("conv_stack_test")


def test_a_new_fusion(max_fusion):
    model = build_detector(small_config(fusion={"type": "max_test"}))
    assert len(model.fusions) == 2 and all(type(f) is MaxFusion and f.channels == 16 for f in model.fusions)
    run_and_backward(model)
    # it is what fuses the references: the maximum of their maps
    templates = torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        fused = model.encode_templates(templates)
        one_by_one = [model.encode_templates(templates[:, k]) for k in range(3)]
    for level in range(2):  # (then the colour histogram of the references)
        torch.testing.assert_close(fused[level], torch.stack([o[level] for o in one_by_one]).amax(0))
    # the registry names it while it is registered
    with pytest.raises(ConfigError, match=r"model\.fusion\.type: 'x' is not one of attention, average, max_test$"):
        small_config(fusion={"type": "x"})


def test_a_new_head(conv_head):
    cfg = small_config(head={"type": "conv_test", "kernel": 3}, similarities={"colour": {"bins": 4}})
    assert cfg.head == ConvHeadConfig(type="conv_test", kernel=3)
    model = build_detector(cfg)
    assert type(model.head) is ConvHead and model.head.conv.in_channels == 16 + 3
    assert model.head.conv.kernel_size == (3, 3) and model.head.stride == 4
    out = run_and_backward(model)
    assert out["logits"].shape == (2, 16, 24) and out["boxes"].shape == (2, 16 * 24, 4)
    assert model.head.conv.weight.grad.abs().sum() > 0 and model.backbone.body.stem_0.weight.grad is not None
    assert isinstance(build_criterion(TrainConfig(), model), DetectionCriterion)  # DenseHead's loss ...
    boxes, scores = model.decode(out, 0.0, 0.5, 4)[0]  # ... and decoding
    assert boxes.shape == (4, 4) and scores.shape == (4,)
    with pytest.raises(ConfigError, match=r"model\.head\.kernel: 0 is out of range, must be >= 1"):
        small_config(head={"type": "conv_test", "kernel": 0})


def test_a_new_neck(conv_neck):
    model = build_detector(small_config(neck={"type": "conv_test", "channels": 16}, levels=[2, 3, 4]))
    assert type(model.neck) is ConvNeck and [c.in_channels for c in model.neck.convs] == [40, 80, 160]
    assert model.stride == 4 and len(model.fusions) == 3
    out = run_and_backward(model)
    assert out["logits"].shape == (2, 16, 24)
    # the factorized head's boxes and objectness read the finest map (the coarser ones reach it
    # through the match head, which starts at zero)
    assert all(c.weight.grad is not None for c in model.neck.convs) and model.neck.convs[0].weight.grad.abs().sum() > 0


def test_a_new_backbone(conv_stack):
    cfg = small_config(backbone={"type": "conv_stack_test", "width": 4}, levels=[2, 3])
    assert cfg.backbone == ConvStackConfig(type="conv_stack_test", width=4)
    model = build_detector(cfg)
    assert type(model.backbone) is ConvStack and model.backbone.channels == [8, 12]
    assert model.neck.in_channels == [8, 12] and model.neck.strides == [4, 8]
    assert model.pixel_mean.flatten().tolist() == [0.5] * 3 and model.pixel_std.flatten().tolist() == [0.25] * 3
    out = run_and_backward(model, size=(60, 90))  # padded to a multiple of the coarsest stride inside
    assert out["logits"].shape == (2, 15, 23) and out["image_size"] == (60, 90)
    assert all(c.weight.grad is not None for c in model.backbone.convs)
    with pytest.raises(ConfigError, match=r"model\.backbone\.name: unknown key \(allowed in model\.backbone: type, width\)"):
        small_config(backbone={"type": "conv_stack_test", "name": "convnext_atto"})


def test_all_new_parts_together(max_fusion, conv_head, conv_neck, conv_stack):
    cfg = small_config(backbone={"type": "conv_stack_test"}, neck={"type": "conv_test", "channels": 8},
                       fusion={"type": "max_test"}, head={"type": "conv_test"}, similarities={})
    assert parse_params({"model": to_raw(cfg)}).model == cfg  # params.yaml holds a new part like any other
    model = build_detector(cfg)
    assert [type(m) for m in (model.backbone, model.neck, model.fusions[0], model.head)] == [
        ConvStack, ConvNeck, MaxFusion, ConvHead]
    assert run_and_backward(model)["logits"].shape == (2, 16, 24)


def test_registering_a_name_twice():
    load_parts()
    entry = FUSIONS.get("average")
    FUSIONS.register("average", FusionConfig)(entry.builder)  # the same builder again: a re-import, fine
    with pytest.raises(ValueError, match="fusion 'average' is registered twice"):
        FUSIONS.register("average", FusionConfig)(MaxFusion)
    assert FUSIONS.get("average") == entry


def test_names_are_sorted_whatever_the_registration_order():
    load_parts()
    FUSIONS.register("aa_test", FusionConfig)(MaxFusion)  # registered last, named first
    try:
        assert FUSIONS.names() == ("aa_test", "attention", "average")
        with pytest.raises(KeyError, match="'x' is not a registered fusion \\(one of aa_test, attention, average\\)"):
            FUSIONS.get("x")
    finally:
        FUSIONS._entries.pop("aa_test")


def test_unregistered_after_the_test():
    # the fixtures above took their parts out again: other tests (the docs check of every
    # registered part's keys) see only the built-in ones
    assert "max_test" not in FUSIONS and "conv_test" not in HEADS and "conv_test" not in NECKS
    assert "conv_stack_test" not in BACKBONES


# -- names and keys are checked against the registries ----------------------------------------------


@pytest.mark.parametrize("model, message", [
    ({"fusion": {"type": "x"}}, "model.fusion.type: 'x' is not one of attention, average"),
    ({"backbone": {"type": "x"}}, "model.backbone.type: 'x' is not one of timm, vit"),
    ({"neck": {"type": "x"}}, "model.neck.type: 'x' is not one of fpn, simple_pyramid"),
    ({"correlation": {"type": "x"}}, "model.correlation.type: 'x' is not one of depthwise"),
    ({"head": {"type": "x"}}, "model.head.type: 'x' is not one of factorized, joint, query"),
    ({"similarities": {"x": {}}}, "model.similarities.x.type: 'x' is not one of colour, prototypes"),
    ({"fusion": {"type": 3}}, "model.fusion.type: 3 is not one of attention, average"),
])
def test_unknown_type_lists_the_registered_names(model, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        parse_params({"model": model})


@pytest.mark.parametrize("model, message", [
    ({"fusion": {"type": "average", "weights": [1, 2]}}, "model.fusion.weights: unknown key (allowed in model.fusion: type)"),
    # a key of another type of the same kind
    ({"head": {"type": "joint", "gate": "and"}},
     "model.head.gate: unknown key (allowed in model.head: type, channels, box_prior, similarity_skip, search_features)"),
    ({"backbone": {"type": "timm", "blocks": 2}},
     "model.backbone.blocks: unknown key (allowed in model.backbone: type, name, pretrained, lora)"),
    ({"similarities": {"colour": {"grid": 4}}},
     "model.similarities.colour.grid: unknown key (allowed in model.similarities.colour: type, bins)"),
    ({"backbone": {"lora": {"rank": 2, "target": ["qkv"]}}}, "model.backbone.lora.target: unknown key"),
])
def test_unknown_part_keys_are_named(model, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        parse_params({"model": model})


def test_a_part_must_be_a_mapping():
    with pytest.raises(ConfigError, match="model.fusion: expected a mapping with type: and the part's keys, got 'average'"):
        parse_params({"model": {"fusion": "average"}})


def test_a_key_of_the_default_type_after_changing_the_type():
    # the keys belong to the type given, not to the default one
    cfg = parse_params({"model": {"head": {"type": "joint", "search_features": False}}}).model
    assert (cfg.head.type, cfg.head.search_features) == ("joint", False)


# -- the ViT path ------------------------------------------------------------------------------------

VIT = {"backbone": {"type": "vit", "name": "vit_small_patch14_dinov2", "blocks": 1},
       "neck": {"type": "simple_pyramid", "channels": 16}, "head": {"channels": 16}, "search_size": [128, 96]}


def test_vit_backbone_with_the_simple_pyramid():
    cfg = parse_params({"model": VIT}).model
    assert cfg.search_size == (128, 96)
    model = build_detector(cfg)
    assert len(model.backbone.body.blocks) == 1 and model.backbone.strides == [16]
    assert model.neck.strides == [4, 8] and model.stride == 4 and model.pad_multiple == 16
    templates, search = torch.rand(2, 2, 3, 32, 32), torch.rand(2, 3, 96, 128)  # search_size is W, H
    out = model(templates, search)
    assert out["logits"].shape == (2, 24, 32) and out["boxes"].shape == (2, 24 * 32, 4)
    crit = build_criterion(TrainConfig(), model)
    terms = crit(out, {"boxes": torch.tensor([[30.0, 20, 70, 60], [NAN] * 4])})
    weighted_total(terms, {"focal": 1, "l1": 5, "iou": 2}).backward()
    assert model.backbone.body.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.backbone.body.patch_embed.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.neck.parameters())


def test_vit_with_lora_trains_only_the_adapters_of_the_backbone():
    raw = {**VIT, "backbone": {**VIT["backbone"], "lora": {"rank": 4, "targets": ["qkv"]}}}
    model = build_detector(parse_params({"model": raw}).model)
    trainable = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert trainable == ["body.blocks.0.attn.qkv.lora_A.default.weight", "body.blocks.0.attn.qkv.lora_B.default.weight"]
    assert all(p.requires_grad for p in model.neck.parameters()) and all(p.requires_grad for p in model.head.parameters())
    out = model(torch.rand(1, 2, 3, 32, 32), torch.rand(1, 3, 96, 128))
    out["logits"].sigmoid().mean().backward()
    assert model.backbone.body.blocks[0].attn.qkv.lora_B.default.weight.grad.abs().sum() > 0  # lora_A: B starts at 0
    assert all(p.grad is None for n, p in model.backbone.named_parameters() if "lora_" not in n)
