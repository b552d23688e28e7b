"""The emulated lab: two QEMU guests (Debian 12) standing in for a rack, reached over SSH."""

from fabqual.lab.lab import EmulatedLab, LabStatus

__all__ = ["EmulatedLab", "LabStatus"]
