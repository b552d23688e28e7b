"""Names that become one component of a path on a node, checked before they are used.

A controller, RDMA device, FC host or FCoE controller name comes from nvme-cli
output or a sysfs listing, i.e. from the device under test; an NQN or a netdev
comes from the topology (whose grammar already holds it to this). Before such a
name goes into a sysfs/configfs path (the command line quotes it anyway), it
must be one plain path component: a name holding ``/``, ``..``, whitespace or
shell characters means something is not what fabqual thinks, and is refused
with one line instead of being used.
"""

from __future__ import annotations

import re

from fabqual.errors import LabError

_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+@-]{0,254}")


def plain_name(node: str, what: str, value: str) -> str:
    """``value`` (a ``what`` used on ``node``) if it is one plain path component, else LabError."""
    if _COMPONENT.fullmatch(value):
        return value
    raise LabError(f"{node}: refusing to use {what} {value!r} in a path: not a plain name (letters, digits, '_.:+@-')")


def node_pid(node: str, printed: str) -> int:
    """The process id a node printed (``... & echo $!``), as a number before it goes into ``kill``."""
    words = printed.split()
    if not words or not words[-1].isdigit():
        raise LabError(f"{node}: expected a process id from `echo $!`, got {printed.strip()[-80:]!r}")
    return int(words[-1])
