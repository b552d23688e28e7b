"""fabqual.testing: Hypothesis strategies and helpers for fabqual's own tests and for suites built on it.

Importing this package imports Hypothesis; the guest runtime (``fabqual.ipofc``) never does.
Strategies are plural nouns (``cdbs()``, ``tunnel_frames()``); the profile (``ci``, ``lab``)
comes from the environment through :func:`load_profile`.
"""

from fabqual.testing.strategies import (
    cdbs,
    designators,
    hostile_strings,
    inquiry_data,
    load_profile,
    mode_pages,
    packets,
    sense_data,
    stateful_settings,
    tunnel_frames,
    valid_cdbs,
)

__all__ = [
    "cdbs",
    "designators",
    "hostile_strings",
    "inquiry_data",
    "load_profile",
    "mode_pages",
    "packets",
    "sense_data",
    "stateful_settings",
    "tunnel_frames",
    "valid_cdbs",
]
