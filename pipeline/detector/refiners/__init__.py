"""Second stages: re-score (and refine) the head's best candidates against the references.

A refiner is built as ``builder(cfg, channels=C, stride=s, similarities=S)`` (``C`` neck
channels, ``s`` the finest stride, ``S`` similarity maps) and called as ``refiner(head_outputs, HeadInputs) -> outputs``; ``model.refine:
none`` builds no module.
"""
