"""Discovery referrals on a kernel nvmet port: ``ports/<id>/referrals/<name>`` in configfs.

A referral makes the port's discovery log carry an entry pointing at another
discovery controller (subtype "discovery subsystem referral" in nvme-cli 2.x,
"discovery subsystem" in 1.x). Creating one is journaled before the ``mkdir``
(a referral's undo is disable then ``rmdir``, harmless when it never came to be).
"""

from __future__ import annotations

import re
import shlex

from fabqual.drivers.journal import Journal, sh, write
from fabqual.drivers.nvmet import ROOT, PortAddress
from fabqual.errors import DriverError
from fabqual.executors.base import Executor, log_step

REFERRAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def referral_dir(port_id: str, name: str) -> str:
    """The referral's configfs directory; ``name`` must be a plain configfs item name."""
    if not REFERRAL_NAME.match(name) or not port_id.isdigit():
        raise DriverError(
            f"nvmet referral {name!r} on port {port_id!r}: use a port number and a plain name ([A-Za-z0-9_.-])"
        )
    return f"{ROOT}/ports/{port_id}/referrals/{name}"


def add_referral(executor: Executor, journal: Journal, port_id: str, name: str, points_to: PortAddress) -> None:
    """Make port ``port_id``'s discovery log refer to the discovery controller at ``points_to``."""
    where = referral_dir(port_id, name)
    q = shlex.quote(where)
    log_step(
        executor.node,
        f"add referral {name} on nvmet port {port_id} -> {points_to.trtype} {points_to.traddr} {points_to.trsvcid}",
    )
    undo = f"[ ! -d {q} ] || {{ echo 0 > {q}/enable; rmdir {q}; }}"
    with journal.ahead(executor, f"nvmet referral {name} on port {port_id}", undo):
        sh(executor, f"mkdir {q}")
    write(executor, f"{where}/addr_trtype", points_to.trtype)
    if points_to.adrfam:
        write(executor, f"{where}/addr_adrfam", points_to.adrfam)
    write(executor, f"{where}/addr_traddr", points_to.traddr)
    if points_to.trsvcid:
        write(executor, f"{where}/addr_trsvcid", points_to.trsvcid)
    write(executor, f"{where}/enable", "1")


def remove_referral(executor: Executor, port_id: str, name: str) -> None:
    """Disable and remove the referral (its journaled undo then finds nothing to do)."""
    where = shlex.quote(referral_dir(port_id, name))
    log_step(executor.node, f"remove referral {name} from nvmet port {port_id}")
    sh(executor, f"echo 0 > {where}/enable && rmdir {where}")
