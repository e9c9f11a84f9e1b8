"""The train stage for real: tiny demo data, real timm model, real MLflow (SQLite), real DVC, real DDP."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch

from pipeline.engine.amp import resolve_precision
from pipeline.engine.cpu import cpu_info
from tests.pipeline_repo import dvc, make_pipeline_repo, run, set_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_repo(tmp_path_factory):
    """A repo whose two data stages have run once (copied by each test that trains)."""
    root = make_pipeline_repo(tmp_path_factory.mktemp("train") / "base", {"train": {"epochs": 2}})
    dvc(root, "repro", "resize_templates")
    return root


def _copy(data_repo, tmp_path):
    dst = tmp_path / "repo"
    shutil.copytree(data_repo, dst, symlinks=True)
    return dst


def _train(root, extra_env=None, check=True):
    return run([sys.executable, "-m", "pipeline.train"], root, check=check, extra_env=extra_env)


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_train_writes_outputs_and_an_mlflow_run(data_repo, tmp_path):
    import mlflow

    root = _copy(data_repo, tmp_path)
    out = _train(root, {"DVC_EXP_NAME": "tiny-exp"})
    assert "failed during" not in out.stderr, out.stderr[-3000:]
    for name in ("models/last.pt", "models/best.pt", "models/run.json", "reports/train_metrics.json", "reports/train_curve.csv"):
        assert (root / name).is_file(), name
    metrics = json.loads((root / "reports/train_metrics.json").read_text())
    auto = resolve_precision("auto", torch.device("cpu")).name  # bf16 only on a CPU with native bf16
    assert metrics["epochs"] == 2 and metrics["amp_dtype"] == auto and "precision" not in metrics
    assert "val_AP50" in metrics["best"]
    import pandas as pd

    val_curve = pd.read_csv(root / "reports/val_curve.csv")  # validated epochs only (val_every 2: epoch 1)
    assert val_curve["epoch"].tolist() == [1] and not val_curve.isna().any().any()
    run_info = json.loads((root / "models/run.json").read_text())
    assert run_info["tracking_uri"] == f"sqlite:///{root.resolve() / 'mlflow.db'}"
    got = mlflow.tracking.MlflowClient(run_info["tracking_uri"]).get_run(run_info["run_id"])
    assert got.info.run_name == "tiny-exp"
    assert got.data.params["train.iou_type"] == "giou"
    assert got.data.params["model.fusion.type"] == "attention"
    for key in ("train_loss", "train_focal", "train_l1", "train_iou", "train_lr", "val_AP50", "step_loss", "lr"):
        assert key in got.data.metrics, key
    assert got.data.tags["dvc_exp_name"] == "tiny-exp"
    assert got.data.tags["train.amp.resolved"] == auto
    assert got.data.tags["train.amp.hardware"] == f"cpu: {cpu_info().describe()}"
    assert got.data.tags["git_dirty"] in ("true", "false") and got.data.tags["needle.process"]
    assert got.data.tags["train.register_model"] == "false" and "train.register_model" not in got.data.params
    assert got.info.status == "FINISHED"
    assert got.info.artifact_uri.removeprefix("file://").startswith(f"{root.resolve() / 'mlartifacts'}/")
    _check_presence(root, metrics, got.data.metrics)
    _check_model_and_dataset(run_info["tracking_uri"], got)


def _check_model_and_dataset(uri, run):
    """The run holds best.pt's detector as an MLflow model and the manifest's splits as its datasets."""
    import mlflow

    from pipeline.detector.model import ReferenceDetector

    contexts = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
                for d in run.inputs.dataset_inputs}
    assert set(contexts) == {"training", "validation"}
    assert contexts["training"].name == "manifest-train" and contexts["training"].source_type == "local"
    client = mlflow.tracking.MlflowClient(uri)
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert [(m.name, m.source_run_id) for m in models] == [("detector", run.info.run_id)]
    assert models[0].params["template_size"] == "32" and float(models[0].params["score_threshold"]) > 0
    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model(models[0].model_uri)
    assert isinstance(model, ReferenceDetector)
    info = mlflow.models.get_model_info(models[0].model_uri)
    assert [i["name"] for i in info.signature.inputs.to_dict()] == ["templates", "search"]
    assert info.metadata["template_size"] == 32 and info.metadata["model_config"]["neck"]["channels"] == 16


def _check_presence(root, metrics, mlflow_metrics):
    """best.pt holds the presence threshold chosen on val, the summary and MLflow say the same,
    and the inference API and evaluate use it by default."""
    from pipeline.inference import Detector

    presence = _state(root / "models/best.pt")["presence"]
    assert presence == metrics["presence"]
    assert presence["metric"] == "f1" and presence["epoch"] == metrics["best"]["epoch"]
    assert presence["frames"] > 0 and 0.01 <= presence["score_threshold"] <= 1
    assert mlflow_metrics["presence_score_threshold"] == pytest.approx(presence["score_threshold"])
    assert Detector.from_checkpoint(root / "models/best.pt").score_threshold == presence["score_threshold"]
    assert Detector.from_checkpoint(root / "models/best.pt", score_threshold=0.5).score_threshold == 0.5


def test_killed_run_resumes_to_the_same_model(data_repo, tmp_path):
    straight = _copy(data_repo, tmp_path / "a")
    _train(straight)
    resumed = _copy(data_repo, tmp_path / "b")
    killed = _train(resumed, {"NEEDLE_KILL_AFTER_EPOCH": "0"}, check=False)
    assert killed.returncode != 0  # SIGKILL after epoch 0's checkpoint
    assert _state(resumed / "models/last.pt")["epoch"] == 0
    out = _train(resumed)
    assert "resuming from models/last.pt at epoch 1" in out.stderr
    a, b = _state(straight / "models/last.pt"), _state(resumed / "models/last.pt")
    assert a["epoch"] == b["epoch"] == 1 and a["step"] == b["step"]
    for key, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][key], tensor, rtol=0, atol=0, msg=key)
    # the resumed run chose the same presence threshold; resuming the finished run keeps it, and
    # another presence metric chooses again on the same weights without retraining
    assert _state(resumed / "models/best.pt")["presence"] == _state(straight / "models/best.pt")["presence"]
    again = _train(resumed)
    assert "resuming from models/last.pt at epoch 2" in again.stderr and "presence threshold" not in again.stderr
    set_params(resumed, {"train": {"presence_metric": "st_iou"}})
    st = _train(resumed)
    assert "resuming from models/last.pt at epoch 2" in st.stderr
    presence = _state(resumed / "models/best.pt")["presence"]
    assert presence["metric"] == "st_iou" and 0 <= presence["value"] <= 1
    assert json.loads((resumed / "reports/train_metrics.json").read_text())["presence"] == presence


def test_other_params_do_not_resume(data_repo, tmp_path):
    root = _copy(data_repo, tmp_path)
    _train(root, {"NEEDLE_KILL_AFTER_EPOCH": "0"}, check=False)
    set_params(root, {"train": {"iou_type": "ciou"}})
    out = _train(root)
    assert "trained with other params or data; starting fresh" in out.stderr


def test_unreachable_tracking_store_does_not_stop_training(data_repo, tmp_path):
    root = _copy(data_repo, tmp_path)
    out = _train(root, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    assert "MLflow tracking at http://127.0.0.1:9 failed" in out.stderr
    assert (root / "models/last.pt").is_file()
    assert json.loads((root / "reports/train_metrics.json").read_text())["steps"] > 0


def test_ddp_two_processes_on_gloo(data_repo, tmp_path):
    root = _copy(data_repo, tmp_path)
    out = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               "-m", "pipeline.train"], root)
    assert (root / "models/last.pt").is_file()
    metrics = json.loads((root / "reports/train_metrics.json").read_text())
    assert metrics["epochs"] == 2
    # one MLflow run only (rank 0)
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{root.resolve() / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("needle").experiment_id])
    assert len(runs) == 1, out.stderr[-2000:]


def test_exp_run_iou_type_reruns_train_only(data_repo, tmp_path):
    root = _copy(data_repo, tmp_path)
    first = dvc(root, "repro")
    assert "Running stage 'train'" in first.stdout
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline"], root)
    exp = dvc(root, "exp", "run", "-S", "train.iou_type=ciou")
    assert "Running stage 'train'" in exp.stdout
    assert "Running stage 'prepare'" not in exp.stdout
    assert "Running stage 'resize_templates'" not in exp.stdout
    shown = dvc(root, "exp", "show", "--json")
    assert "ciou" in shown.stdout


def test_temp_experiment_lands_in_the_main_repos_mlflow_store(data_repo, tmp_path):
    import mlflow

    root = _copy(data_repo, tmp_path)
    dvc(root, "repro")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline"], root)
    dvc(root, "exp", "run", "--temp", "-S", "train.iou_type=diou")  # runs in .dvc/tmp/exps/<tmp>
    client = mlflow.tracking.MlflowClient(f"sqlite:///{root.resolve() / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("needle").experiment_id])
    temp_runs = [r for r in runs if r.data.params.get("train.iou_type") == "diou"]
    assert len(temp_runs) == 1
    assert temp_runs[0].info.run_name == temp_runs[0].data.tags["dvc_exp_name"]


def test_val_realset_watches_the_check_set_without_choosing_on_it(data_repo, tmp_path):
    import pandas as pd

    from pipeline.data.real_sources import OPENCV_DATA
    from pipeline.realset import build_realset

    if not (OPENCV_DATA / "box.png").is_file():
        pytest.skip("OpenCV's sample photos are not installed: bash system-packages.sh")
    root = _copy(data_repo, tmp_path)
    build_realset(root / "data/realset", frames_per_object=2, absent_every=2, seed=0, objects=["box", "apple", "fish"])
    set_params(root, {"train": {"val_realset": True, "val_every": 1}})
    _train(root)
    curve = pd.read_csv(root / "reports/train_curve.csv")
    assert curve["val_real_AP50"].between(0, 1).all() and curve["val_real_success"].notna().all()
    assert curve["wall_minutes"].is_monotonic_increasing and (curve["wall_minutes"] > 0).all()
    best = json.loads((root / "reports/train_metrics.json").read_text())["best"]
    assert best["epoch"] == int(curve.loc[curve["val_AP50"].idxmax(), "epoch"])  # chosen on the demo val split
    assert not list((root / "data").glob("*scratch*")) and (root / "data/realset").is_dir()


def test_a_vit_with_lora_trains_evaluates_reloads_and_exports(data_repo, tmp_path):
    # a one-block DINOv2 ViT-S/14 (random init: no downloads), simple pyramid, LoRA on its attention
    from pipeline.inference import Detector

    root = _copy(data_repo, tmp_path)
    set_params(root, {"model": {"backbone": {"type": "vit", "name": "vit_small_patch14_dinov2", "pretrained": False,
                                             "blocks": 1, "lora": {"rank": 2}},
                                "neck": {"type": "simple_pyramid"}},
                      "train": {"freeze_through_level": 0, "epochs": 1}, "realset": {"enabled": False}})
    _train(root)
    run([sys.executable, "-m", "pipeline.evaluate"], root)
    assert "AP50" in json.loads((root / "reports/evaluate/metrics.json").read_text())
    last = _state(root / "models/last.pt")
    assert any("lora_A" in k for k in last["model"]) and last["model_config"]["backbone"]["type"] == "vit"
    trained = {n for group in last["optimizer"]["param_groups"] for n in group["params"]}
    assert len(trained) < len(last["model"])  # the ViT's base weights were never in the optimiser
    run([sys.executable, "-m", "pipeline.export", "--checkpoint", "models/best.pt", "--out", "models/onnx",
         "--repeats", "0"], root)
    torch_det = Detector.from_checkpoint(root / "models/best.pt", score_threshold=0.0)
    onnx_det = Detector.from_onnx(root / "models/onnx", score_threshold=0.0)
    refs = sorted((root / "data/templates").rglob("*.jpg"))[:3]
    frame = next((root / "data/prepared").rglob("*.jpg"))
    for det in (torch_det, onnx_det):
        det.set_templates(refs)
    a, b = torch_det.predict(frame), onnx_det.predict(frame)
    assert len(a.boxes) and a.boxes.shape == b.boxes.shape
    assert abs(a.scores - b.scores).max() < 1e-3
