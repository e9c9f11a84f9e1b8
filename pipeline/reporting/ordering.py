"""One sort order for labels (param values, object and sequence ids) across the report's tables."""

from __future__ import annotations

import math
import re
from typing import Any

_CHUNKS = re.compile(r"\d+|\D+")


def natural_key(value: Any) -> tuple:
    """Numbers before words, numbers by value (``"10"`` after ``"9"``); in words the digit runs by
    value too (``"2_s0"`` before ``"10_s0"``), then the text itself."""
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isnan(number):
        return (0, number, text)
    # NaN and words: chunk by chunk, digit runs as numbers ("inf" parsed above sorts as a number)
    chunks = tuple((0, int(c), "") if c.isdigit() else (1, 0, c) for c in _CHUNKS.findall(text))
    return (1, chunks, text)
