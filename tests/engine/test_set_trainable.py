"""Freezing backbone layers for good, and the trainer's backbone switch (freeze_backbone_epochs)
never waking them."""

import pytest

from pipeline.config import ConfigError
from pipeline.detector import build_detector
from pipeline.engine.trainer import build_optimizer, freeze_backbone, set_backbone_trainable
from tests.models import model_config


def test_unfreezing_the_backbone_keeps_the_frozen_layers_frozen():
    model = build_detector(model_config())
    frozen = model.backbone.freeze_through(2)
    set_backbone_trainable(model, False, frozen)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    set_backbone_trainable(model, True, frozen)
    for name, p in model.backbone.body.named_parameters():
        assert p.requires_grad == (name.split(".")[0] not in frozen), name
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("backbone."))


def test_a_level_the_backbone_has_no_layer_for_names_the_key_and_what_it_has():
    model = build_detector(model_config())
    assert freeze_backbone(model, 0) == []
    with pytest.raises(ConfigError, match=r"train.freeze_through_level: backbone 'convnext_atto' has no layer of "
                                          r"level 1 among the ones it runs \(levels 2, 3\)"):
        freeze_backbone(model, 1)
    assert all(p.requires_grad for p in model.parameters())  # nothing half-frozen
    assert freeze_backbone(model, 2) == ["stem_0", "stem_1", "stages_0"]


def test_lora_adapters_are_all_that_trains_and_the_base_stays_out_of_the_optimiser():
    model = build_detector(model_config(backbone={"lora": {"rank": 2, "targets": ["mlp.fc1"]}}))
    set_backbone_trainable(model, True)
    learning = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert learning and all("lora_" in n for n in learning)
    optimizer = build_optimizer(model, 1e-3, 0.1, 1e-4)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    base = [p for n, p in model.backbone.named_parameters() if "lora_" not in n]
    assert not any(id(p) in in_optimizer for p in base)
    assert all(id(p) in in_optimizer for n, p in model.backbone.named_parameters() if "lora_" in n)
