"""The whole pipeline for real: `dvc repro` of all stages in a temp git repo, then `mlflow server`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.pipeline_repo import dvc, env, make_pipeline_repo, run

pytestmark = pytest.mark.slow

STAGES = ("prepare", "resize_templates", "train", "evaluate", "baseline", "report")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = make_pipeline_repo(tmp_path_factory.mktemp("pipeline") / "repo")
    # system metrics every second (MLflow's default, 10 s, is about as long as the tiny training)
    out = run([sys.executable, "-m", "dvc", "repro"], root, extra_env={"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"})
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out.stdout, stage
    return root


def test_repro_writes_the_report_with_every_section(repo):
    text = (repo / "reports/metrics.md").read_text()
    for heading in ("## Learned model vs classical baseline", "## Change against", "## Ablations", "## Per object", "## Per size", "## Figures"):
        assert heading.lower() in text.lower(), heading
    for figure in ("pr_curve.png", "train_curve.png", "gallery.png"):
        assert (repo / "reports/figures" / figure).is_file(), figure
        assert f"figures/{figure}" in text
    model = json.loads((repo / "reports/evaluate/metrics.json").read_text())
    baseline = json.loads((repo / "reports/baseline/metrics.json").read_text())
    assert model["frames"] == baseline["frames"] > 0
    shown = dvc(repo, "metrics", "show", "--json").stdout
    assert "reports/evaluate/metrics.json" in shown and "reports/train_metrics.json" in shown
    again = dvc(repo, "repro")
    assert not any(f"Running stage '{stage}'" in again.stdout for stage in STAGES)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_mlflow_server_shows_the_run_as_a_user_expects(repo):
    """``mlflow server`` on the repro's store, through its REST API (what ``mlflow ui`` shows): the
    run's name and tags, params, metrics without settings, system metrics, datasets, model, artifacts."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{repo / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=repo, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not come up: {server.stderr.read()[-2000:] if server.poll() is not None else 'timeout'}")
            time.sleep(1)
        experiment = _api(base, "experiments/get-by-name?experiment_name=needle")["experiment"]
        runs = _api(base, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
        assert len(runs) == 1
        info, data = runs[0]["info"], runs[0]["data"]
        assert info["status"] == "FINISHED"
        tags = {t["key"]: t["value"] for t in data["tags"]}
        head = run(["git", "rev-parse", "--short=7", "HEAD"], repo).stdout.strip()
        dirty = tags["git_dirty"]
        assert dirty in ("true", "false")
        assert info["run_name"].startswith(f"{head}-dirty-" if dirty == "true" else f"{head}-")
        assert tags["eval.iou_threshold"] == "0.5" and int(tags["eval.frames"]) > 0  # settings: tags
        params = {p["key"]: p["value"] for p in data["params"]}
        metrics = {m["key"] for m in data["metrics"]}
        assert params["model.fusion.type"] == "attention" and params["train.iou_type"] == "giou"
        assert {"train_loss", "val_AP50", "eval_AP50", "eval_success", "eval_ms_per_frame"} <= metrics
        assert not {"eval_iou_threshold", "eval_frames", "eval_score_threshold"} & metrics
        assert any(m.startswith("system/cpu_utilization_percentage") for m in metrics), sorted(metrics)
        datasets = {d["dataset"]["name"]: {t["key"]: t["value"] for t in d["tags"]}
                    for d in runs[0]["inputs"]["dataset_inputs"]}
        assert datasets["manifest-train"]["mlflow.data.context"] == "training"
        assert datasets["manifest-val"]["mlflow.data.context"] == "validation"
        models = _api(base, "logged-models/search", {"experiment_ids": [experiment["experiment_id"]]})["models"]
        assert [(m["info"]["name"], m["info"]["source_run_id"]) for m in models] == [("detector", info["run_id"])]
        assert runs[0]["outputs"]["model_outputs"][0]["model_id"] == models[0]["info"]["model_id"]
        assert info["artifact_uri"].removeprefix("file://").startswith(str(repo / "mlartifacts"))
        listed = _api(base, f"artifacts/list?run_id={info['run_id']}&path=evaluate")["files"]
        names = {f["path"].removeprefix("evaluate/") for f in listed}
        assert {"per_object.json", "sequences.json", "pr_curve.png", "outcomes.png", "gallery.png",
                 "metrics.json"} <= names
    finally:
        server.terminate()
        server.wait(timeout=30)
