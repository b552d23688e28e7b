"""fabqual.ipofc."""
