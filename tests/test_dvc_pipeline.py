"""Real DVC in a temp git repo: stages run, a second repro is a no-op, a change re-runs only its stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.config import parse_params, to_flat_dict
from pipeline.paths import Paths
from tests.pipeline_repo import REPO, dvc, make_pipeline_repo, set_params


def _ran(output: str, stage: str) -> bool:
    return f"Running stage '{stage}'" in output


def test_dvc_yaml_paths_agree_with_pipeline_paths():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    paths = Paths()
    outs = {name: [next(iter(o)) if isinstance(o, dict) else o for o in s.get("outs", [])] for name, s in stages.items()}
    metrics = {name: [next(iter(m)) if isinstance(m, dict) else m for m in s.get("metrics", [])] for name, s in stages.items()}
    assert str(paths.prepared) in outs["prepare"]
    assert str(paths.data_stats) in metrics["prepare"]
    assert str(paths.templates) in outs["resize_templates"]
    assert str(paths.models) in outs["train"]
    # the trained detector is a DVC artifact (model registry), inside the train stage's output
    artifact = yaml.safe_load((REPO / "dvc.yaml").read_text())["artifacts"]["detector"]
    assert artifact["type"] == "model" and artifact["path"] == str(paths.models / "best.pt")
    assert str(paths.evaluation.points_lost) in outs["evaluate"] and str(paths.evaluation.points_lost_summary) in outs["evaluate"]
    assert str(paths.train_metrics) in metrics["train"]
    assert {str(paths.train_plots), str(paths.val_plots)} <= set(outs["train"])
    # the model's metrics are DVC metrics; the baseline's are the same in every experiment: a plain output
    assert str(paths.evaluation.metrics) in metrics["evaluate"] and str(paths.baseline.metrics) in outs["baseline"]
    for scored, stage in ((paths.evaluation, "evaluate"), (paths.baseline, "baseline")):
        for path in (scored.per_object, scored.per_size, scored.frames, scored.predictions, scored.reliability,
                     scored.gallery, scored.pr_curve, scored.score_hist):
            assert str(path) in outs[stage]
        for path in (scored.reliability, scored.frames):
            assert str(path) in stages["report"]["deps"]
    assert str(paths.run_table) in stages["report"]["deps"]
    assert str(paths.realset) in outs["realset"] and str(paths.realset) in stages["evaluate"]["deps"]
    assert str(paths.realset_evaluation.folder) in outs["evaluate"]
    assert str(paths.realset_evaluation.folder) in stages["report"]["deps"]
    assert {str(paths.report), str(paths.figures)} <= set(outs["report"])
    for name, stage in stages.items():
        assert stage["cmd"] == f"python -m pipeline.{name}"
        assert f"pipeline/{name}.py" in stage["deps"]
        for dep in stage["deps"]:
            if dep.startswith(("data/", "models", "reports/")):
                continue  # outputs of earlier stages
            assert (REPO / dep).exists(), f"dvc.yaml stage {name}: dep {dep} does not exist"


@pytest.mark.parametrize(
    "stage, sections, extra",
    [
        ("prepare", ("data",), ("realset.source",)),
        ("resize_templates", ("templates",), ()),
        ("train", ("model", "train"), ("templates.size", "templates.pad", "templates.pad_value")),
        ("realset", ("realset",), ()),
        ("evaluate", ("evaluate", "temporal"), ("templates.pad", "templates.pad_value", "templates.workers",
                                                "templates.jpeg_quality", "data.on_error", "data.frame_stride")),
        ("baseline", ("baseline",), ("evaluate.iou_threshold", "evaluate.gallery_frames")),
        ("report", ("report",), ()),
    ],
)
def test_each_stage_lists_exactly_the_params_it_reads(stage, sections, extra):
    listed = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["params"]
    flat = to_flat_dict(parse_params({}))
    # a whole section may be listed (model: its parts' keys depend on their types)
    expanded = [k for entry in listed for k in ([f for f in flat if f.split(".")[0] == entry] or [entry])]
    expected = [k for k in flat if k.split(".")[0] in sections] + list(extra)
    assert sorted(expanded) == sorted(expected)


@pytest.mark.slow
def test_data_stages_repro_noop_and_partial_rerun(tmp_path):
    root = make_pipeline_repo(tmp_path / "repo")
    first = dvc(root, "repro", "resize_templates")
    assert _ran(first.stdout, "prepare") and _ran(first.stdout, "resize_templates")
    assert (root / "data/prepared/manifest.csv").is_file()
    assert (root / "data/templates/templates.csv").is_file()
    stats = json.loads((root / "data/stats.json").read_text())
    assert stats  # declared as DVC metrics
    shown = dvc(root, "metrics", "show", "--json")
    assert "data/stats.json" in shown.stdout

    second = dvc(root, "repro", "resize_templates")
    assert not _ran(second.stdout, "prepare") and not _ran(second.stdout, "resize_templates")

    set_params(root, {"templates": {"size": 48}})
    third = dvc(root, "repro", "resize_templates")
    assert not _ran(third.stdout, "prepare")
    assert _ran(third.stdout, "resize_templates")
    from PIL import Image

    assert Image.open(next((root / "data/templates").rglob("*.jpg"))).size == (48, 48)


@pytest.mark.parametrize("stage", ["prepare", "resize_templates", "realset", "train", "evaluate", "baseline",
                                   "report"])
def test_each_stage_lists_every_pipeline_module_it_imports(stage):
    """Run the stage module's imports in a fresh interpreter and check dvc.yaml covers them."""
    import json
    import subprocess
    import sys

    code = (
        f"import json, sys; import pipeline.{stage}; "
        "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() "
        "if n.startswith('pipeline') and getattr(m, '__file__', None))))"
    )
    files = json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout)
    deps = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["deps"]
    for path in files:
        rel = str(Path(path).relative_to(REPO))
        if rel.endswith("__init__.py") and "import" not in Path(path).read_text():
            continue  # a package marker with only a docstring cannot change what a stage does
        assert any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps), f"{stage}: {rel} missing from deps"


def test_plots_are_top_level_with_x_and_y_and_stages_draw_none():
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert not any("plots" in stage for stage in dvc_yaml["stages"].values())  # no default all-columns charts
    paths = Paths()
    data_plots = {}
    images = []
    for entry in dvc_yaml["plots"]:
        if isinstance(entry, str):
            images.append(entry)
            continue
        (title, spec), = entry.items()
        assert "x" in spec and "y" in spec, title
        data_plots[title] = spec
    validation = next(spec for title, spec in data_plots.items() if title.startswith("Validation"))
    assert list(validation["y"]) == [str(paths.val_plots)]  # validated epochs only, no empty cells
    assert sorted(images) == sorted(f"{paths.figures}/{name}" for name in
                                    ("train_curve.png", "pr_curve.png", "reliability.png", "gallery.png"))


def test_the_documented_short_exp_show_runs_and_is_short(tmp_path):
    """The `dvc exp show` command of docs/reports.md, on a real repo: the four headline metrics, no other column."""
    import re
    import shlex

    doc = (REPO / "docs" / "reports.md").read_text()
    block = re.search(r"```bash\n(python -m dvc exp show [^`]*?)```", doc).group(1)
    args = shlex.split(block.replace("\\\n", " "))[3:]  # after `python -m dvc`
    root = make_pipeline_repo(tmp_path / "repo")
    metrics = root / "reports" / "evaluate" / "metrics.json"
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps({"AP": 0.4, "AP50": 0.7, "success": 0.76, "fp_rate": 0.7, "st_iou": 0.53,
                                   "precision": 0.64, "frames": 96}))
    (root / "reports" / "train_metrics.json").write_text(json.dumps({"amp_dtype": "fp32", "epochs": 10}))
    shown = dvc(root, *args, "--csv").stdout.splitlines()
    columns = shown[0].split(",")
    assert columns[:2] == ["Experiment", "Created"] and sorted(columns[2:]) == ["AP50", "fp_rate", "st_iou", "success"]
