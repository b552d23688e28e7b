"""Root conftest of the fabqual repository.

The fabqual pytest plugin itself is installed as an entry point (``pytest11``),
so this file only holds what is particular to this repository's own test runs:
the Hypothesis profile (``FABQUAL_HYPOTHESIS_PROFILE=ci|lab``).
"""

from __future__ import annotations

import os

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the acceptance suite runs without the dev extras
    pass
else:
    settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("lab", max_examples=100_000, deadline=None, suppress_health_check=list(HealthCheck))
    settings.load_profile(os.environ.get("FABQUAL_HYPOTHESIS_PROFILE", "ci"))
