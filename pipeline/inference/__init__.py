"""Inference: the cached-template Detector API (encode references once, search many frames)."""

from pipeline.inference.detector import Detections, Detector

__all__ = ["Detections", "Detector"]
