"""Inference: decoding and NMS of detector outputs; the cached-template Detector API."""
