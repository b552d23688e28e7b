"""Loading the modules other packages register through an entry-point group, failing in one line.

Link types (``fabqual.link_types``) and NVMe target backends
(``fabqual.target_backends``) are found this way: each entry point names a module
that registers itself when imported. A module that fails to import stops
discovery with one :class:`~fabqual.errors.FabqualError` line naming the entry
point and the error, never a swallowed import error or a traceback.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from fabqual.errors import FabqualError


def load_group(group: str, what: str, builtin: tuple[str, ...] = ()) -> None:
    """Import the ``builtin`` modules, then every module of entry-point ``group`` (``what`` names them)."""
    for name in builtin:
        importlib.import_module(name)
    for point in entry_points(group=group):
        try:
            point.load()
        except Exception as error:  # someone else's module: one line, not a traceback
            first = (str(error).splitlines() or [""])[0]
            raise FabqualError(
                f"{what} plugin {point.name!r} (entry point {group}: {point.value}) failed to load:"
                f" {type(error).__name__}: {first}; fix or uninstall the package that provides it"
            ) from None
