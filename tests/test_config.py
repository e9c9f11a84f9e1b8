"""params.yaml loader: defaults, the repo's params.yaml, and clear errors naming the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline.config import ConfigError, Params, load_params, parse_params, to_flat_dict

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_parse_and_match_declared_keys():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.model.fusion.type in ("attention", "average")
    assert params.train.iou_type in ("iou", "giou", "diou", "ciou")
    assert params.model.correlation.kernel >= 1


def test_params_are_frozen():
    params = parse_params({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.train.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"train": {"iou_type": "cio"}}, "train.iou_type: 'cio' is not one of iou, giou, diou, ciou"),
        ({"model": {"fusion": {"type": "max"}}}, "model.fusion.type: 'max' is not one of attention, average"),
        ({"model": {"fusion": "max"}}, "model.fusion: expected a mapping with type:"),
        ({"model": {"correlation": {"kernel": 0}}}, "model.correlation.kernel: 0 is out of range, must be >= 1"),
        ({"model": {"correlation": {"kernel": 2.5}}}, "model.correlation.kernel: expected an integer"),
        ({"model": {"head": {"type": "joint", "gate": "and"}}}, "model.head.gate: unknown key"),
        ({"model": {"similarities": {"texture": {}}}}, "model.similarities.texture.type: 'texture' is not one of"),
        ({"model": {"backbone": {"lora": {"rank": -1}}}}, "model.backbone.lora.rank: -1 is out of range"),
        ({"train": {"lr": "fast"}}, "train.lr: expected a number"),
        ({"train": {"lr": 0}}, "train.lr: 0.0 is out of range, must be > 0.0"),
        ({"train": {"epochs": True}}, "train.epochs: expected an integer"),
        ({"train": {"resume": "yes"}}, "train.resume: expected true or false"),
        ({"trian": {}}, "trian: unknown key"),
        ({"train": {"loss_weights": {"giou": 1}}}, "train.loss_weights.giou: unknown key"),
        ({"data": {"demo": {"val_objects": 0}}}, "data.demo.val_objects: 0 is out of range"),
        ({"data": {"on_error": "ignore"}}, "data.on_error: 'ignore' is not one of raise, skip"),
        ({"model": {"levels": [3, 2]}}, "model.levels: [3, 2] must be strictly increasing"),
        ({"model": {"levels": []}}, "model.levels: must not be empty"),
        ({"model": {"search_size": [1024]}}, "model.search_size: expected 2 values"),
        ({"model": {"backbone": {"pretrained": 1}}}, "model.backbone.pretrained: 1 is not true/false or a string"),
        ({"train": {"lr": 1e-4, "min_lr": 1e-3}}, "train.min_lr"),
        ({"train": 5}, "train: expected a mapping"),
        ({"evaluate": {"score_threshold": "auto"}}, "evaluate.score_threshold: 'auto' is not a number or one of calibrated"),
        ({"evaluate": {"score_threshold": 1.5}}, "evaluate.score_threshold: 1.5 is out of range, must be <= 1.0"),
        ({"evaluate": {"score_threshold": True}}, "evaluate.score_threshold: True is not a number or one of calibrated"),
        ({"train": {"presence_metric": "ap"}}, "train.presence_metric: 'ap' is not one of f1, st_iou"),
    ],
)
def test_bad_values_name_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert message in str(err.value)


def test_load_params_names_the_file_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: [1,\n")
    with pytest.raises(ConfigError, match=r"params\.yaml: line \d+ is not valid YAML"):
        load_params(path)
    path.write_text("train:\n  iou_type: cio\n")
    with pytest.raises(ConfigError, match=r"params\.yaml: train\.iou_type"):
        load_params(path)
    with pytest.raises(ConfigError, match="cannot read params file"):
        load_params(tmp_path / "missing.yaml")


def test_partial_sections_fill_defaults_and_flatten():
    params = parse_params({"model": {"fusion": {"type": "average"}}, "train": {"loss_weights": {"l1": 3}}})
    assert params.model.fusion.type == "average"
    assert params.model.correlation.kernel == parse_params({}).model.correlation.kernel
    flat = to_flat_dict(params)
    assert flat["model.fusion.type"] == "average"
    assert flat["model.similarities.colour.bins"] == 8
    assert flat["train.loss_weights.l1"] == 3.0
    assert flat["model.levels"] == list(params.model.levels)


def test_amp_off_unquoted_is_the_string_off(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  amp: off\n  augment: false\nevaluate:\n  amp: 'off'\n")
    params = load_params(path)
    assert params.train.amp == "off" and params.evaluate.amp == "off" and params.train.augment is False


def test_yaml_11_false_for_an_amp_setting_is_off():
    # A caller that read the file with PyYAML alone hands over False for ``off``.
    assert parse_params({"train": {"amp": False}}).train.amp == "off"
    with pytest.raises(ConfigError, match="train.amp: True is not one of"):
        parse_params({"train": {"amp": True}})


def test_yaml_11_words_are_not_booleans(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  resume: yes\n")
    with pytest.raises(ConfigError, match="train.resume: expected true or false, got 'yes'"):
        load_params(path)


def test_dvc_set_param_rewrite_keeps_amp_off_loadable(tmp_path):
    """``dvc exp run -S`` rewrites params.yaml with DVC's own YAML 1.2 writer, which drops the
    quotes around ``"off"``; the file must still load, with the override applied."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text().replace("  amp: auto ", '  amp: "off" ', 1))
    assert load_params(path).train.amp == "off"
    apply_overrides(path, ["train.iou_type=ciou"])
    assert "amp: off" in path.read_text()  # the quotes are gone, as in a real experiment
    params = load_params(path)
    assert params.train.amp == "off" and params.train.iou_type == "ciou"


def test_freeze_through_level_must_leave_a_level_to_train():
    assert parse_params({"train": {"freeze_through_level": 2}, "model": {"levels": [2, 3]}}).train.freeze_through_level == 2
    with pytest.raises(ConfigError, match="train.freeze_through_level: 4 is above the deepest of model.levels"):
        parse_params({"train": {"freeze_through_level": 4}, "model": {"levels": [2, 3]}})


def test_params_yaml_is_the_code_defaults_written_out():
    # one place decides a default: the dataclasses; params.yaml lists them, docs/params.md too (test_docs)
    from pipeline.config import Params

    assert load_params(Path(__file__).resolve().parents[1] / "params.yaml") == Params()


def test_a_part_keeps_its_type_and_round_trips_through_to_raw():
    from pipeline.config import to_raw

    model = parse_params({"model": {"head": {"type": "joint", "search_features": False},
                                    "similarities": {"colour": {"bins": 4}}}}).model
    assert type(model.head).__name__ == "JointHeadConfig" and model.head.search_features is False
    assert [s.type for s in model.similarities] == ["colour"]
    assert parse_params({"model": to_raw(model)}).model == model
    assert parse_params({"model": {"similarities": None}}).model.similarities == ()


def test_score_threshold_is_calibrated_or_a_number():
    assert parse_params({}).evaluate.score_threshold == "calibrated"
    assert parse_params({"evaluate": {"score_threshold": "calibrated"}}).evaluate.score_threshold == "calibrated"
    assert parse_params({"evaluate": {"score_threshold": 0.45}}).evaluate.score_threshold == 0.45
    assert parse_params({"evaluate": {"score_threshold": 0}}).evaluate.score_threshold == 0.0
    assert parse_params({"train": {"presence_metric": "st_iou"}}).train.presence_metric == "st_iou"
