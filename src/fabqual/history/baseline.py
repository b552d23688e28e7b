"""A metric's baseline learned from its history, and the regression flag it gives.

The baseline of a metric on a rack is the median of its last ``window`` values
from earlier runs on the same versions in which it passed its threshold; its
spread is the MAD (median absolute deviation) scaled by 1.4826, which estimates
the standard deviation of normal noise but is not moved by one outlier night.
A value is a *regression* when it lies on the metric's bad side of the median
by more than ``max(sigmas * spread, floor * |median|)``: the ``floor`` keeps a
very steady history (MAD near 0) from flagging every wobble. With fewer than
``min_samples`` earlier values there is no baseline and nothing is flagged.

This is a separate judgment from the threshold: a value may pass its fixed
threshold and still be a regression against its own history.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MAD_TO_SIGMA = 1.4826
WINDOW = 10
MIN_SAMPLES = 3
SIGMAS = 3.0
FLOOR = 0.10


@dataclass(frozen=True)
class Policy:
    """How a baseline is learned and how far a value may stray from it."""

    window: int = WINDOW
    min_samples: int = MIN_SAMPLES
    sigmas: float = SIGMAS
    floor: float = FLOOR


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Baseline:
    median: float
    spread: float  # MAD * 1.4826
    allowed: float  # absolute distance from the median a value may go the bad way
    samples: int

    @property
    def low(self) -> float:
        return self.median - self.allowed

    @property
    def high(self) -> float:
        return self.median + self.allowed


def learn(history: Sequence[float], policy: Policy = DEFAULT_POLICY) -> Baseline | None:
    """The baseline of the newest ``policy.window`` values of ``history`` (newest first), if enough."""
    values = [v for v in history[: policy.window]]
    if len(values) < policy.min_samples:
        return None
    median = statistics.median(values)
    spread = MAD_TO_SIGMA * statistics.median(abs(v - median) for v in values)
    allowed = max(policy.sigmas * spread, policy.floor * abs(median))
    return Baseline(median=median, spread=spread, allowed=allowed, samples=len(values))


def regressed(value: float, comparison: str, baseline: Baseline | None) -> bool:
    """True when ``value`` is beyond the baseline on the bad side (below for ``>=``, above for ``<=``)."""
    if baseline is None:
        return False
    if comparison == ">=":
        return value < baseline.low
    return value > baseline.high


def deviation(value: float, baseline: Baseline | None) -> float | None:
    """``value`` relative to the baseline median (+0.1 = 10 % above), None without a baseline."""
    if baseline is None or baseline.median == 0:
        return None
    return value / baseline.median - 1.0
