"""Reference-guided small-object detector: timm backbone + FPN, template fusion, depth-wise
correlation, anchor-free head, focal + L1 + IoU losses.

Build from config with :func:`build_detector` / :func:`build_criterion`; combine the criterion's
named terms with :func:`weighted_total`.
"""

from .backbone import Backbone, available_levels
from .correlation import Correlation, depthwise_xcorr
from .fpn import FPN
from .fusion import FUSION_MODES, TemplateFusion
from .head import PRIOR_PROB, DetectionHead, cell_centers, decode_boxes, ltrb_from_raw
from .losses import IOU_TYPES, DetectionCriterion, box_iou_pairwise, iou_loss, weighted_total
from .model import ReferenceDetector, build_criterion, build_detector
from .targets import build_targets, target_present

__all__ = [
    "Backbone",
    "available_levels",
    "FPN",
    "TemplateFusion",
    "FUSION_MODES",
    "Correlation",
    "depthwise_xcorr",
    "DetectionHead",
    "PRIOR_PROB",
    "ltrb_from_raw",
    "decode_boxes",
    "cell_centers",
    "build_targets",
    "target_present",
    "IOU_TYPES",
    "box_iou_pairwise",
    "iou_loss",
    "DetectionCriterion",
    "weighted_total",
    "ReferenceDetector",
    "build_detector",
    "build_criterion",
]
