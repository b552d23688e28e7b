"""A measured number checked against its threshold: the unit of every verdict.

Tests build a :class:`Measurement`, the plugin records it on the test item (as a
``fabqual_metric`` user property, so it reaches JUnit XML, the JSON results and
the HTML report), and :meth:`Measurement.verdict` decides pass or fail.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Literal

USER_PROPERTY = "fabqual_metric"

Comparison = Literal[">=", "<="]


@dataclass(frozen=True)
class Measurement:
    """One number from one tool run, with the bound it must meet."""

    link: str
    link_type: str
    metric: str
    value: float
    unit: str
    threshold: float
    comparison: Comparison
    context: dict[str, str] = field(default_factory=dict)
    threshold_source: str = ""

    @property
    def passed(self) -> bool:
        if not math.isfinite(self.value):
            return False
        if self.comparison == ">=":
            return self.value >= self.threshold
        return self.value <= self.threshold

    @property
    def margin(self) -> float:
        """How far inside (+) or outside (-) the bound, as a fraction of the threshold."""
        if self.threshold == 0 or not math.isfinite(self.value):
            return 0.0 if self.passed else -1.0
        if self.comparison == ">=":
            return self.value / self.threshold - 1.0
        return 1.0 - self.value / self.threshold

    def describe(self) -> str:
        where = " ".join(f"{k}={v}" for k, v in self.context.items())
        verdict = "ok" if self.passed else "FAILED"
        return (
            f"{self.link} {self.metric} {where}: {self.value:.4g} {self.unit}"
            f" (needs {self.comparison} {self.threshold:.4g} {self.unit}, margin {self.margin:+.1%}) {verdict}"
        )

    def to_json(self) -> str:
        data = asdict(self)
        data["passed"] = self.passed
        data["margin"] = self.margin
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Measurement:
        data = json.loads(text)
        data.pop("passed", None)
        data.pop("margin", None)
        return cls(**data)
