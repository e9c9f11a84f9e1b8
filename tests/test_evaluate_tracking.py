"""What ``evaluate`` adds to the training's MLflow run: metrics, settings as tags, tables, figures."""

from __future__ import annotations

import json

import numpy as np

from pipeline.data.frames import Sample
from pipeline.engine.tracking import Tracker
from pipeline.evaluate import SETTING_KEYS, log_to_training_run
from pipeline.io import write_json
from pipeline.metrics.scoring import score_detections
from pipeline.paths import ScoredOutputs


def _scored():
    box = (10.0, 10.0, 30.0, 30.0)
    samples = [Sample(f"f{i}.jpg", "obj", "seq", i, box if i < 3 else None, ("r.jpg",), 100, 100) for i in range(5)]
    hit, elsewhere = np.array([[10, 10, 30, 30]], float), np.array([[60, 60, 80, 80]], float)
    detections = [(hit, np.array([0.9])), (elsewhere, np.array([0.8])), (hit, np.array([0.1])),
                  (elsewhere, np.array([0.7])), (np.zeros((0, 4)), np.zeros(0))]
    return score_detections(samples, detections, score_threshold=0.5, iou_threshold=0.5)


def test_evaluate_results_land_in_the_training_run(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    training = Tracker(uri)
    run_id = training.start("trained", {"train.lr": 0.1}, {})
    training.end()
    (tmp_path / "run.json").write_text(json.dumps({"run_id": run_id, "tracking_uri": uri}))
    scores, out = _scored(), ScoredOutputs(tmp_path / "reports" / "evaluate")
    write_json(out.metrics, scores.summary)  # the other output files are absent: skipped

    log_to_training_run(tmp_path / "run.json", {"eval": (scores, out)}, {"evaluate.amp.resolved": "fp32"})

    client = mlflow.tracking.MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["eval_success"] == scores.summary["success"]
    assert run.data.metrics["eval_fp_rate"] == 0.5  # one of the two absent frames got an answer
    assert not {f"eval_{k}" for k in SETTING_KEYS} & set(run.data.metrics)
    assert run.data.tags["eval.frames"] == "5" and run.data.tags["eval.iou_threshold"] == "0.5"
    assert run.data.tags["evaluate.amp.resolved"] == "fp32"
    files = {f.path for f in client.list_artifacts(run_id, "evaluate")}
    assert files == {f"evaluate/{n}" for n in ("per_object.json", "sequences.json", "pr_curve.png", "outcomes.png",
                                               "metrics.json")}
    table = mlflow.load_table("evaluate/per_object.json", run_ids=[run_id])
    assert table["object_id"].tolist() == ["obj"] and table["frames"].tolist() == [5]
