"""Link drivers: one module per link type, found by name.

Adding a link type is adding ``fabqual/links/<type>.py`` that calls
:func:`fabqual.links.base.register`; nothing else is edited.
"""

from fabqual.links.base import CAPABILITIES, LinkContext, LinkDriver, LinkSession, driver_for, register

__all__ = ["CAPABILITIES", "LinkContext", "LinkDriver", "LinkSession", "driver_for", "register"]
