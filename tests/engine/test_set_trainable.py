"""The trainer's backbone switch (freeze_backbone_epochs) never wakes layers frozen for good."""

from pipeline.config import ModelConfig
from pipeline.detector import build_detector
from pipeline.engine.trainer import set_backbone_trainable


def test_unfreezing_the_backbone_keeps_the_frozen_layers_frozen():
    model = build_detector(ModelConfig(backbone="convnext_atto", levels=(2, 3), fpn_channels=16, head_channels=16))
    frozen = model.backbone.freeze_through(2)
    set_backbone_trainable(model, False, frozen)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    set_backbone_trainable(model, True, frozen)
    for name, p in model.backbone.body.named_parameters():
        assert p.requires_grad == (name.split(".")[0] not in frozen), name
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("backbone."))
