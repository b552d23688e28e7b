"""fabqual.tools."""
