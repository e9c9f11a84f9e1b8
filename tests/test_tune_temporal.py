"""``python -m pipeline.tune_temporal``: the coordinate search, the grid option, and a real run on
a generated val split with a tiny untrained checkpoint."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch
import yaml

from pipeline import prepare, resize_templates
from pipeline.cli import UserError
from pipeline.config import TrackConfig, parse_params, to_raw
from pipeline.detector import build_detector
from pipeline.engine.checkpoint import save_checkpoint
from pipeline.tune_temporal import DEFAULT_GRID, adopt_command, coordinate_search, main, parse_grid, tried_table
from tests.models import model_config


class Bowl:
    """A score with its peak at switch_cost 2, score_weight 1, max_gap 3; counts its calls."""

    def __init__(self) -> None:
        self.tried: dict[TrackConfig, float] = {}

    def __call__(self, cfg: TrackConfig) -> float:
        value = -((cfg.switch_cost - 2) ** 2) - (cfg.score_weight - 1) ** 2 - 0.1 * (cfg.max_gap - 3) ** 2
        self.tried[cfg] = value
        return value


def test_coordinate_search_finds_the_peak_of_a_separable_score() -> None:
    score = Bowl()
    grid = {"switch_cost": (0.0, 1.0, 2.0, 4.0), "score_weight": (0.5, 1.0, 2.0), "max_gap": (0, 3, 7)}
    best = coordinate_search(score, TrackConfig(switch_cost=0.0, score_weight=2.0, max_gap=7), grid)  # type: ignore[arg-type]
    assert (best.switch_cost, best.score_weight, best.max_gap) == (2.0, 1.0, 3)
    assert len(score.tried) < 4 * 3 * 3  # one key at a time, not the full product


def test_coordinate_search_keeps_the_start_on_ties() -> None:
    start = TrackConfig(switch_cost=1.0)
    assert coordinate_search(lambda cfg: 0.0, start, {"switch_cost": (0.0, 4.0)}) == start  # type: ignore[arg-type]


def test_parse_grid_replaces_one_key_and_names_bad_input() -> None:
    grid = parse_grid(["switch_cost=0,2.5", "min_segment=1,10"])
    assert grid["switch_cost"] == (0, 2.5) and grid["min_segment"] == (1, 10)
    assert grid["motion_weight"] == DEFAULT_GRID["motion_weight"]
    with pytest.raises(UserError, match="'speed' is not one of"):
        parse_grid(["speed=1"])
    with pytest.raises(UserError, match="temporal.track.switch_cost"):
        parse_grid(["switch_cost=-1"])
    with pytest.raises(UserError, match="expected KEY=V1,V2"):
        parse_grid(["switch_cost"])


def test_adopt_command_sets_only_what_changed() -> None:
    base = TrackConfig()
    tuned = dataclasses.replace(base, switch_cost=4.0, min_segment=12)
    assert adopt_command(tuned, base) == ("dvc exp run -n tuned-temporal -S temporal.track.switch_cost=4.0 "
                                          "-S temporal.track.min_segment=12")
    assert "already" in adopt_command(base, base)


def test_tried_table_is_sorted_best_first() -> None:
    tried = {TrackConfig(switch_cost=0.0): 0.2, TrackConfig(switch_cost=1.0): 0.7, TrackConfig(switch_cost=2.0): 0.5}
    table = tried_table(tried, ["switch_cost"])
    assert table["switch_cost"].tolist() == [1.0, 2.0, 0.0]
    assert list(table.columns) == ["switch_cost", "st_iou"]


def test_main_tunes_on_the_val_split_and_writes_the_chosen_values(tmp_path, monkeypatch, capsys) -> None:
    work = tmp_path / "work"
    (work / "models").mkdir(parents=True)
    params = {"data": {"demo": {"train_objects": 1, "val_objects": 2, "val_frames_per_sequence": 8,
                                "template_size": 64, "distractors": 1, "absence": "stretches"}},
              "templates": {"size": 32, "workers": 1}, "realset": {"enabled": False},
              "evaluate": {"score_threshold": 0.005}}
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(work)
    prepare.main()
    resize_templates.main()
    torch.manual_seed(0)
    tiny = model_config(search_size=[128, 96])
    save_checkpoint(work / "models" / "best.pt", {"model": build_detector(tiny).state_dict(),
                                                  "model_config": to_raw(tiny), "template_size": 32, "epoch": 0})
    out = tmp_path / "tuning"
    main(["--out", str(out), "--grid", "switch_cost=0,1,3", "--grid", "min_segment=1,4"])
    command = capsys.readouterr().out.strip()
    tried = pd.read_csv(out / "temporal.csv")
    assert len(tried) >= 3 and tried["st_iou"].is_monotonic_decreasing
    assert tried["st_iou"].between(0, 1).all()
    chosen = parse_params(yaml.safe_load((out / "temporal.yaml").read_text())).temporal.track
    best = tried.iloc[0]
    assert (chosen.switch_cost, chosen.min_segment) == (best["switch_cost"], best["min_segment"])
    assert command.startswith("dvc exp run") or "already" in command
