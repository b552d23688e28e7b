"""What a test gets from an RDMA link: two endpoints perftest runs between.

The nvmet_rdma and pvrdma links hand out the same :class:`RdmaPair`, so one
perftest body runs on every RDMA link.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fabqual.executors.base import Executor
from fabqual.line_rate import LineRate, PortRate
from fabqual.tools.perftest import PerftestResult, run_perftest
from fabqual.topology.model import Link


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
