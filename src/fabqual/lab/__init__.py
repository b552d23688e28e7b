"""fabqual.lab."""
