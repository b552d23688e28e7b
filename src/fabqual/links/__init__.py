"""Link drivers: one module per link type, registered by name with its spec.

Adding a link type is adding ``fabqual/links/<type>.py`` that declares a
:class:`fabqual.linkspec.LinkSpec` and decorates its driver with
:func:`fabqual.linkspec.link_type` (plus its line in ``linkspec.BUILTIN_MODULES``;
another package uses the ``fabqual.link_types`` entry point instead).
"""

from fabqual.links.base import LinkContext, LinkDriver, LinkSession, driver_for, offers

__all__ = ["LinkContext", "LinkDriver", "LinkSession", "driver_for", "offers"]
