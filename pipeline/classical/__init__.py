"""Classical (non-learned) detectors, the learned model's peers: OpenCV template matching."""
