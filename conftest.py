"""Root conftest of the fabqual repository.

The fabqual pytest plugin itself is installed as an entry point (``pytest11``),
so this file only holds what is particular to this repository's runs: the
Hypothesis profile (``FABQUAL_HYPOTHESIS_PROFILE=ci|lab``) of the self-tests and
of the acceptance suite's live fuzz (Hypothesis is a runtime dependency).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("lab", max_examples=100_000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("FABQUAL_HYPOTHESIS_PROFILE", "ci"))
