"""fabqual.report."""
