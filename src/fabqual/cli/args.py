"""What several subcommands share: the type of the parser they register on, and argument checks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypeAlias

from fabqual.errors import FabqualError

# What `add_subparsers()` returns; each command module adds its parser to it.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def seconds(text: str) -> float:
    """An ``argparse`` type: a non-negative number of seconds, refused in one line otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: seconds cannot be negative")
    return value


def topology_path(given: str | None) -> Path:
    """The ``--topology`` file, or without one the running emulated lab's."""
    if given:
        return Path(given)
    from fabqual.lab import EmulatedLab

    lab = EmulatedLab()
    if not lab.is_running():
        raise FabqualError("no --topology given and the emulated lab is not running: start it with `fabqual lab up`")
    return Path(lab.ensure_up())
