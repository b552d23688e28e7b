"""The frozen records tests receive from a link: what they may use, not how it was built.

A test that asks for ``nvme_namespace`` gets an :class:`NvmeNamespace`, one that
asks for ``block_device`` a :class:`BlockDevice` (an NVMe namespace is one), one
that asks for ``rdma_pair`` an :class:`RdmaPair`, one that asks for ``ip_tunnel``
an :class:`IpTunnel`. They sit below the drivers, so a driver can build one (the
guest side of PVRDMA builds :class:`RdmaEndpoint`) without importing a link.
"""

from fabqual.handles.block import BlockDevice
from fabqual.handles.nvme import FabricFault, NvmeNamespace
from fabqual.handles.rdma import RdmaEndpoint, RdmaPair
from fabqual.handles.tunnel import IpTunnel, TunnelEnd

__all__ = ["BlockDevice", "FabricFault", "IpTunnel", "NvmeNamespace", "RdmaEndpoint", "RdmaPair", "TunnelEnd"]
