"""One sort order for labels (param values, object ids) across the report's tables."""

from __future__ import annotations

import math
from typing import Any


def natural_key(value: Any) -> tuple:
    """Numbers before words, numbers by value (``"10"`` after ``"9"``), then the text itself."""
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        return (1, 0.0, text)
    if math.isnan(number):  # NaN sorts with the words, by its text
        return (1, 0.0, text)
    return (0, number, text)
