"""Reference-guided small-object detector built from registered parts (:mod:`.registry`):
backbone -> neck -> template fusion -> correlation and similarities -> head.

Build from config with :func:`build_detector` / :func:`build_criterion`; combine the criterion's
named terms with :func:`weighted_total`.
"""

from .losses import IOU_TYPES, DetectionCriterion, box_iou_pairwise, iou_loss, weighted_total
from .model import ReferenceDetector, build_criterion, build_detector
from .registry import BACKBONES, CORRELATIONS, FUSIONS, HEADS, NECKS, SIMILARITIES, load_parts

__all__ = [
    "IOU_TYPES",
    "box_iou_pairwise",
    "iou_loss",
    "DetectionCriterion",
    "weighted_total",
    "ReferenceDetector",
    "build_detector",
    "build_criterion",
    "BACKBONES",
    "NECKS",
    "FUSIONS",
    "CORRELATIONS",
    "SIMILARITIES",
    "HEADS",
    "load_parts",
]
