"""The tunnel handle, kept importable here while links and tests move to :mod:`fabqual.handles`."""

from fabqual.executors.netns import NetnsExecutor
from fabqual.handles.tunnel import IpTunnel, TunnelEnd

__all__ = ["IpTunnel", "NetnsExecutor", "TunnelEnd"]
