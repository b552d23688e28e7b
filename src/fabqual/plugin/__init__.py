"""fabqual.plugin."""
