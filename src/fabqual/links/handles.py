"""The handle records, kept importable here while links and tests move to :mod:`fabqual.handles`."""

from fabqual.handles import FabricFault, NvmeNamespace, RdmaEndpoint, RdmaPair

__all__ = ["FabricFault", "NvmeNamespace", "RdmaEndpoint", "RdmaPair"]
