"""A test row is flaky when its recent history alternates between passing and failing.

Only decisive outcomes count (passed, failed, error); skips say nothing about
the device. Over the newest ``window`` of them, ``min_flips`` or more changes
between passing and not passing mark the row flaky: pass, fail, pass is flaky;
pass, pass, fail (a new break) and fail, fail, fail (a steady break) are not.
Flaky is a mark for the reader; it never changes a verdict.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

WINDOW = 10
MIN_FLIPS = 2
DECISIVE = ("passed", "failed", "error")


def flips(outcomes: Sequence[str], window: int = WINDOW) -> int:
    """How often the newest ``window`` decisive outcomes (newest first) switch between pass and not-pass."""
    decisive = [o == "passed" for o in outcomes if o in DECISIVE][:window]
    return sum(1 for a, b in itertools.pairwise(decisive) if a != b)


def is_flaky(outcomes: Sequence[str], window: int = WINDOW, min_flips: int = MIN_FLIPS) -> bool:
    return flips(outcomes, window) >= min_flips
