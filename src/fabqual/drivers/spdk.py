"""SPDK NVMe-oF target (``nvmf_tgt``, or ``qfc_tgt`` with the QLogic FC transport) over JSON-RPC.

The target runs on a lab node and listens on a unix socket there. Each call is
run on that node through its executor: a small Python program reads the
JSON-RPC 2.0 request on stdin and talks to the socket with the ``spdk``
package's own client (``spdk.rpc.client.JSONRPCClient``, from PyPI or SPDK's
``python/`` tree) when the node has it, else with a minimal JSON-RPC 2.0
exchange (SPDK's wire format: one JSON object each way, no framing). Every
undo step is journaled with the same call as a shell command on the node, so a
later run's sweep replays what a killed run left (:mod:`fabqual.drivers.sweep`). The
requests themselves are built here in exactly the shapes SPDK's ``rpc.py``
sends (contract-tested in ``tests/self/integration/test_spdk_contract.py``).

SPDK has no RPC to delete a transport: a transport this driver creates lives
as long as the target process and is reported, not removed.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any, Protocol

from fabqual.drivers.journal import Journal
from fabqual.errors import DriverError, LabError
from fabqual.executors.base import Executor, log_step

# Runs on the target node: request JSON on stdin, response JSON on stdout.
NODE_CLIENT = r"""
import json, socket, sys
path, timeout = sys.argv[1], float(sys.argv[2])
check = sys.argv[3:4] == ["--check"]  # a replayed undo (request in argv[4]): exit non-zero unless SPDK did it
request = json.loads(sys.argv[4]) if check else json.load(sys.stdin)
try:
    from spdk.rpc.client import JSONRPCClient
except ImportError:
    JSONRPCClient = None
try:
    if JSONRPCClient is not None:
        client = JSONRPCClient(path, timeout=timeout)
        sent_id = client.send(request["method"], request.get("params"))
        response = client.recv()
        client.close()
        if isinstance(response, dict) and response.get("id") == sent_id:
            response["id"] = request["id"]  # the package numbers its own requests
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(request).encode())
        buf, decoder = "", json.JSONDecoder()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("connection closed before a complete response")
            buf += chunk.decode()
            try:
                response = decoder.raw_decode(buf.lstrip())[0]
                break
            except ValueError:
                continue
        sock.close()
except Exception as error:
    print(json.dumps({"transport_error": "%s: %s" % (type(error).__name__, error)}))
    sys.exit(3 if check else 0)
print(json.dumps(response))
sys.exit(1 if check and not (isinstance(response, dict) and "result" in response) else 0)
"""


class RpcClient(Protocol):
    def call(self, method: str, params: dict[str, Any] | None = None) -> Any: ...

    def replay_command(self, method: str, params: dict[str, Any]) -> str | None:
        """The same call as one shell command on the node, for a later process; None when there is none."""
        ...


class RpcError(DriverError):
    """SPDK answered a request with a JSON-RPC error object."""

    def __init__(self, node: str, method: str, params: dict[str, Any] | None, code: int, message: str) -> None:
        self.code = code
        self.rpc_message = message
        super().__init__(f"{node}: SPDK refused {method} {json.dumps(params or {})}: {message} (code {code})")


class NodeRpcClient:
    """JSON-RPC 2.0 to an SPDK socket on a node, one request per executor run."""

    def __init__(self, executor: Executor, socket_path: str, timeout: float = 60.0, python: str = "python3") -> None:
        self.executor = executor
        self.python = python
        self.socket_path = socket_path
        self.timeout = timeout
        self._next_id = 0

    def request(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        self._next_id += 1
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": self._next_id}
        if params:
            request["params"] = params
        return request

    def replay_command(self, method: str, params: dict[str, Any]) -> str:
        """One shell command making this call from another process (a later run's sweep replays a
        killed run's undo steps with it): it exits 0 only when SPDK answered with a result."""
        request = json.dumps({"jsonrpc": "2.0", "method": method, "id": 1, "params": params}, sort_keys=True)
        q = shlex.quote
        return f"{q(self.python)} -c {q(NODE_CLIENT)} {q(self.socket_path)} {self.timeout:g} --check {q(request)}"

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        request = self.request(method, params)
        command = f"{self.python} -c {shlex.quote(NODE_CLIENT)} {shlex.quote(self.socket_path)} {self.timeout}"
        result = self.executor.run(command, timeout=self.timeout + 30, stdin=json.dumps(request))
        try:
            response = json.loads(result.stdout)
        except json.JSONDecodeError:
            raise DriverError(
                f"{self.executor.node}: SPDK RPC {method} gave no JSON: {result.stdout.strip()[:200]!r}"
            ) from None
        if "transport_error" in response:
            raise LabError(
                f"{self.executor.node}: cannot talk to SPDK at {self.socket_path}: {response['transport_error']};"
                " is nvmf_tgt running with -r on that socket?"
            )
        return check_response(self.executor.node, request, response)


def check_response(node: str, request: dict[str, Any], response: Any) -> Any:
    """The ``result`` of a JSON-RPC 2.0 response to ``request``; an ``error`` raises RpcError."""
    if not isinstance(response, dict) or response.get("jsonrpc") != "2.0" or response.get("id") != request["id"]:
        raise DriverError(f"{node}: malformed JSON-RPC response to {request['method']}: {json.dumps(response)[:200]}")
    if "error" in response:
        error = response["error"]
        raise RpcError(
            node, request["method"], request.get("params"), int(error.get("code", 0)), str(error.get("message", ""))
        )
    if "result" not in response:
        raise DriverError(f"{node}: JSON-RPC response to {request['method']} has neither result nor error")
    return response["result"]


@dataclass(frozen=True)
class Listener:
    trtype: str  # RDMA, TCP, FC (SPDK spells them upper case)
    traddr: str
    trsvcid: str = ""
    adrfam: str = ""  # IPv4, IPv6, FC

    def params(self) -> dict[str, str]:
        address = {"trtype": self.trtype.upper(), "traddr": self.traddr}
        if self.trsvcid:
            address["trsvcid"] = self.trsvcid
        if self.adrfam:
            address["adrfam"] = self.adrfam
        return address


class SpdkTarget:
    """An SPDK target configured through RPC; every object it creates is journaled."""

    def __init__(self, client: RpcClient, journal: Journal, node: str, *, scratch_paths: tuple[str, ...]) -> None:
        self.client = client
        self.journal = journal
        self.node = node
        self.scratch_paths = scratch_paths
        self._stopped: set[tuple[str, Listener]] = set()  # listeners removed by remove_listener

    def _call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.client.call(method, params)

    def _undo(self, what: str, method: str, params: dict[str, Any]) -> None:
        replay = self.client.replay_command(method, params)
        self.journal.record(self.node, what, lambda: self._call(method, params), replay=replay)

    def ensure_transport(self, trtype: str, **options: int) -> bool:
        """Create the transport unless it exists; True when created here. Options as SPDK names them."""
        trtype = trtype.upper()
        existing = {str(t.get("trtype", "")).upper() for t in self._call("nvmf_get_transports") or []}
        if trtype in existing:
            return False
        log_step(self.node, f"SPDK create transport {trtype}")
        self._call("nvmf_create_transport", {"trtype": trtype, **options})
        return True

    def create_subsystem(
        self, nqn: str, *, allow_any_host: bool, serial_number: str = "FABQUAL0001", model_number: str = "fabqual"
    ) -> None:
        log_step(self.node, f"SPDK create subsystem {nqn}")
        self._call(
            "nvmf_create_subsystem",
            {
                "nqn": nqn,
                "serial_number": serial_number,
                "model_number": model_number,
                "allow_any_host": allow_any_host,
            },
        )
        self._undo(f"SPDK subsystem {nqn}", "nvmf_delete_subsystem", {"nqn": nqn})

    def add_host(self, nqn: str, hostnqn: str) -> None:
        log_step(self.node, f"SPDK allow host {hostnqn} on {nqn}")
        self._call("nvmf_subsystem_add_host", {"nqn": nqn, "host": hostnqn})
        self._undo(f"SPDK host {hostnqn} of {nqn}", "nvmf_subsystem_remove_host", {"nqn": nqn, "host": hostnqn})

    def create_aio_bdev(self, name: str, device_path: str, block_size: int = 4096) -> str:
        """A bdev over a scratch block device; anything not declared scratch is refused."""
        if device_path not in self.scratch_paths:
            raise DriverError(
                f"{self.node}: refusing to make an SPDK bdev of {device_path}: not a declared scratch device"
                f" ({', '.join(self.scratch_paths) or 'none declared'})"
            )
        log_step(self.node, f"SPDK aio bdev {name} over {device_path}")
        created = self._call("bdev_aio_create", {"filename": device_path, "name": name, "block_size": block_size})
        self._undo(f"SPDK bdev {name}", "bdev_aio_delete", {"name": name})
        return str(created)

    def add_namespace(self, nqn: str, bdev_name: str, nsid: int | None = None) -> int:
        namespace: dict[str, Any] = {"bdev_name": bdev_name}
        if nsid is not None:
            namespace["nsid"] = nsid
        log_step(self.node, f"SPDK add namespace {bdev_name} to {nqn}")
        assigned = self._call("nvmf_subsystem_add_ns", {"nqn": nqn, "namespace": namespace})
        if not isinstance(assigned, int) or assigned < 1:
            raise DriverError(f"{self.node}: nvmf_subsystem_add_ns returned {assigned!r}, not a namespace id")
        self._undo(f"SPDK namespace {assigned} of {nqn}", "nvmf_subsystem_remove_ns", {"nqn": nqn, "nsid": assigned})
        return assigned

    def add_listener(self, nqn: str, listener: Listener) -> None:
        self.readd_listener(nqn, listener)

        params = {"nqn": nqn, "listen_address": listener.params()}

        def undo() -> None:
            if (nqn, listener) not in self._stopped:  # a path a fault test took away may still be gone
                self._call("nvmf_subsystem_remove_listener", params)

        replay = self.client.replay_command("nvmf_subsystem_remove_listener", params)
        self.journal.record(self.node, f"SPDK listener {listener.traddr} of {nqn}", undo, replay=replay)

    def remove_listener(self, nqn: str, listener: Listener) -> None:
        """Stop listening on one address (one path taken away); :meth:`readd_listener` gives it back."""
        log_step(self.node, f"SPDK stop listening for {nqn} on {listener.traddr} {listener.trsvcid}")
        self._call("nvmf_subsystem_remove_listener", {"nqn": nqn, "listen_address": listener.params()})
        self._stopped.add((nqn, listener))

    def readd_listener(self, nqn: str, listener: Listener) -> None:
        log_step(self.node, f"SPDK listen {nqn} on {listener.trtype} {listener.traddr} {listener.trsvcid}")
        self._call("nvmf_subsystem_add_listener", {"nqn": nqn, "listen_address": listener.params()})
        self._stopped.discard((nqn, listener))
