"""The trained detector as an MLflow model of its run (``mlflow.pytorch``), optionally registered.

The logged model is ``best.pt``'s detector (LoRA adapters merged), pickled by
``mlflow.pytorch``; ``mlflow.pytorch.load_model(uri)`` gives back the ``ReferenceDetector``
(the ``pipeline`` package must be importable, e.g. from the repository). Its signature names the
two inputs of ``forward(templates, search)``; its metadata and model params hold what a caller
needs to feed it (template and search size, padding, the calibrated presence threshold) and the
model config. ``Detector(model, template_size, search_size, ...)`` turns it into boxes.
MLflow's pyfunc ``predict`` takes one tensor and so cannot call this two-input model.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.engine.tracking import Tracker

log = logging.getLogger(__name__)

#: The model's name in the run (its artifact folder) and in the registry.
MODEL_NAME = "detector"
REGISTERED_NAME = "needle-detector"
#: Pinned in the model's requirements (given, so MLflow does not infer them in a subprocess).
_REQUIREMENTS = ("torch", "torchvision", "timm", "numpy")


def detector_signature(template_size: int, search_size: tuple[int, int]):
    """``templates`` ``[B, K, 3, T, T]`` and ``search`` ``[B, 3, H, W]``, float32 RGB in [0, 1]."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    t, (w, h) = template_size, search_size
    return ModelSignature(inputs=Schema([
        TensorSpec(np.dtype(np.float32), (-1, -1, 3, t, t), "templates"),
        TensorSpec(np.dtype(np.float32), (-1, 3, h, w), "search"),
    ]))


def model_info(checkpoint: dict[str, Any], search_size: tuple[int, int]) -> dict[str, Any]:
    """What a caller of the logged model needs, from a ``best.pt`` checkpoint."""
    presence = checkpoint.get("presence") or {}
    return {
        "template_size": int(checkpoint["template_size"]),
        "search_width": int(search_size[0]),
        "search_height": int(search_size[1]),
        "template_pad": checkpoint.get("template_pad", "constant"),
        "template_pad_value": int(checkpoint.get("template_pad_value", 0)),
        "score_threshold": presence.get("score_threshold"),
        "epoch": checkpoint.get("epoch"),
        "input": "templates [B, K, 3, T, T], search [B, 3, H, W]: float32 RGB in [0, 1]; "
                 "normalised inside the model",
    }


def _requirements() -> list[str]:
    out = []
    for name in _REQUIREMENTS:
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(name)
    return out


def log_detector(tracker: Tracker, best_path: Path, register: bool = False) -> str | None:
    """Log ``best_path``'s detector as the model :data:`MODEL_NAME` of ``tracker``'s run (and,
    with ``register``, as a new version of :data:`REGISTERED_NAME`); its model URI, or None."""
    if tracker.run_id is None or not best_path.is_file():
        return None
    from pipeline.engine.checkpoint import load_checkpoint
    from pipeline.inference.detector import Detector

    detector = Detector.from_checkpoint(best_path)
    checkpoint = load_checkpoint(best_path)
    info = model_info(checkpoint, detector.search_size)

    def _log(mlflow) -> str:
        import mlflow.pytorch

        logged = mlflow.pytorch.log_model(
            detector.model, name=MODEL_NAME, signature=detector_signature(info["template_size"], detector.search_size),
            metadata={**info, "model_config": checkpoint["model_config"]}, pip_requirements=_requirements(),
            params={k: str(v) for k, v in info.items() if k != "input" and v is not None},
            registered_model_name=REGISTERED_NAME if register else None, serialization_format="pickle",
        )
        return logged.model_uri

    uri = tracker.apply("log_model", _log)
    if uri:
        log.info("logged the detector of %s as MLflow model %s%s", best_path, uri,
                 f" (registered as {REGISTERED_NAME})" if register else "")
    return uri
