"""NVMe-oF host side through nvme-cli: discover, connect, find the namespace, disconnect.

The JSON nvme-cli prints changed between 1.x and 2.x (``list`` is a flat
``Devices`` list in both, but ``-v`` gives one entry per subsystem in 1.x and a
host/subsystem/controller tree in 2.x; ``list-subsys`` went from one object
whose ``Subsystems`` list mixed subsystem and path objects (<= 1.8) to a list of
hosts). ``discover`` has no ``-o json`` in 1.x (Debian 11's 1.12 rejects the
option), so its text log is read there: :meth:`NvmeHost.discover` asks the
node's nvme-cli whether it knows ``--output-format``. The parsers accept every
shape and are tested on outputs of 1.x, 2.3 and 2.13 (fixtures/outputs/nvme-cli/).
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass
from typing import Any

from fabqual.drivers.journal import Journal, modprobe, write
from fabqual.errors import CommandError, DriverError, LabError, ParseError
from fabqual.executors.base import Executor, log_step
from fabqual.executors.names import plain_name
from fabqual.health import kernel_lines_since, mark_kernel_log
from fabqual.topology.grammar import check_nqn


@dataclass(frozen=True)
class NvmePath:
    """One controller of a subsystem: nvme1, transport, address, state (live, connecting, ...)."""

    name: str
    transport: str
    address: str
    state: str


@dataclass(frozen=True)
class NvmeSubsystem:
    name: str  # nvme-subsys1
    nqn: str
    paths: tuple[NvmePath, ...]


@dataclass(frozen=True)
class NvmeDevice:
    """A namespace block device as ``nvme list`` shows it."""

    path: str  # /dev/nvme1n1
    nsid: int | None
    model: str
    serial: str
    size_bytes: int | None


@dataclass(frozen=True)
class DiscoveryRecord:
    trtype: str
    traddr: str
    trsvcid: str
    subnqn: str
    subtype: str


def _loads(tool: str, text: str) -> Any:
    """JSON from nvme-cli; warnings it may print before the JSON are skipped."""
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ParseError(tool, "no JSON in the output", text)
    try:
        return json.JSONDecoder().raw_decode(text[start:])[0]
    except json.JSONDecodeError as error:
        raise ParseError(tool, f"invalid JSON ({error.msg} at {error.pos})", text) from None


def _path(raw: dict[str, Any]) -> NvmePath:
    return NvmePath(
        name=str(raw.get("Name", "")),
        transport=str(raw.get("Transport", "")),
        address=str(raw.get("Address", "")),
        state=str(raw.get("State", "")),
    )


def parse_list_subsys(text: str) -> list[NvmeSubsystem]:
    """``nvme list-subsys -o json`` of nvme-cli 1.x or 2.x → subsystems with their paths."""
    data = _loads("nvme list-subsys", text)
    if isinstance(data, list):  # 2.x: one object per host
        raw_subsystems = [s for host in data for s in host.get("Subsystems", [])]
    elif isinstance(data, dict):
        raw_subsystems = list(data.get("Subsystems", []))
    else:
        raise ParseError("nvme list-subsys", f"expected an object or a list, got {type(data).__name__}", text)
    subsystems: list[NvmeSubsystem] = []
    for raw in raw_subsystems:
        if "NQN" in raw:
            subsystems.append(
                NvmeSubsystem(str(raw.get("Name", "")), str(raw["NQN"]), tuple(_path(p) for p in raw.get("Paths", [])))
            )
        elif "Paths" in raw and subsystems:
            # nvme-cli <= 1.8 put a subsystem's paths in the next list element.
            last = subsystems[-1]
            subsystems[-1] = NvmeSubsystem(last.name, last.nqn, last.paths + tuple(_path(p) for p in raw["Paths"]))
        else:
            raise ParseError("nvme list-subsys", f"unexpected element {raw!r}", text)
    return subsystems


def _device(raw: dict[str, Any]) -> NvmeDevice:
    path = raw.get("DevicePath") or raw.get("NameSpace")
    if not isinstance(path, str):
        raise ParseError("nvme list", f"namespace without a device path: {raw!r}")
    if not path.startswith("/dev/"):
        path = "/dev/" + path
    nsid = raw.get("NameSpace") if isinstance(raw.get("NameSpace"), int) else raw.get("NSID")
    size = raw.get("PhysicalSize")
    return NvmeDevice(
        path=path,
        nsid=int(nsid) if isinstance(nsid, int) else None,
        model=str(raw.get("ModelNumber", "")).strip(),
        serial=str(raw.get("SerialNumber", "")).strip(),
        size_bytes=int(size) if isinstance(size, int) else None,
    )


def parse_nvme_list(text: str) -> list[NvmeDevice]:
    """``nvme list -o json`` (1.x flat, 2.x flat, or 2.x ``-v`` nested) → namespace devices."""
    data = _loads("nvme list", text)
    if not isinstance(data, dict) or not isinstance(data.get("Devices"), list):
        raise ParseError("nvme list", "no 'Devices' list", text)
    devices: list[NvmeDevice] = []
    for entry in data["Devices"]:
        if not isinstance(entry, dict):
            raise ParseError("nvme list", f"a Devices entry is not an object: {entry!r}", text)
        # 2.x verbose: host → subsystems → (controllers →) namespaces; 1.x verbose: one entry per subsystem.
        subsystems = entry.get("Subsystems", [entry] if "Subsystem" in entry else None)
        if subsystems is None:  # 1.x and 2.x flat: the entry is the namespace
            devices.append(_device(entry))
            continue
        for subsystem in subsystems:
            namespaces = list(subsystem.get("Namespaces", []))
            for controller in subsystem.get("Controllers", []):
                namespaces.extend(controller.get("Namespaces", []))
            devices.extend(_device(ns) for ns in namespaces)
    return devices


def parse_discovery(text: str) -> list[DiscoveryRecord]:
    """``nvme discover -o json`` → discovery log records."""
    data = _loads("nvme discover", text)
    if not isinstance(data, dict) or "records" not in data:
        raise ParseError("nvme discover", "no 'records' list", text)
    return [
        DiscoveryRecord(
            trtype=str(r.get("trtype", "")),
            traddr=str(r.get("traddr", "")).strip(),
            trsvcid=str(r.get("trsvcid", "")).strip(),
            subnqn=str(r.get("subnqn", "")).strip(),
            subtype=str(r.get("subtype", "")),
        )
        for r in data["records"]
    ]


def discover_speaks_json(usage: str) -> bool:
    """From ``nvme discover --help``: 2.x lists ``--output-format``; 1.x (e.g. 1.12) has no such option."""
    if "discover" not in usage.lower() or "--transport" not in usage:
        raise ParseError("nvme discover --help", "not nvme-cli's discover usage (is nvme-cli installed?)", usage)
    return "--output-format" in usage


_LOG_ENTRY = re.compile(r"^=+\s*Discovery Log Entry \d+\s*=+$")
_LOG_FIELD = re.compile(r"^([a-z_]+):\s*(.*?)\s*$")


def parse_discovery_text(text: str) -> list[DiscoveryRecord]:
    """``nvme discover`` text of nvme-cli 1.x (which has no ``-o json``) → discovery log records.

    ``Discovery Log Number of Records N, ...`` then, per record, a
    ``=====Discovery Log Entry i======`` line and ``key: value`` lines.
    """
    announced = re.search(r"Discovery Log Number of Records (\d+)", text)
    if not announced:
        raise ParseError("nvme discover", "no 'Discovery Log Number of Records' line", text)
    entries: list[dict[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if _LOG_ENTRY.match(line):
            entries.append({})
        elif entries and (field := _LOG_FIELD.match(line)):
            entries[-1].setdefault(field[1], field[2])
    if len(entries) != int(announced[1]):
        raise ParseError("nvme discover", f"{announced[1]} records announced, {len(entries)} found: truncated?", text)
    for number, entry in enumerate(entries):
        missing = [key for key in ("trtype", "traddr", "subnqn") if key not in entry]
        if missing:
            raise ParseError("nvme discover", f"entry {number} has no {', '.join(missing)}", text)
    return [
        DiscoveryRecord(
            trtype=entry["trtype"],
            traddr=entry["traddr"],
            trsvcid=entry.get("trsvcid", ""),
            subnqn=entry["subnqn"],
            subtype=entry.get("subtype", ""),
        )
        for entry in entries
    ]


# How long deleting a controller stuck in ``connecting`` may take (see ensure_live).
STUCK_DELETE_TIMEOUT = 240.0


@dataclass(frozen=True)
class ConnectSpec:
    """What ``nvme connect`` needs to reach one path of a subsystem."""

    trtype: str  # fc, rdma, tcp
    traddr: str
    subsystem_nqn: str
    trsvcid: str = ""
    host_traddr: str = ""
    # Reconnect quickly after a repaired fault, and fail I/O (instead of queueing
    # it for ctrl_loss_tmo) once the path has been gone for a few seconds.
    ctrl_loss_tmo: int | None = 60
    reconnect_delay: int | None = 2
    fast_io_fail_tmo: int | None = 5
    keep_alive_tmo: int | None = None  # None: the kernel's default (nvme-cli's --keep-alive-tmo)

    def args(self) -> list[str]:
        args = ["-t", self.trtype, "-a", self.traddr]
        if self.trsvcid:
            args += ["-s", self.trsvcid]
        if self.host_traddr:
            args += ["-w", self.host_traddr]
        return args


class NvmeHost:
    """nvme-cli on one host node; every connect is journaled with its disconnect."""

    HOST_MODULES = {"fc": "nvme-fc", "rdma": "nvme-rdma", "tcp": "nvme-tcp"}

    def __init__(self, executor: Executor, journal: Journal) -> None:
        self.executor = executor
        self.journal = journal
        self._hostnqn: str | None = None
        self._discover_json: bool | None = None

    def hostnqn(self) -> str:
        """The host's NQN: /etc/nvme/hostnqn if set, else one generated by nvme-cli (kept for this run)."""
        if self._hostnqn is None:
            found = self.executor.run("cat /etc/nvme/hostnqn 2>/dev/null; true", timeout=30).stdout.strip()
            if check_nqn(found):
                found = self.executor.run("nvme gen-hostnqn", timeout=30).stdout.strip()
            if check_nqn(found):
                raise LabError(
                    f"{self.executor.node}: no usable host NQN (got {found!r}); write one to /etc/nvme/hostnqn"
                )
            self._hostnqn = found
        return self._hostnqn

    def subsystems(self) -> list[NvmeSubsystem]:
        return parse_list_subsys(self.executor.run("nvme list-subsys -o json", timeout=60).stdout)

    def devices(self) -> list[NvmeDevice]:
        return parse_nvme_list(self.executor.run("nvme list -o json", timeout=60).stdout)

    def _discover_speaks_json(self) -> bool:
        """Whether this node's ``nvme discover`` knows ``-o json``: asked once, by its usage text."""
        if self._discover_json is None:
            usage = self.executor.run("nvme discover --help 2>&1; true", timeout=30).stdout
            try:
                self._discover_json = discover_speaks_json(usage)
            except ParseError:
                raise LabError(
                    f"{self.executor.node}: `nvme discover --help` printed no discover usage"
                    f" ({usage.strip()[:120]!r}); install nvme-cli on this host"
                ) from None
        return self._discover_json

    def discover(self, spec: ConnectSpec) -> list[DiscoveryRecord]:
        modprobe(self.executor, self.HOST_MODULES[spec.trtype])  # nvme-cli cannot even scan without nvme-fabrics
        as_json = self._discover_speaks_json()
        output = ["-o", "json"] if as_json else []
        command = shlex.join(["nvme", "discover", *spec.args(), "-q", self.hostnqn(), *output])
        log_step(self.executor.node, f"nvme discover {spec.trtype} {spec.traddr}")
        result = self.executor.run(command, timeout=120, check=False)
        if not result.ok:
            raise DriverError(
                f"{self.executor.node}: nvme discover -t {spec.trtype} -a {spec.traddr} failed:"
                f" {(result.stderr or result.stdout).strip()}; is the target port up and reachable?"
            )
        return parse_discovery(result.stdout) if as_json else parse_discovery_text(result.stdout)

    def connect(self, spec: ConnectSpec) -> tuple[str, ...]:
        """Connect one path; returns the new controller names (nvme1, ...)."""
        modprobe(self.executor, self.HOST_MODULES[spec.trtype])
        # Journal the disconnect first: a connect that times out may still leave a controller.
        self.journal_disconnect(spec.subsystem_nqn)
        return self._connect(spec)

    def journal_disconnect(self, nqn: str) -> None:
        """Journal disconnecting every controller of ``nqn`` (before anything may connect one; harmless if none)."""
        self.journal.record(
            self.executor.node,
            f"nvme controllers of {nqn}",
            lambda: self.disconnect(nqn),
            replay=shlex.join(["nvme", "disconnect", "-n", nqn]),
            executor=self.executor,
        )

    def ensure_live(self, specs: tuple[ConnectSpec, ...], *, grace: float) -> tuple[str, ...]:
        """The subsystem's controllers once live; reconnected if they are not live within ``grace`` seconds.

        After a fabric fault is repaired the kernel reconnects on its own every
        ``reconnect_delay``, but a controller can stay ``connecting`` until
        ``ctrl_loss_tmo`` (seen with nvme-rdma over rxe after its netdev went
        down and up). Dropping it and connecting afresh is what an operator would
        do; the disconnect already journaled by :meth:`connect` still covers it.
        The disconnect may take long: the kernel deletes the controller only
        after its reconnect attempt in flight gives up, and an RDMA CM exchange
        that started while the port came back was seen to need ~100 s for that.
        """
        nqn = specs[0].subsystem_nqn
        try:
            live = self._wait_live(nqn, grace)
            if len(live) >= len(specs):
                return tuple(sorted(live))
            log_step(self.executor.node, f"{len(live)} of {len(specs)} paths of {nqn} came back")
        except DriverError as error:
            log_step(self.executor.node, f"{error}; disconnect and connect again")
        self.disconnect(nqn, timeout=STUCK_DELETE_TIMEOUT)
        return tuple(sorted(c for spec in specs for c in self._connect(spec)))

    def _connect(self, spec: ConnectSpec) -> tuple[str, ...]:
        before = self._controllers(spec.subsystem_nqn)
        command = ["nvme", "connect", *spec.args(), "-n", spec.subsystem_nqn, "-q", self.hostnqn()]
        if spec.ctrl_loss_tmo is not None:
            command += ["--ctrl-loss-tmo", str(spec.ctrl_loss_tmo)]
        if spec.reconnect_delay is not None:
            command += ["--reconnect-delay", str(spec.reconnect_delay)]
        if spec.keep_alive_tmo is not None:
            command += ["--keep-alive-tmo", str(spec.keep_alive_tmo)]
        log_step(self.executor.node, f"nvme connect {spec.trtype} {spec.traddr} {spec.subsystem_nqn}")
        marker = mark_kernel_log(self.executor, f"nvme connect {spec.subsystem_nqn}")
        result = self.executor.run(shlex.join(command), timeout=120, check=False)
        if not result.ok:
            # nvme-cli only says EINVAL; the host's kernel names why it refused (e.g. "Invalid MNAN value").
            said = [line for line in kernel_lines_since(self.executor, marker) if "nvme" in line][-3:]
            why = (
                f"its kernel logged: {' | '.join(line.strip() for line in said)}"
                if said
                else "check the target exports the subsystem on that address and allows this host NQN"
            )
            raise DriverError(
                f"{self.executor.node}: `{shlex.join(command)}` failed: {(result.stderr or result.stdout).strip()};"
                f" {why}"
            )
        new = tuple(sorted(set(self._wait_live(spec.subsystem_nqn, 60.0)) - set(before)))
        if not new:
            raise DriverError(
                f"{self.executor.node}: nvme connect to {spec.subsystem_nqn} succeeded but no new controller appeared"
            )
        if spec.fast_io_fail_tmo is not None:
            # nvme-cli 2.3 has no option for it; the controller's sysfs attribute does, where the kernel has
            # it (5.10 has none: its I/O then waits for the reconnect, up to ctrl_loss_tmo, as it always did).
            for controller in new:
                name = plain_name(self.executor.node, "nvme controller", controller)
                attribute = f"/sys/class/nvme/{name}/fast_io_fail_tmo"
                if not self.executor.run(f"test -e {attribute}", timeout=30, check=False).ok:
                    log_step(self.executor.node, f"{name}: this kernel has no fast_io_fail_tmo; left at its default")
                    continue
                write(self.executor, attribute, str(spec.fast_io_fail_tmo))
        return new

    def _controllers(self, nqn: str) -> list[str]:
        return [p.name for s in self.subsystems() if s.nqn == nqn for p in s.paths]

    def _wait_live(self, nqn: str, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            paths = [p for s in self.subsystems() if s.nqn == nqn for p in s.paths]
            if paths and all(p.state == "live" for p in paths):
                return [p.name for p in paths]
            if time.monotonic() > deadline:
                states = ", ".join(f"{p.name}={p.state}" for p in paths) or "no controller"
                raise DriverError(
                    f"{self.executor.node}: controllers of {nqn} not live after {timeout:.0f}s ({states})"
                )
            time.sleep(1.0)

    def wait_live(self, nqn: str, timeout: float = 60.0) -> list[str]:
        """Wait until every path of the subsystem is live again (after a fabric fault is repaired)."""
        return self._wait_live(nqn, timeout)

    def namespace_device(self, nqn: str, nsid: int = 1, timeout: float = 30.0) -> NvmeDevice:
        """The block device of namespace ``nsid`` of subsystem ``nqn``, polled until it exists.

        With native multipath (several paths) the head device under the
        subsystem (nvme<subsys>n<nsid>) is the one to use; without it, the
        controller's own nvme<ctrl>n<nsid>.
        """
        deadline = time.monotonic() + timeout
        while True:
            for subsystem in self.subsystems():
                if subsystem.nqn != nqn:
                    continue
                node = self.executor.node
                names = [f"/sys/class/nvme-subsystem/{plain_name(node, 'nvme subsystem', subsystem.name)}"] + [
                    f"/sys/class/nvme/{plain_name(node, 'nvme controller', p.name)}" for p in subsystem.paths
                ]
                probe = " ".join(f"{shlex.quote(n)}/nvme*n*/nsid" for n in names)
                out = self.executor.run(f"grep -H . {probe} 2>/dev/null; true", timeout=30).stdout
                for line in out.splitlines():
                    where, _, value = line.partition(":")
                    block = where.split("/")[-2]
                    if value.strip() == str(nsid) and re.match(r"^nvme\d+n\d+$", block):
                        path = f"/dev/{block}"
                        if self.executor.run(f"test -b {shlex.quote(path)}", timeout=30, check=False).ok:
                            return self._listed(path)
            if time.monotonic() > deadline:
                raise DriverError(
                    f"{self.executor.node}: no block device for namespace {nsid} of {nqn} after {timeout:.0f}s"
                )
            time.sleep(0.5)

    def _listed(self, path: str) -> NvmeDevice:
        for device in self.devices():
            if device.path == path:
                return device
        return NvmeDevice(path, None, "", "", None)

    def disconnect(self, nqn: str, timeout: float = 60.0) -> None:
        """Disconnect every controller of ``nqn`` and wait until none is left."""
        log_step(self.executor.node, f"nvme disconnect -n {nqn}")
        try:
            self.executor.run(shlex.join(["nvme", "disconnect", "-n", nqn]), timeout=timeout)
        except CommandError:
            if not self._controllers(nqn):
                return  # nothing was connected: the disconnect had nothing to do
            raise
        deadline = time.monotonic() + timeout
        while self._controllers(nqn):
            if time.monotonic() > deadline:
                raise DriverError(
                    f"{self.executor.node}: controllers of {nqn} still present {timeout:.0f}s after nvme disconnect"
                )
            time.sleep(1.0)
