"""``python -m pipeline.ablate``: the queued grid's commands, its validation, and (slow) a real
queue of 2 experiments run by 2 parallel workers that both land in MLflow, ``dvc exp show`` and
the report's ablation table."""

from __future__ import annotations

import json
import sys

import mlflow
import pytest

from pipeline.ablate import DEFAULT_GRID, Study, main, parse_args, queue_command, study_from_args
from pipeline.cli import UserError
from pipeline.config import ConfigError
from pipeline.paths import Paths
from tests.pipeline_repo import REPO, dvc, make_pipeline_repo, run


def test_default_study_is_the_issue_grid_in_one_queue_command():
    study = study_from_args(parse_args([]))
    assert study.grid == DEFAULT_GRID and study.size == 16
    assert queue_command(study)[1:] == [
        "-m", "dvc", "exp", "run", "--queue", "-S", "model.fusion.type=attention,average", "-S", "model.correlation.kernel=1,3",
        "-S", "train.iou_type=giou,ciou", "-S", "train.seed=0,1"]


def test_options_narrow_the_grid_and_fix_params():
    study = study_from_args(parse_args(["--fusion", "average", "--seeds", "0", "1", "1", "--epochs", "3",
                                        "-S", "train.max_samples=8"]))
    assert study.size == 1 * 2 * 2 * 2  # a seed given twice is queued once
    assert study.set_params()[-2:] == ["train.max_samples=8", "train.epochs=3"]


def test_mistakes_are_one_line_naming_the_key(capsys):
    paths = Paths(REPO)
    with pytest.raises(ConfigError, match=r"params.yaml with .*train.iou_type=cio.*'cio' is not one of iou"):
        main(["--iou-type", "cio", "--dry-run"], paths)
    with pytest.raises(ConfigError, match="train.epochs_: unknown key"):
        main(["-S", "train.epochs_=3", "--dry-run"], paths)
    with pytest.raises(UserError, match="--set train.seed: that key is swept"):
        main(["-S", "train.seed=3", "--dry-run"], paths)
    with pytest.raises(UserError, match="space-separated"):
        main(["--fusion", "attention,average", "--dry-run"], paths)
    with pytest.raises(SystemExit):
        parse_args(["--jobs", "0"])
    main(["--dry-run", "--jobs", "3"], paths)  # prints, runs nothing
    out = capsys.readouterr().out
    assert "16 experiments" in out and "python -m dvc queue start -j 3" in out


@pytest.mark.slow
def test_queue_runs_two_experiments_into_mlflow_dvc_and_the_report(tmp_path):
    """Tiny params, 1 epoch: 2 experiments (fusion attention, average), 2 workers at once."""
    root = make_pipeline_repo(tmp_path / "repo")
    out = run([sys.executable, "-m", "pipeline.ablate", "--fusion", "attention", "average", "--corr-kernel", "1",
               "--iou-type", "giou", "--seeds", "0", "--jobs", "2", "--run"], root)
    assert "2 experiments" in out.stdout and "--queue -S model.fusion.type=attention,average" in out.stdout

    shown = json.loads(dvc(root, "exp", "show", "--json").stdout)
    exps = {e["name"]: e for rev in shown for e in (rev.get("experiments") or [])}
    names = {name for name, e in exps.items() if e.get("revs")}
    assert len(names) == 2, shown

    client = mlflow.tracking.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")  # the main repo's store
    runs = client.search_runs([client.get_experiment_by_name("needle").experiment_id])
    assert sorted(r.data.params["model.fusion.type"] for r in runs) == ["attention", "average"]
    assert {r.info.run_name for r in runs} == names  # MLflow runs named after the DVC experiments
    assert all("eval_AP50" in r.data.metrics for r in runs)  # evaluate wrote to the same runs

    dvc(root, "exp", "apply", sorted(names)[0])
    run([sys.executable, "-m", "pipeline.report"], root)
    report = (root / "reports/metrics.md").read_text()
    table = report.split("## Ablations (MLflow runs)", 1)[1].split("\n## ", 1)[0]
    assert "2 runs with evaluate metrics" in table
    # columns: model.head.type, model.refine.type, then the fusion under study
    rows = [line.split(" | ")[2] for line in table.splitlines() if line.startswith("| factorized | none |")]
    assert sorted(rows) == ["attention", "average"], table


def test_study_size_counts_every_combination():
    assert Study({"a": ("1", "2", "3"), "b": ("x",)}).size == 3
