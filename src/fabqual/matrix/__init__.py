"""The release matrix: a smoke qualification on every chosen target x host release pair of the emulated lab."""
