"""fabqual.testing."""
