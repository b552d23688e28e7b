"""fabqual.executors."""
