"""IPoFC carriers (fc, fcoe, tcm_loop), one module each, registered by name (see :mod:`.base`)."""

from fabqual.links.carriers.base import Carrier, CarrierEnds, carrier_for, carrier_names, register_carrier

__all__ = ["Carrier", "CarrierEnds", "carrier_for", "carrier_names", "register_carrier"]
