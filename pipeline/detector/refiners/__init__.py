"""Second stages: re-score (and refine) the head's best candidates against the references.

A refiner is built as ``builder(cfg, channels=C, stride=s)`` (``C`` neck channels, ``s`` the
finest stride) and called as ``refiner(head_outputs, HeadInputs) -> outputs``; ``model.refine:
none`` builds no module.
"""
