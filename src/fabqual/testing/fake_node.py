"""A recording executor that answers like a Linux node with nvmet, rxe, fcloop and nvme-cli.

For property tests of the command builders without a lab: every command is
recorded as the text a shell would get, and answered plausibly enough that the
doctor and a link's bring-up and teardown run to the end (configfs directories
made with ``mkdir`` exist until ``rmdir``, an rxe device added with ``rdma link
add`` shows in ``rdma link show`` with an active port and a RoCE v2 GID for the
address put on its netdev, ``nvme connect`` makes a live controller whose
namespace ``nvme list`` shows). It is not a node: the lab tests run the real
thing; this only lets Hypothesis try thousands of topologies in seconds.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from fabqual.drivers.rundir import RUNS
from fabqual.errors import CommandError
from fabqual.executors.base import Command, CommandResult, command_text

NULLB = "/sys/kernel/config/nullb"
SUBSYSTEMS = "/sys/kernel/config/nvmet/subsystems/"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:6a9f3e5c-0d1e-4b8a-9c57-2f1e0b6d4a31"
EXISTING = ("/sys/kernel/config", "/sys/kernel/config/nvmet", "/sys/class/fcloop/ctl", "/sys/module/null_blk")
VERSIONS = {
    "nvme version": "nvme version 2.3 (git 2.3)\nlibnvme version 1.3 (git 1.3)",
    "fio --version": "fio-3.33",
    "iperf3 --version": "iperf 3.12 (cJSON 1.7.15)",
    "python3 --version": "Python 3.11.2",
}


@dataclass
class FakeNode:
    """One node's answers and the commands it was sent."""

    node: str
    commands: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # remote paths of put()/get()
    dirs: set[str] = field(default_factory=lambda: set(EXISTING))
    rxe: dict[str, str] = field(default_factory=dict)  # RDMA device -> netdev
    addresses: dict[str, str] = field(default_factory=dict)  # netdev -> IPv4 address
    connected: dict[str, list[str]] = field(default_factory=dict)  # subsystem NQN -> its controllers' transports
    exported: set[str] = field(default_factory=set)  # subsystem NQNs on offer: share one set between nodes
    # The scratch-safety probe's answer for a clean device: a real capture whose device is called
    # nullb30 (fixtures/outputs/blockdev/clean_nullb.txt); the probed device's name is put in.
    probe_output: str = ""

    def run(
        self, command: Command, *, timeout: float = 60.0, check: bool = True, stdin: str | None = None
    ) -> CommandResult:
        text = command_text(command)
        self.commands.append(text)
        status, out = self._answer(text)
        result = CommandResult(self.node, text, status, out, "" if status == 0 else "refused", 0.0)
        if check and status != 0:
            raise CommandError(result)
        return result

    def put(self, local: Path, remote: str) -> None:
        self.files.append(remote)

    def get(self, remote: str, local: Path) -> None:
        self.files.append(remote)
        local.write_text("")

    def close(self) -> None:
        """Nothing to release."""

    def _answer(self, text: str) -> tuple[int, str]:
        try:
            argv = shlex.split(text)
        except ValueError:
            argv = text.split()
        head = argv[0] if argv else ""
        if head == "sh" and len(argv) > 3 and argv[1] == "-c" and "@@ resolved" in argv[2]:
            path = argv[-1]
            return 0, self.probe_output.replace("/dev/nullb30", path).replace("nullb30", path.rsplit("/", 1)[-1])
        if text.startswith(f"mkdir -p {RUNS} "):  # the run's private directory (fabqual.drivers.rundir)
            return 0, f"{RUNS}/fake-run.000000\n"
        for probe, version in VERSIONS.items():
            if text.startswith(probe):
                return 0, version
        if head == "test" and len(argv) >= 3 and argv[1] == "-b" and argv[2].startswith("/dev/nullb"):
            return (0 if f"{NULLB}/{argv[2].removeprefix('/dev/')}" in self.dirs else 1), ""  # made through configfs
        if head == "test" and len(argv) >= 3 and argv[1] in ("-e", "-d"):
            present = argv[2] in self.dirs or argv[2].startswith(("/sys/module/", "/sys/class/net/"))  # every netdev
            return (0 if present else 1), ""
        if head == "mkdir" and len(argv) == 2:
            self.dirs.add(argv[1])
            if argv[1].startswith(SUBSYSTEMS):
                self.exported.add(argv[1].removeprefix(SUBSYSTEMS))
        elif head == "rmdir" and len(argv) == 2:
            self.dirs.discard(argv[1])
            self.exported.discard(argv[1].removeprefix(SUBSYSTEMS))
        elif text.startswith("ip addr add") and "dev" in argv:
            try:
                address = ipaddress.ip_interface(argv[3])
            except ValueError:
                return 1, ""  # ip: "any valid prefix is expected rather than ..."
            self.addresses[argv[argv.index("dev") + 1]] = str(address.ip)
        elif text.startswith("rdma link add"):
            self.rxe[argv[3]] = argv[-1]
        elif text.startswith("rdma link delete"):
            self.rxe.pop(argv[-1], None)
        elif text.startswith("rdma link show"):
            return 0, "".join(
                f"link {d}/1 state ACTIVE physical_state LINK_UP netdev {n}\n" for d, n in self.rxe.items()
            )
        elif head == "ibv_devinfo":
            return 0, f"hca_id:\t{argv[2]}\n\tport:\t1\n\t\tstate:\t\t\tPORT_ACTIVE (4)\n\t\tactive_mtu:\t\t1024 (3)\n"
        elif text.startswith("grep -H . /sys/class/infiniband/"):
            return 0, self._gids()
        elif text.startswith("cat /etc/nvme/hostnqn"):
            return 0, HOSTNQN
        elif head == "cat" and argv[1].endswith("/rate"):
            return 0, "2.5 Gb/sec (1X SDR)"
        elif head == "cat" and argv[1].startswith("/sys/class/net/") and argv[1].endswith("/operstate"):
            return 0, "up\n"
        elif head == "cat" and argv[1].startswith("/sys/class/net/") and argv[1].endswith("/speed"):
            return 0, "25000\n"
        elif head == "nvme":
            return self._nvme(argv)
        elif text.startswith("grep -H . /sys/class/nvme"):
            return 0, "/sys/class/nvme/nvme1/nvme1n1/nsid:1\n" if self.connected else ""
        return 0, ""

    def _gids(self) -> str:
        lines = []
        for device, netdev in self.rxe.items():
            address = self.addresses.get(netdev)
            if address is None:
                continue
            mapped = ipaddress.IPv6Address(f"::ffff:{address}").exploded
            base = f"/sys/class/infiniband/{device}/ports/1"
            lines += [
                f"{base}/gids/1:{mapped}",
                f"{base}/gid_attrs/types/1:RoCE v2",
                f"{base}/gid_attrs/ndevs/1:{netdev}",
            ]
        return "\n".join(lines) + "\n"

    def _nvme(self, argv: list[str]) -> tuple[int, str]:
        verb = argv[1] if len(argv) > 1 else ""
        if "--help" in argv:  # nvme-cli 2.x's usage: the lines fabqual looks for
            return (
                0,
                f"Usage: nvme {verb} [OPTIONS]\n  --transport=<STR>, -t <STR>\n  --output-format=<FMT>, -o <FMT>\n",
            )
        if verb == "discover":
            transport = argv[argv.index("-t") + 1]
            records = [
                {"trtype": transport, "traddr": argv[argv.index("-a") + 1], "subnqn": n} for n in sorted(self.exported)
            ]
            return 0, json.dumps({"records": records})
        if verb == "connect":
            self.connected.setdefault(argv[argv.index("-n") + 1], []).append(argv[argv.index("-t") + 1])
        elif verb == "disconnect":
            self.connected.pop(argv[argv.index("-n") + 1], None)
        elif verb == "list-subsys":
            found = [
                {
                    "Name": f"nvme-subsys{i}",
                    "NQN": nqn,
                    "Paths": [{"Name": f"nvme{i}{j}", "Transport": t, "State": "live"} for j, t in enumerate(paths)],
                }
                for i, (nqn, paths) in enumerate(self.connected.items(), start=1)
            ]
            return 0, json.dumps({"Subsystems": found})
        elif verb == "list":
            device = {"DevicePath": "/dev/nvme1n1", "NameSpace": 1, "PhysicalSize": 1 << 30}
            return 0, json.dumps({"Devices": [device] if self.connected else []})
        return 0, ""
