"""The frozen records tests receive from a link: what they may use, not how it was built.

A test that asks for ``nvme_namespace`` gets an :class:`NvmeNamespace`; one that
asks for ``rdma_pair`` gets an :class:`RdmaPair`. The pvrdma link hands out the
same :class:`RdmaPair`, so one perftest body runs on every RDMA link.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fabqual.executors.base import Executor
from fabqual.line_rate import LineRate, PortRate
from fabqual.tools.perftest import PerftestResult, run_perftest
from fabqual.topology.model import Link


@dataclass(frozen=True)
class FabricFault:
    """A way to take the link's fabric away and give it back (for fault tests).

    ``inject`` breaks the path between host and target (fcloop remote port
    deleted, RDMA netdev set down); ``repair`` restores it and waits until the
    host's controllers are live again. Teardown repairs too, if a test did not.
    """

    description: str
    inject: Callable[[], None] = field(repr=False)
    repair: Callable[[], None] = field(repr=False)
    # For a single path of a multipath namespace: its address as nvme-cli shows it ("traddr=…,trsvcid=…").
    path_address: str = ""


@dataclass(frozen=True)
class NvmeNamespace:
    """An NVMe namespace exported by a target and connected on a host.

    ``scratch`` is true only when the exported device is declared scratch in the
    topology: tests write to ``device`` only then.
    """

    link: Link
    host: Executor = field(repr=False)
    device: str  # e.g. /dev/nvme1n1 on the host
    transport: str  # fc, rdma or tcp (nvme-cli's trtype)
    subsystem_nqn: str
    scratch: bool
    controllers: tuple[str, ...] = ()  # nvme1, nvme2 (several with multipath)
    size_bytes: int = 0
    target_node: str = ""
    fault: FabricFault | None = None
    # One per path with native multipath (in connect order): each takes only that path away.
    path_faults: tuple[FabricFault, ...] = ()
    facts: dict[str, str] = field(default_factory=dict, compare=False)
    # The ports every path crosses, with their rates as read: what bandwidth fractions are of.
    line_rate: LineRate | None = None


@dataclass(frozen=True)
class RdmaEndpoint:
    """One end of an RDMA pair: the device, port and GID index perftest must use there."""

    executor: Executor = field(repr=False)
    device: str  # rxe0, qedr0, vmw_pvrdma0
    port: int
    gid_index: int
    address: str  # IPv4 address of the netdev (the RoCE v2 GID's address)
    netdev: str
    rate_gbps: float | None = None  # from /sys/class/infiniband/<dev>/ports/<p>/rate
    active_mtu: int | None = None
    rate: PortRate | None = None  # the same rate with what was read where (or why it could not be)

    @property
    def node(self) -> str:
        return self.executor.node

    @property
    def port_rate(self) -> PortRate:
        """This end's port rate as read (a driver that gave only the number is quoted as such)."""
        name = f"{self.device} port {self.port}"
        return self.rate or PortRate(self.node, name, self.rate_gbps, "given by the driver")


@dataclass(frozen=True)
class RdmaPair:
    """Two RDMA endpoints that reach each other over the link."""

    link: Link
    server: RdmaEndpoint
    client: RdmaEndpoint

    @property
    def line_rate(self) -> LineRate:
        """Both ends' port rates: what a bandwidth threshold is a fraction of (the slower end)."""
        return LineRate.one_path(self.server.port_rate, self.client.port_rate)

    def perftest(self, test: str, *, size: int | None, iterations: int | None = None) -> PerftestResult:
        """``test`` (ib_write_bw, ib_send_lat, ...) with its server on ``server`` and client on ``client``,
        each on its own device and GID index."""
        return run_perftest(
            self.server.executor,
            self.client.executor,
            test=test,
            device=self.server.device,
            gid_index=self.server.gid_index,
            client_device=self.client.device,
            client_gid_index=self.client.gid_index,
            server_address=self.server.address,
            size=size,
            iterations=iterations,
        )
