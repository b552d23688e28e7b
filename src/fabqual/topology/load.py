"""Load a topology YAML file into validated, frozen records.

Every problem is reported as one line: ``FILE: key.path: what is wrong (got VALUE)``.
Cross-references (a link naming a node, a namespace naming a scratch device)
are checked here too, so a bad file fails before any node is touched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fabqual import linkspec, targetspec  # module references: both import these records (no import-time cycle)
from fabqual.errors import TopologyError
from fabqual.topology.model import (
    SCRATCH_IDENTITY_KEYS,
    Endpoint,
    EsxiHost,
    LabReleases,
    Link,
    Node,
    RdmaPath,
    ScratchDevice,
    TcpPath,
    Topology,
    VCenter,
)
from fabqual.topology.records import build, checked, convert
from fabqual.topology.strict_yaml import parse, read_text

TOP_LEVEL_KEYS = ("name", "profile", "emulated", "lab", "nodes", "vcenters", "esxi_hosts", "links")


def load_topology(path: str | Path) -> Topology:
    """Read and validate ``path``; raise TopologyError naming the first problem."""
    text = read_text(path, "pass --topology with the path of your rack's file")
    return parse_topology(text, str(path))


def parse_topology(text: str, source: str) -> Topology:
    """Validate topology YAML ``text``; ``source`` names it in errors."""
    data = parse(text, source)
    if not isinstance(data, dict):
        raise TopologyError(source, "", "expected a mapping with 'name', 'nodes' and 'links' at the top")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise TopologyError(source, str(key), f"unknown key (known keys: {', '.join(TOP_LEVEL_KEYS)})")
    for key in ("name", "nodes", "links"):
        if key not in data:
            raise TopologyError(source, key, "required key is missing")

    name = checked(Topology, "name", data["name"], source, "name")
    profile = checked(Topology, "profile", data.get("profile", "default"), source, "profile")
    emulated = convert(bool, data.get("emulated", False), source, "emulated")
    lab = build(LabReleases, data["lab"], source, "lab") if "lab" in data else None
    nodes = convert(tuple[Node, ...], data["nodes"], source, "nodes")
    vcenters = convert(tuple[VCenter, ...], data.get("vcenters", []), source, "vcenters")
    esxi_hosts = convert(tuple[EsxiHost, ...], data.get("esxi_hosts", []), source, "esxi_hosts")
    raw_links = data["links"]
    if not isinstance(raw_links, list):
        raise TopologyError(source, "links", "expected a list of links")
    links = tuple(_build_link(raw, source, f"links[{i}]") for i, raw in enumerate(raw_links))

    topology = Topology(
        name=name,
        source=source,
        profile=profile,
        nodes=nodes,
        vcenters=vcenters,
        esxi_hosts=esxi_hosts,
        links=links,
        emulated=emulated,
        lab=lab,
    )
    _check_references(topology)
    return topology


def _build_link(raw: Any, source: str, path: str) -> Link:
    if not isinstance(raw, dict):
        raise TopologyError(source, path, "expected a mapping with 'name', 'type' and the endpoints")
    if "type" not in raw:
        raise TopologyError(
            source, f"{path}.type", f"required key is missing (one of {', '.join(linkspec.link_types())})"
        )
    link_type = raw["type"]
    if not isinstance(link_type, str) or link_type not in linkspec.link_types():
        raise TopologyError(source, f"{path}.type", f"{link_type!r} is not one of {', '.join(linkspec.link_types())}")
    spec = linkspec.link_spec(link_type)
    if "name" not in raw:
        raise TopologyError(source, f"{path}.name", "required key is missing")
    name = checked(Link, "name", raw["name"], source, f"{path}.name")
    path = f"links.{name}"
    emulated = convert(bool, raw.get("emulated", False), source, f"{path}.emulated")

    roles = tuple(spec.roles)
    endpoints = {}
    for role in roles:
        if role not in raw:
            raise TopologyError(
                source, f"{path}.{role}", f"required key is missing ({link_type} links have {' and '.join(roles)})"
            )
        endpoints[role] = build(Endpoint, raw[role], source, f"{path}.{role}")
    params_data = {k: v for k, v in raw.items() if k not in ("name", "type", "emulated", *roles)}
    params: object = build(spec.params, params_data, source, path)
    return Link(name=name, type=link_type, endpoints=endpoints, params=params, emulated=emulated)


def _check_references(topology: Topology) -> None:
    source = topology.source
    _no_duplicates(source, "nodes", (n.name for n in topology.nodes))
    _no_duplicates(source, "vcenters", (v.name for v in topology.vcenters))
    _no_duplicates(source, "esxi_hosts", (e.name for e in topology.esxi_hosts))
    _no_duplicates(source, "links", (link.name for link in topology.links))

    node_names = {n.name for n in topology.nodes}
    vcenter_names = {v.name for v in topology.vcenters}
    esxi_names = {e.name for e in topology.esxi_hosts}

    for node in topology.nodes:
        base = f"nodes.{node.name}"
        _check_credentials(source, base, node)
        _no_duplicates(source, f"{base}.hbas", (h.name for h in node.hbas))
        _no_duplicates(source, f"{base}.rnics", (r.name for r in node.rnics))
        _no_duplicates(source, f"{base}.scratch_devices", (s.name for s in node.scratch_devices))
        for i, scratch in enumerate(node.scratch_devices):
            _check_scratch_naming(source, f"{base}.scratch_devices[{i}]", scratch)
        _no_duplicates(source, f"{base}.scratch_devices", (s.declared for s in node.scratch_devices), what="device")
        for i, hba in enumerate(node.hbas):
            if hba.emulation == "fcoe" and not hba.netdev:
                raise TopologyError(
                    source, f"{base}.hbas[{i}].netdev", "an FCoE-emulated HBA needs the netdev that carries it"
                )
        if node.vm is not None:
            if node.vm.vcenter not in vcenter_names:
                raise TopologyError(
                    source, f"{base}.vm.vcenter", f"no vCenter named {node.vm.vcenter!r} under 'vcenters'"
                )
            if node.vm.esxi_host not in esxi_names:
                raise TopologyError(
                    source, f"{base}.vm.esxi_host", f"no ESXi host named {node.vm.esxi_host!r} under 'esxi_hosts'"
                )
        if "nvme_target" in node.roles and node.nvme_target is None:
            raise TopologyError(
                source,
                f"{base}.nvme_target",
                "a node with role nvme_target must say which backend it runs"
                f" (one of {', '.join(targetspec.target_backends())})",
            )

    for vcenter in topology.vcenters:
        if not vcenter.tls_verify:
            raise TopologyError(
                source,
                f"vcenters.{vcenter.name}.tls_verify",
                f"false would send the password in ${vcenter.password_env} to a server nobody verified;"
                " keep tls_verify: true and pin the certificate with thumbprint: (SHA-1) or ca_file:",
            )

    for i, esxi in enumerate(topology.esxi_hosts):
        if esxi.vcenter not in vcenter_names:
            raise TopologyError(
                source, f"esxi_hosts[{i}].vcenter", f"no vCenter named {esxi.vcenter!r} under 'vcenters'"
            )

    for link in topology.links:
        _check_link(topology, link, node_names)


def _check_scratch_naming(source: str, base: str, scratch: ScratchDevice) -> None:
    """Exactly one of path/wwid/serial/eui names the device; a device fabqual creates is named by its path."""
    given = [key for key in SCRATCH_IDENTITY_KEYS if getattr(scratch, key) is not None]
    if len(given) != 1:
        keys = ", ".join(SCRATCH_IDENTITY_KEYS)
        found = f"got {' and '.join(given)}" if given else "got none"
        raise TopologyError(source, base, f"name the device with exactly one of {keys} ({found})")
    if scratch.create != "none" and scratch.path is None:
        raise TopologyError(source, f"{base}.path", f"create: {scratch.create} makes the device at a path; give path")


def _check_link(topology: Topology, link: Link, node_names: set[str]) -> None:
    source = topology.source
    spec = linkspec.link_spec(link.type)
    base = f"links.{link.name}"
    for role, end in link.endpoints.items():
        if end.node not in node_names:
            raise TopologyError(source, f"{base}.{role}.node", f"no node named {end.node!r} under 'nodes'")
        node = topology.node(end.node)
        needed_role = spec.roles[role]
        if needed_role not in node.roles:
            raise TopologyError(
                source,
                f"{base}.{role}.node",
                f"node {node.name!r} is used as {link.type} {role} but does not list role {needed_role!r}",
            )
        kind = spec.device_kind
        devices = {device.name for device in linkspec.DEVICE_KINDS[kind](node)} if kind else set()
        if kind and end.device is None:
            raise TopologyError(
                source, f"{base}.{role}.device", f"required: the {kind} of node {node.name!r} this link uses"
            )
        if end.device is not None and end.device not in devices:
            known = ", ".join(sorted(devices)) or "none"
            raise TopologyError(
                source,
                f"{base}.{role}.device",
                f"node {node.name!r} has no {kind or 'device'} named {end.device!r} (it has: {known})",
            )

    spec.check(topology, link)


def check_namespaces(topology: Topology, link: Link, namespaces: tuple[str, ...]) -> None:
    """An NVMe link exports at least one namespace, each a scratch device of its target node."""
    target = topology.node(link.end("target").node)
    scratch = {s.name for s in target.scratch_devices}
    base = f"links.{link.name}"
    if not namespaces:
        raise TopologyError(
            topology.source, f"{base}.namespaces", "list at least one scratch device of the target to export"
        )
    for i, ns in enumerate(namespaces):
        if ns not in scratch:
            raise TopologyError(
                topology.source,
                f"{base}.namespaces[{i}]",
                f"node {target.name!r} has no scratch device named {ns!r}; only scratch devices are ever exported",
            )


def check_vcenter(topology: Topology, link: Link, vcenter: str) -> None:
    """The vCenter a link names is under 'vcenters'."""
    if vcenter not in {v.name for v in topology.vcenters}:
        raise TopologyError(
            topology.source, f"links.{link.name}.vcenter", f"no vCenter named {vcenter!r} under 'vcenters'"
        )


def check_mtus(topology: Topology, link: Link, mtus: tuple[int, ...]) -> None:
    """Each MTU a link declares is one an IP interface can take."""
    for i, mtu in enumerate(mtus):
        if not 576 <= mtu <= 65535:
            raise TopologyError(
                topology.source, f"links.{link.name}.mtus[{i}]", f"an MTU is between 576 and 65535 (got {mtu})"
            )


def check_extra_paths(
    topology: Topology, link: Link, trsvcid: int, paths: tuple[RdmaPath | TcpPath, ...], kind: str
) -> None:
    """Each extra path names devices of ``kind`` (RNIC, NIC) the nodes have, and no two paths share a target port."""
    base = f"links.{link.name}.extra_paths"
    seen = {(link.end("target").device, trsvcid): "the link's own path"}
    for i, path in enumerate(paths):
        for role, device in (("target", path.target), ("host", path.host)):
            node = topology.node(link.end(role).node)
            names = {d.name for d in linkspec.DEVICE_KINDS[kind](node)}
            if device is not None and device not in names:
                known = ", ".join(sorted(names)) or "none"
                raise TopologyError(
                    topology.source,
                    f"{base}[{i}].{role}",
                    f"node {node.name!r} has no {kind} named {device!r} (it has: {known})",
                )
        port = (path.target or link.end("target").device, path.trsvcid)
        if port in seen:
            raise TopologyError(
                topology.source,
                f"{base}[{i}]",
                f"{kind} {port[0]!r} port {port[1]} is already {seen[port]}; give each path its own trsvcid or {kind}",
            )
        seen[port] = f"extra_paths[{i}]"


def _check_credentials(source: str, base: str, node: Node) -> None:
    creds = node.credentials
    ways = [
        w
        for w, on in (("key_file", creds.key_file), ("agent", creds.agent), ("password_env", creds.password_env))
        if on
    ]
    if len(ways) != 1:
        raise TopologyError(
            source,
            f"{base}.credentials",
            f"give exactly one of key_file, agent: true, password_env (got {', '.join(ways) or 'none'})",
        )
    if creds.password_env and not node.host_key_check:
        raise TopologyError(
            source,
            f"{base}.host_key_check",
            f"false cannot go with credentials.password_env: the password in ${creds.password_env} would go to"
            " a host whose key nobody checked; add its key to known_hosts (ssh-keyscan) and remove"
            " host_key_check: false, or log in with key_file or agent",
        )


def _no_duplicates(source: str, path: str, names: Iterable[str], what: str = "name") -> None:
    counts = Counter(names)
    for name, count in counts.items():
        if count > 1:
            raise TopologyError(source, path, f"{what} {name!r} is used {count} times; {what}s must be unique")
