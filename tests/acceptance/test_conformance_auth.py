"""Conformance, Authentication: NVMe in-band authentication (DH-HMAC-CHAP) where both kernels have it.

Each case exports an empty subsystem of its own that allows one host NQN of
fabqual's (``nqn.2024-01.io.fabqual:conf-auth-*``) and gives that host entry a
secret on the target (configfs ``hosts/<nqn>/dhchap_key``, and
``dhchap_ctrl_key`` for bidirectional); the link's host connects as that NQN
with ``--dhchap-secret`` (and ``--dhchap-ctrl-secret``). Secrets are fresh
random keys per case. Probed, not assumed: a target kernel without
``NVME_TARGET_AUTH`` has no ``dhchap_key`` in its host entries, a host kernel
without ``NVME_AUTH`` no ``dhchap_secret`` in its controllers; either is a skip
naming what is missing. blktests nvme/041-045 test the same on loop and tcp.
"""

from __future__ import annotations

import pytest

from fabqual.conformance.attempt import Attempt, HostIdentity, attempt_connect
from fabqual.conformance.dhchap import host_auth_missing, make_secret, set_host_keys, target_auth_missing
from fabqual.conformance.fabric import NvmeFabric, live_controller
from fabqual.conformance.snapshot import nvme_state
from fabqual.plugin.conformance import ConformanceCase
from fabqual.topology.model import Link

# nvme-cli reports a failed authentication as the kernel's errno; the host kernel names the failure.
# Seen on the trixie lab (6.12): "qid 0: authentication failed, error -129" (wrong key), "qid 0:
# authentication setup failed" (no key where one is required).
REFUSED = (
    r"[Aa]uthentication (setup )?failed|[Pp]ermission denied|Operation not permitted|Input/output error|not allowed"
)


def _authenticating(fabric: NvmeFabric, purpose: str) -> tuple[str, HostIdentity]:
    """A subsystem allowing only a host NQN of the case's own; skip where either kernel cannot authenticate."""
    identity = HostIdentity(fabric.nqn(f"auth-host-{purpose}"))
    nqn = fabric.subsystem(f"auth-{purpose}", allowed=(identity.hostnqn,))
    missing = target_auth_missing(fabric.target, identity.hostnqn) or host_auth_missing(
        fabric.host, live_controller(fabric.nvme, fabric.subsystem_nqn).name
    )
    if missing:
        pytest.skip(missing)
    fabric.nvmet.link_port(fabric.port_id, nqn)
    return nqn, identity


def _connects(fabric: NvmeFabric, conformance: ConformanceCase, nqn: str, who: HostIdentity, *secrets: str) -> None:
    attempt = attempt_connect(fabric, fabric.spec(nqn), who, *secrets)
    assert not attempt.refused and attempt.controllers, f"the right secret was refused: {attempt.describe()}"
    conformance.time("auth_connect_s", attempt.seconds)
    fabric.nvme.disconnect(nqn)


def _refused(fabric: NvmeFabric, nqn: str, who: HostIdentity, *secrets: str) -> Attempt:
    before = nvme_state(fabric.host, fabric.target)
    attempt = attempt_connect(fabric, fabric.spec(nqn), who, *secrets)
    assert attempt.refused and not attempt.controllers, f"a wrong secret was accepted: {attempt.describe()}"
    assert attempt.said(REFUSED), f"refused, but not as an authentication failure: {attempt.describe()}"
    left = before.difference(nvme_state(fabric.host, fabric.target))
    assert not left, f"the refused connect left state behind: {left}"
    return attempt


@pytest.mark.conformance(case="auth.host_key", category="Auth")
@pytest.mark.capability("nvme_namespace")
def test_right_host_key_connects_wrong_is_refused(
    link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase
) -> None:
    """The host's right secret connects; a wrong one, and none at all, are refused and leave nothing behind."""
    nqn, who = _authenticating(nvme_fabric, "key")
    key = make_secret()
    set_host_keys(nvme_fabric.target, who.hostnqn, key)
    _connects(nvme_fabric, conformance, nqn, who, f"--dhchap-secret={key}")
    _refused(nvme_fabric, nqn, who, f"--dhchap-secret={make_secret()}")
    _refused(nvme_fabric, nqn, who)


@pytest.mark.conformance(case="auth.bidirectional", category="Auth")
@pytest.mark.capability("nvme_namespace")
def test_controller_key_authenticates_the_target(
    link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase
) -> None:
    """With a controller key the host also authenticates the target: both right keys connect; a host expecting
    another controller key refuses the target."""
    nqn, who = _authenticating(nvme_fabric, "bidi")
    key, ctrl_key = make_secret(), make_secret()
    set_host_keys(nvme_fabric.target, who.hostnqn, key, ctrl_key)
    _connects(nvme_fabric, conformance, nqn, who, f"--dhchap-secret={key}", f"--dhchap-ctrl-secret={ctrl_key}")
    _refused(nvme_fabric, nqn, who, f"--dhchap-secret={key}", f"--dhchap-ctrl-secret={make_secret()}")


@pytest.mark.conformance(case="auth.key_rotation", category="Auth")
@pytest.mark.capability("nvme_namespace")
def test_rotated_key_takes_effect_on_reconnect(
    link: Link, nvme_fabric: NvmeFabric, conformance: ConformanceCase
) -> None:
    """After the target's key for the host is replaced, the host reconnects with the new key and the old one is
    refused."""
    nqn, who = _authenticating(nvme_fabric, "rotate")
    old, new = make_secret(), make_secret()
    set_host_keys(nvme_fabric.target, who.hostnqn, old)
    _connects(nvme_fabric, conformance, nqn, who, f"--dhchap-secret={old}")
    set_host_keys(nvme_fabric.target, who.hostnqn, new)
    _connects(nvme_fabric, conformance, nqn, who, f"--dhchap-secret={new}")
    _refused(nvme_fabric, nqn, who, f"--dhchap-secret={old}")
