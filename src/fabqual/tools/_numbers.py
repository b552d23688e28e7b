"""Number checks shared by the tool parsers.

A qualification suite must never pass on a number it did not really read
(avocado-misc-tests and LNST#117 both shipped checks that passed on a failed
parse), so every value a parser returns goes through one of these.
"""

from __future__ import annotations

import math
from typing import Any

from fabqual.errors import ParseError


def as_float(tool: str, what: str, raw: Any, output: str) -> float:
    """``raw`` as a finite float, or a ParseError naming ``what``."""
    if isinstance(raw, bool):  # bool is an int subclass; never a measurement
        raise ParseError(tool, f"{what} is {raw!r}, not a number", output)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ParseError(tool, f"{what} is {raw!r}, not a number", output) from None
    if not math.isfinite(value):
        raise ParseError(tool, f"{what} is {raw!r}, not a finite number", output)
    return value


def positive(tool: str, what: str, raw: Any, output: str) -> float:
    """``raw`` as a float that must be greater than zero: a zero means nothing was measured."""
    value = as_float(tool, what, raw, output)
    if value <= 0:
        raise ParseError(tool, f"{what} is {value:g}: nothing was measured", output)
    return value


def non_negative(tool: str, what: str, raw: Any, output: str) -> float:
    """``raw`` as a float that may be zero (a loss or a retransmit count) but not negative."""
    value = as_float(tool, what, raw, output)
    if value < 0:
        raise ParseError(tool, f"{what} is {value:g}, which cannot be negative", output)
    return value
