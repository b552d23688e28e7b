"""Stash keys shared by the plugin's hooks and fixtures."""

from __future__ import annotations

import pytest

from fabqual.measure import Measurement
from fabqual.plugin.run import QualificationRun

RUN = pytest.StashKey[QualificationRun]()
FAILED_MEASUREMENTS = pytest.StashKey[list[Measurement]]()
