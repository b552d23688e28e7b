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


class Discovery:
    """A registry's modules imported once, on its first question (not when the registry is imported).

    Calling it loads the group the first time; a failed load is tried again on
    the next call. Marked done before loading: a module being imported may ask
    its registry again.
    """

    def __init__(self, group: str, what: str, builtin: tuple[str, ...]) -> None:
        self.group = group
        self.what = what
        self.builtin = builtin
        self.done = False

    def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            load_group(self.group, self.what, self.builtin)
        except FabqualError:
            self.done = False
            raise
