"""Freezing backbone layers for good, and the trainer's backbone switch (freeze_backbone_epochs)
never waking them."""

import pytest

from pipeline.config import ConfigError, ModelConfig
from pipeline.detector import build_detector
from pipeline.engine.trainer import freeze_backbone, set_backbone_trainable


def test_unfreezing_the_backbone_keeps_the_frozen_layers_frozen():
    model = build_detector(ModelConfig(backbone="convnext_atto", levels=(2, 3), fpn_channels=16, head_channels=16))
    frozen = model.backbone.freeze_through(2)
    set_backbone_trainable(model, False, frozen)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    set_backbone_trainable(model, True, frozen)
    for name, p in model.backbone.body.named_parameters():
        assert p.requires_grad == (name.split(".")[0] not in frozen), name
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("backbone."))


def test_a_level_the_backbone_has_no_layer_for_names_the_key_and_what_it_has():
    model = build_detector(ModelConfig(backbone="convnext_atto", levels=(2, 3), fpn_channels=16, head_channels=16))
    assert freeze_backbone(model, 0) == []
    with pytest.raises(ConfigError, match=r"train.freeze_through_level: backbone 'convnext_atto' has no layer of "
                                          r"level 1 among the ones it runs \(levels 2, 3\)"):
        freeze_backbone(model, 1)
    assert all(p.requires_grad for p in model.parameters())  # nothing half-frozen
    assert freeze_backbone(model, 2) == ["stem_0", "stem_1", "stages_0"]
