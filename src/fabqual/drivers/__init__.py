"""fabqual.drivers."""
