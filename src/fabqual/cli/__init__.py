"""The ``fabqual`` command: one module per subcommand, each registered here by name.

A subcommand is a module of this package with ``register(subcommands)``, which
adds its parser and sets ``func`` on it; :data:`COMMANDS` lists them in the
order ``fabqual --help`` shows. The modules keep their heavy imports inside
their functions, so ``fabqual --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from fabqual.cli import clean, compare, doctor, fleet, lab, matrix, nightly, results
from fabqual.errors import FabqualError
from fabqual.redaction import install_log_redaction

COMMANDS = (doctor, lab, matrix, compare, nightly, results, fleet, clean)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fabqual", description="storage and RDMA fabric qualification")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    install_log_redaction()
    try:
        return int(args.func(args) or 0)
    except FabqualError as error:
        print(f"fabqual: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fabqual: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
