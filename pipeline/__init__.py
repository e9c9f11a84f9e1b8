"""needle: find one specific small object in large frames from 1-3 reference photos."""

__version__ = "0.1.0"
