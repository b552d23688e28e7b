"""``fabqual lab up | down | status | ssh NODE [-- CMD...]``: the emulated lab by hand."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import NoReturn

from fabqual.cli.args import Subcommands
from fabqual.errors import LabError
from fabqual.lab.lab import GUESTS, EmulatedLab
from fabqual.lab.releases import DEFAULT_RELEASE, RELEASES, Pair, check_release


def register(subparsers: Subcommands) -> None:
    """Add the ``lab`` command and its subcommands to a parent parser."""
    lab = subparsers.add_parser("lab", help="the emulated lab: two QEMU guests standing in for a rack")
    commands = lab.add_subparsers(dest="lab_command", required=True, metavar="{up,down,status,ssh}")
    up = commands.add_parser("up", help="build the images if needed and boot both guests")
    up.add_argument("--target", type=_release, default=None, help=f"Debian release of tgt ({', '.join(RELEASES)})")
    up.add_argument("--host", type=_release, default=None, help="Debian release of ini (default: as --target)")
    up.set_defaults(func=_up)
    down = commands.add_parser("down", help="stop both guests and restore the host")
    down.set_defaults(func=_down)
    status = commands.add_parser("status", help="show whether the lab runs, its guests and topology")
    status.set_defaults(func=_status)
    ssh = commands.add_parser("ssh", help="open a shell (or run CMD) on a guest")
    ssh.add_argument("node", choices=[name for name, _address in GUESTS])
    ssh.add_argument("cmd", nargs=argparse.REMAINDER, help="command to run instead of a shell (after --)")
    ssh.set_defaults(func=_ssh)
    lab.set_defaults(func=lambda _args: _usage(lab))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _release(text: str) -> str:
    try:
        return check_release(text)
    except LabError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _up(args: argparse.Namespace) -> int:
    pair = None
    if args.target or args.host:
        target = args.target or DEFAULT_RELEASE
        pair = Pair(target, args.host or target)
    lab = EmulatedLab(progress=_progress, pair=pair)
    if lab.is_running():
        lab.ensure_up()  # one line if it runs another pair than asked for
        print(f"the emulated lab is already running ({lab.pair.name}); topology {lab.topology_path}")
        return 0
    # Ctrl-C and a plain kill both go through the same cleanup in ensure_up().
    signal.signal(signal.SIGTERM, _interrupt)
    path = lab.ensure_up()
    print(path)
    return 0


def _interrupt(_signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt


def _down(_args: argparse.Namespace) -> int:
    EmulatedLab(progress=_progress).down()
    print("the emulated lab is down")
    return 0


def _status(_args: argparse.Namespace) -> int:
    status = EmulatedLab().status()
    print(f"state: {status.state}" + (f" ({status.accel})" if status.accel else ""))
    if status.pair:
        print(f"releases: tgt Debian {status.pair.target}, ini Debian {status.pair.host}")
    for guest in status.guests:
        where = f"ssh 127.0.0.1:{guest.ssh_port}" if guest.ssh_port else "no port chosen"
        alive = "running" if guest.alive else "stopped"
        print(f"  {guest.name}: {alive}, pid {guest.pid or '-'}, {where}, console {guest.console_log}")
    if status.topology:
        print(f"topology: {status.topology}")
    if status.detail:
        print(status.detail)
    return {"running": 0, "down": 3}.get(status.state, 1)


def _ssh(args: argparse.Namespace) -> int:
    lab = EmulatedLab()
    if not lab.is_running():
        raise LabError("the emulated lab is not running; start it with `fabqual lab up`")
    port = next(g.ssh_port for g in lab.status().guests if g.name == args.node)
    cmd = list(args.cmd)
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    argv = [
        "ssh",
        "-i", str(lab.key_file),
        "-o", f"UserKnownHostsFile={lab.known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "IdentitiesOnly=yes",
        "-p", str(port),
        "root@127.0.0.1",
        *cmd,
    ]  # fmt: skip
    os.execvp("ssh", argv)
