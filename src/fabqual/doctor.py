"""Doctor: does each node have what its links need? One actionable line per problem.

What a node needs is derived from the links it serves (link type, role, backend,
emulation); the checks run through the node's executor, so the same code checks
a lab rack, the emulated lab or the local machine. ``fabqual doctor`` prints the
problems; the pytest plugin turns them into errors for the links they block.
"""

from __future__ import annotations

import re
import shlex
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from fabqual.drivers.fc_host import TARGET_MODE_FIX, fc_host_by_wwpn, target_mode_problem
from fabqual.drivers.scratch import check_scratch
from fabqual.errors import FabqualError
from fabqual.executors.base import Executor
from fabqual.linkspec import link_spec
from fabqual.requirement import Requirement
from fabqual.tools.declare import probe_for
from fabqual.topology.grammar import DISCOVER, check_firmware_file, check_module, check_node_path
from fabqual.topology.model import Link, Node, Topology, normalize_wwn


@dataclass(frozen=True)
class Problem:
    """A requirement a node does not meet, the links it blocks, and how to fix it."""

    node: str
    what: str
    fix: str
    links: tuple[str, ...]

    def line(self) -> str:
        return f"{self.node}: {self.what}; {self.fix} (blocks {', '.join(self.links)})"


@dataclass(frozen=True)
class DoctorReport:
    problems: tuple[Problem, ...]
    checked: dict[str, int]

    def problems_for(self, link: str) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if link in p.links)

    @property
    def ok(self) -> bool:
        return not self.problems


# Tools no tool module runs, and how to tell they are usable: (command probing it, minimum version, package).
# fio, perftest, iperf3 and ping declare their own probes next to their parsers (fabqual.tools.declare).
TOOLS: dict[str, tuple[str, tuple[int, ...], str]] = {
    "nvme": ("nvme version", (1, 6), "nvme-cli"),
    "ibv_devinfo": ("command -v ibv_devinfo", (), "ibverbs-utils"),
    "rdma": ("command -v rdma", (), "iproute2"),
    "sg_inq": ("command -v sg_inq", (), "sg3-utils"),
    "python3": ("python3 --version", (3, 9), "python3"),
    # What proves a scratch device unused before it is exported (drivers/blockdev.py).
    "blkid": ("command -v blkid", (), "util-linux"),
    "wipefs": ("command -v wipefs", (), "util-linux"),
    "findmnt": ("command -v findmnt", (), "util-linux"),
    "lsblk": ("command -v lsblk", (), "util-linux"),
}


def requirements_of(topology: Topology) -> dict[str, dict[Requirement, set[str]]]:
    """For each node: each requirement, with the names of the links that need it."""
    needs: dict[str, dict[Requirement, set[str]]] = defaultdict(lambda: defaultdict(set))
    for link in topology.links:
        for role, end in link.endpoints.items():
            node = topology.node(end.node)
            for requirement in _endpoint_requirements(link, role, node, end.device):
                needs[node.name][requirement].add(link.name)
    return needs


def _endpoint_requirements(link: Link, role: str, node: Node, device: str | None) -> list[Requirement]:
    """What the link type's spec says this endpoint's node needs."""
    return list(link_spec(link.type).requirements(link, role, node, device))


Check = Callable[[Executor, Requirement], "tuple[str, str] | None"]


def check_requirement(executor: Executor, req: Requirement) -> tuple[str, str] | None:
    """None when met, else (what is wrong, how to fix it)."""
    return _CHECKS[req.kind](executor, req)


def _check_module(executor: Executor, req: Requirement) -> tuple[str, str] | None:
    name = req.name
    if check_module(name):  # the loader refuses such names; this keeps the probe safe without it
        return f"{name!r} is not a kernel module name", "correct the driver in the topology"
    sys_name = name.replace("-", "_")
    probe = f"test -d {shlex.quote('/sys/module/' + sys_name)} || modprobe -n -q {shlex.quote(name)}"
    if executor.run(probe, check=False, timeout=30).ok:
        return None
    fix = {
        "nvme-fcloop": "build it out of tree from linux-source (the emulated lab does this) and install it",
        "qla2xxx": "install the QLogic driver (qla2xxx >= 10.02 for FC-NVMe)",
        "qedr": "install the Marvell FastLinQ driver (qede + qedr)",
        "vmw_pvrdma": "install rdma-core and a kernel with vmw_pvrdma in the VM",
    }.get(name, f"install the kernel modules package that provides {name} for kernel $(uname -r)")
    return f"kernel module {name} is missing", fix


def _check_tool(executor: Executor, req: Requirement) -> tuple[str, str] | None:
    declared = probe_for(req.name)
    if declared is not None:
        probe, minimum, package = declared.command, declared.minimum, declared.package
    else:
        probe, minimum, package = TOOLS[req.name]
    result = executor.run(probe, check=False, timeout=30)
    if not result.ok:
        return f"tool {req.name} is missing", f"install the {package} package"
    if minimum:
        found = _version(result.stdout + result.stderr)
        if found is None:
            return f"cannot read the version of {req.name} from `{probe}`", f"install a working {package}"
        if found < minimum:
            have = ".".join(map(str, found))
            need = ".".join(map(str, minimum))
            return f"{req.name} {have} is too old (need >= {need})", f"upgrade {package}"
    return None


def _check_configfs(executor: Executor, req: Requirement) -> tuple[str, str] | None:
    if executor.run(f"grep -q {shlex.quote(f' {req.name} configfs ')} /proc/mounts", check=False, timeout=30).ok:
        return None
    return "configfs is not mounted", f"mount -t configfs none {req.name}"


def _check_hugepages(executor: Executor, req: Requirement) -> tuple[str, str] | None:
    meminfo = executor.run("cat /proc/meminfo", timeout=30).stdout
    total = re.search(r"HugePages_Total:\s+(\d+)", meminfo)
    size = re.search(r"Hugepagesize:\s+(\d+) kB", meminfo)
    have_gb = (int(total.group(1)) * int(size.group(1)) / 1024**2) if total and size else 0.0
    need_gb = float(req.name)
    if have_gb >= need_gb:
        return None
    return (
        f"only {have_gb:.1f} GB of hugepages (SPDK needs >= {need_gb:.0f} GB)",
        f"HUGEMEM={int(need_gb * 1024)} spdk/scripts/setup.sh, or set vm.nr_hugepages",
    )


def _check_spdk_socket(executor: Executor, req: Requirement) -> tuple[str, str] | None:
    if check_node_path(req.name):  # the loader refuses such paths; this keeps the probe safe without it
        return f"{req.name!r} is not a socket path", "correct nvme_target.rpc_socket in the topology"
    if executor.run(f"test -S {shlex.quote(req.name)}", check=False, timeout=30).ok:
        return None
    return f"no SPDK RPC socket at {req.name}", "start nvmf_tgt (or qfc_tgt) with -r pointing at that socket"


def _check_firmware(executor: Executor, req: Requirement) -> tuple[str, str] | None:
    if check_firmware_file(req.name):  # the loader refuses such names; this keeps the probe in /lib/firmware
        return f"{req.name!r} is not a firmware file name", "correct the firmware in the topology"
    main, updates = (shlex.quote(f"/lib/firmware/{where}{req.name}") for where in ("", "updates/"))
    if executor.run(f"test -f {main} || test -f {updates}", check=False).ok:
        return None
    return (
        f"firmware file /lib/firmware/{req.name} is missing",
        "install the HBA firmware package (e.g. firmware-qlogic)",
    )


def _check_rdma_port(executor: Executor, req: Requirement) -> tuple[str, str] | None:
    links = executor.run("rdma link show", check=False, timeout=30).stdout
    for line in links.splitlines():
        device_matches = req.name != "discover" and f"link {req.name}/" in line
        netdev_matches = req.detail != "discover" and f"netdev {req.detail}" in line
        if device_matches or netdev_matches:
            if "state ACTIVE" in line:
                return None
            return f"RDMA port is not active: {line.strip()}", "check the cable and switch port; reload the RNIC driver"
    return f"no RDMA device {req.name} (netdev {req.detail})", "load the RNIC driver (qedr) and check `rdma link show`"


def _check_fc_link(executor: Executor, req: Requirement) -> tuple[str, str] | None:
    script = 'for h in /sys/class/fc_host/*; do [ -d "$h" ] && echo $(cat $h/port_name) $(cat $h/port_state); done'
    lines = executor.run(script, check=False, timeout=30).stdout.split("\n")
    wanted = req.detail.lower().replace(":", "").removeprefix("0x")
    for line in filter(None, lines):
        wwpn, _, state = line.partition(" ")
        if req.detail == "discover" or wwpn.lower().removeprefix("0x") == wanted:
            if state.strip() == "Online":
                return None
            return (
                f"FC port {wwpn} of HBA {req.name} is {state.strip()}",
                "check the cable, the switch zoning and the HBA link",
            )
    return f"no FC port for HBA {req.name} ({req.detail})", "check that the HBA driver is loaded and sees the port"


def _check_target_mode(executor: Executor, req: Requirement) -> tuple[str, str] | None:
    port = fc_host_by_wwpn(executor, normalize_wwn(req.detail)) if req.detail not in ("", DISCOVER) else None
    why = target_mode_problem(executor, port.host if port else None)
    return (f"{why}, so no FC port can be an LIO target", TARGET_MODE_FIX) if why else None


def _check_scratch(executor: Executor, req: Requirement) -> tuple[str, str] | None:
    """Read-only: what bring-up would refuse (mounted, held, swap, root, signatures not to be wiped)."""
    return check_scratch(executor, req.scratch) if req.scratch is not None else None


def _version(text: str) -> tuple[int, ...] | None:
    match = re.search(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


_CHECKS: dict[str, Check] = {
    "module": _check_module,
    "tool": _check_tool,
    "configfs": _check_configfs,
    "hugepages": _check_hugepages,
    "spdk_socket": _check_spdk_socket,
    "firmware": _check_firmware,
    "rdma_port": _check_rdma_port,
    "fc_link": _check_fc_link,
    "target_mode": _check_target_mode,
    "scratch": _check_scratch,
}


def run_doctor(topology: Topology, executor_for: Callable[[str], Executor]) -> DoctorReport:
    """Check every node of ``topology`` against what its links need."""
    problems: list[Problem] = []
    checked: dict[str, int] = {}
    for node_name, needs in requirements_of(topology).items():
        all_links = tuple(sorted(set().union(*needs.values())))
        try:
            executor = executor_for(node_name)
            executor.run("true", timeout=30)
        except FabqualError as error:
            first = str(error).splitlines()[0]
            problems.append(
                Problem(
                    node_name,
                    f"unreachable ({first})",
                    "check the address, port and credentials in the topology",
                    all_links,
                )
            )
            continue
        checked[node_name] = len(needs)
        for req, links in needs.items():
            found = check_requirement(executor, req)
            if found is not None:
                what, fix = found
                problems.append(Problem(node_name, what, fix, tuple(sorted(links))))
    return DoctorReport(tuple(problems), checked)
