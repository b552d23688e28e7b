"""The SPDK target driver speaks SPDK's JSON-RPC exactly as SPDK's own client does.

A real SPDK target cannot run here: ``nvmf_tgt`` needs a DPDK build and
hugepages (the seeds ask for ≥ 6 GB), and its FC transport needs the vendor
LLD — none of which this machine has. So the contract is checked against SPDK
itself in two ways, with no hand-written expectations:

- the request params the driver sends are compared with what the ``spdk``
  package's own ``rpc.py`` CLI (``spdk.spdk_rpc``, PyPI ``spdk``) builds for the
  equivalent command line, captured with its dry-run client;
- the node-side transport is run for real (a ``python3`` subprocess through the
  LocalExecutor, with and without the ``spdk`` package importable) against a
  unix-socket server standing in for ``nvmf_tgt`` that answers with the
  example responses of SPDK's ``doc/jsonrpc.md`` (``nvmf_subsystem_add_ns`` →
  the nsid, the rest → ``true``, errors as ``{"code", "message"}``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fabqual.drivers.journal import Journal
from fabqual.drivers.rundir import RunDirs
from fabqual.drivers.spdk import Listener, NodeRpcClient, RpcError, SpdkTarget
from fabqual.drivers.sweep import sweep_node
from fabqual.drivers.target_spdk import SPDK_ADRFAM
from fabqual.errors import DriverError, LabError
from fabqual.executors.local import LocalExecutor
from fabqual.testing.dead_run import dead_owner

spdk_rpc = pytest.importorskip("spdk.spdk_rpc", reason="the spdk package (PyPI) is needed for the contract")
from spdk.rpc.client import JSONRPCDryRunClient  # noqa: E402

NQN = "nqn.2024-01.io.fabqual:fc-nvme"


def rpc_py(*argv: str) -> dict[str, Any]:
    """The request SPDK's own rpc.py builds for ``rpc.py ARGV`` (dry run, nothing sent)."""
    parser, _ = spdk_rpc.create_parser()
    args = parser.parse_args(list(argv))
    client = JSONRPCDryRunClient(batch_mode=True)
    args.client = client
    args.func(args)
    (request,) = client._reqs
    return {"method": request["method"], "params": request.get("params", {})}


def assert_same_request(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Same method, every param we send equal to rpc.py's; rpc.py may add only its unset boolean flags.

    rpc.py sends ``store_true`` options it was not given (``ana_reporting: false``,
    ``no_srq: false``...); SPDK applies the same defaults when they are absent.
    """
    assert ours["method"] == theirs["method"]
    _same_params(ours["method"], ours["params"], theirs["params"])


def _same_params(where: str, ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    for key, value in ours.items():
        if isinstance(value, dict) and isinstance(theirs.get(key), dict):
            _same_params(f"{where}.{key}", value, theirs[key])
        else:
            assert theirs.get(key) == value, f"{where}.{key}: we send {value!r}, rpc.py {theirs.get(key)!r}"
    extra = {k: v for k, v in theirs.items() if k not in ours}
    assert all(isinstance(v, bool) for v in extra.values()), f"{where}: rpc.py also sends {extra}"


class Recorder:
    """An RpcClient that records requests and answers like doc/jsonrpc.md's examples."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers = {"nvmf_get_transports": [], "nvmf_subsystem_add_ns": 1, "bdev_aio_create": "fabqual_nullb0"}
        self.answers.update(answers or {})

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self.requests.append({"method": method, "params": params or {}})
        return self.answers.get(method, True)

    def replay_command(self, method: str, params: dict[str, Any]) -> None:
        return None  # nothing on a node to replay it against


def target(recorder: Recorder) -> tuple[SpdkTarget, Journal]:
    journal = Journal()
    return SpdkTarget(recorder, journal, "tgt", scratch_paths=("/dev/nullb0",)), journal


def test_bring_up_requests_match_spdk_rpc_py() -> None:
    """Every bring-up request equals what `rpc.py` sends for the same operation."""
    recorder = Recorder()
    spdk, _ = target(recorder)
    spdk.ensure_transport("fc")
    spdk.create_subsystem(NQN, allow_any_host=True, serial_number="FABQUAL0001", model_number="fabqual")
    spdk.add_host(NQN, "nqn.2014-08.org.nvmexpress:uuid:0f01fb42-9f7f-4856-b0b3-51e60b8de349")
    bdev = spdk.create_aio_bdev("fabqual_nullb0", "/dev/nullb0")
    spdk.add_namespace(NQN, bdev, nsid=1)
    spdk.add_listener(NQN, Listener("FC", "nn-0x10001100ab000001:pn-0x20001100ab000001", adrfam="FC"))
    spdk.add_listener(NQN, Listener("rdma", "192.168.77.1", "4420", "IPv4"))

    expected = [
        {"method": "nvmf_get_transports", "params": {}},
        rpc_py("nvmf_create_transport", "-t", "FC"),
        rpc_py("nvmf_create_subsystem", NQN, "-a", "-s", "FABQUAL0001", "-d", "fabqual"),
        rpc_py("nvmf_subsystem_add_host", NQN, "nqn.2014-08.org.nvmexpress:uuid:0f01fb42-9f7f-4856-b0b3-51e60b8de349"),
        rpc_py("bdev_aio_create", "/dev/nullb0", "fabqual_nullb0", "4096"),
        rpc_py("nvmf_subsystem_add_ns", NQN, "fabqual_nullb0", "-n", "1"),
        rpc_py(
            "nvmf_subsystem_add_listener",
            NQN,
            "-t",
            "FC",
            "-a",
            "nn-0x10001100ab000001:pn-0x20001100ab000001",
            "-f",
            "FC",
        ),
        rpc_py("nvmf_subsystem_add_listener", NQN, "-t", "RDMA", "-a", "192.168.77.1", "-s", "4420", "-f", "IPv4"),
    ]
    assert len(recorder.requests) == len(expected)
    for ours, theirs in zip(recorder.requests, expected, strict=True):
        assert_same_request(ours, theirs)


def test_teardown_deletes_in_reverse_with_spdk_shapes() -> None:
    """down removes listener, namespace, bdev, host and subsystem, newest first, as rpc.py would."""
    recorder = Recorder()
    spdk, journal = target(recorder)
    spdk.create_subsystem(NQN, allow_any_host=False)
    spdk.add_host(NQN, "nqn.2014-08.org.nvmexpress:uuid:1")
    spdk.add_namespace(NQN, spdk.create_aio_bdev("fabqual_nullb0", "/dev/nullb0"))
    spdk.add_listener(NQN, Listener("TCP", "192.168.77.1", "4420", "IPv4"))
    recorder.requests.clear()
    journal.undo_all()
    expected = [
        rpc_py("nvmf_subsystem_remove_listener", NQN, "-t", "TCP", "-a", "192.168.77.1", "-s", "4420", "-f", "IPv4"),
        rpc_py("nvmf_subsystem_remove_ns", NQN, "1"),
        rpc_py("bdev_aio_delete", "fabqual_nullb0"),
        rpc_py("nvmf_subsystem_remove_host", NQN, "nqn.2014-08.org.nvmexpress:uuid:1"),
        rpc_py("nvmf_delete_subsystem", NQN),
    ]
    assert len(recorder.requests) == len(expected)
    for ours, theirs in zip(recorder.requests, expected, strict=True):
        assert_same_request(ours, theirs)


def test_a_path_taken_away_and_given_back_uses_spdk_shapes_and_teardown_skips_a_gone_one() -> None:
    """remove/re-add listener as rpc.py sends them; a listener still removed at teardown is not removed twice."""
    recorder = Recorder()
    spdk, journal = target(recorder)
    first, second = Listener("RDMA", "192.168.77.1", "4420", "IPv4"), Listener("RDMA", "192.168.77.1", "4421", "IPv4")
    spdk.create_subsystem(NQN, allow_any_host=True)
    spdk.add_listener(NQN, first)
    spdk.add_listener(NQN, second)
    recorder.requests.clear()
    spdk.remove_listener(NQN, first)
    spdk.readd_listener(NQN, first)
    spdk.remove_listener(NQN, second)  # left gone, as after an interrupted fault test
    journal.undo_all()
    expected = [
        rpc_py("nvmf_subsystem_remove_listener", NQN, "-t", "RDMA", "-a", "192.168.77.1", "-s", "4420", "-f", "IPv4"),
        rpc_py("nvmf_subsystem_add_listener", NQN, "-t", "RDMA", "-a", "192.168.77.1", "-s", "4420", "-f", "IPv4"),
        rpc_py("nvmf_subsystem_remove_listener", NQN, "-t", "RDMA", "-a", "192.168.77.1", "-s", "4421", "-f", "IPv4"),
        rpc_py("nvmf_subsystem_remove_listener", NQN, "-t", "RDMA", "-a", "192.168.77.1", "-s", "4420", "-f", "IPv4"),
        rpc_py("nvmf_delete_subsystem", NQN),
    ]
    assert len(recorder.requests) == len(expected)
    for ours, theirs in zip(recorder.requests, expected, strict=True):
        assert_same_request(ours, theirs)


def test_existing_transport_is_not_created_again() -> None:
    recorder = Recorder({"nvmf_get_transports": [{"trtype": "RDMA", "max_queue_depth": 128}]})
    spdk, _ = target(recorder)
    assert spdk.ensure_transport("rdma") is False
    assert [r["method"] for r in recorder.requests] == ["nvmf_get_transports"]


def test_non_scratch_device_is_refused_before_any_request() -> None:
    recorder = Recorder()
    spdk, _ = target(recorder)
    with pytest.raises(DriverError, match=r"refusing to make an SPDK bdev of /dev/sda: not a declared scratch"):
        spdk.create_aio_bdev("root", "/dev/sda")
    assert recorder.requests == []


# --- the node-side transport, run for real against a socket speaking doc/jsonrpc.md's examples ---

DOC_RESULTS: dict[str, Any] = {"nvmf_subsystem_add_ns": 3, "nvmf_get_transports": []}


@pytest.fixture
def fake_nvmf_tgt(tmp_path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with serving_like_nvmf_tgt(str(tmp_path / "spdk.sock")) as served:
        yield served


@contextlib.contextmanager
def serving_like_nvmf_tgt(path: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A unix socket answering one JSON-RPC request per connection, as nvmf_tgt's RPC server does."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    seen: list[dict[str, Any]] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                buf = b""
                while True:
                    buf += conn.recv(65536)
                    try:
                        request = json.loads(buf)
                        break
                    except json.JSONDecodeError:
                        continue
                seen.append(request)
                if request["method"] == "nvmf_create_subsystem" and request["params"]["nqn"] == "bad":
                    reply = {
                        "jsonrpc": "2.0",
                        "id": request["id"],
                        "error": {"code": -32602, "message": "Invalid parameters"},
                    }
                else:
                    reply = {"jsonrpc": "2.0", "id": request["id"], "result": DOC_RESULTS.get(request["method"], True)}
                conn.sendall(json.dumps(reply, indent=2).encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path, seen
    finally:
        # Wake the thread out of accept() before the descriptor is closed: a thread still blocked on
        # a closed listener's number would answer the next socket that reuses it (a later test's).
        server.shutdown(socket.SHUT_RDWR)
        thread.join(timeout=10)
        server.close()


@pytest.mark.parametrize(
    "python",
    [pytest.param("/usr/bin/python3", id="minimal-client"), pytest.param(sys.executable, id="spdk-package-client")],
)
def test_node_client_round_trip(fake_nvmf_tgt: tuple[str, list[dict[str, Any]]], python: str) -> None:
    """Requests reach the socket as JSON-RPC 2.0; results and errors come back as SPDK documents them."""
    if not os.path.exists(python):
        pytest.skip(f"{python} is not installed")
    path, seen = fake_nvmf_tgt
    client = NodeRpcClient(LocalExecutor("tgt"), path, timeout=10, python=python)
    assert client.call("nvmf_subsystem_add_ns", {"nqn": NQN, "namespace": {"bdev_name": "Nvme0n1", "nsid": 3}}) == 3
    assert client.call("nvmf_delete_subsystem", {"nqn": NQN}) is True
    assert seen[0] == {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "nvmf_subsystem_add_ns",
        "params": {"nqn": NQN, "namespace": {"bdev_name": "Nvme0n1", "nsid": 3}},
    }
    with pytest.raises(RpcError, match=r"tgt: SPDK refused nvmf_create_subsystem .*Invalid parameters \(code -32602\)"):
        client.call("nvmf_create_subsystem", {"nqn": "bad"})


def test_node_client_names_a_missing_target(tmp_path: Path) -> None:
    client = NodeRpcClient(LocalExecutor("tgt"), str(tmp_path / "absent.sock"), timeout=5, python="/usr/bin/python3")
    with pytest.raises(LabError, match=r"tgt: cannot talk to SPDK at .*absent.sock: .*is nvmf_tgt running"):
        client.call("nvmf_get_transports")


def test_nvme_tcp_transport_and_listener_match_spdk_rpc_py() -> None:
    """The nvme_tcp link on an SPDK target: its TCP transport and listener are what `rpc.py` sends."""
    recorder = Recorder()
    spdk, _ = target(recorder)
    assert spdk.ensure_transport("tcp") is True
    spdk.add_listener(NQN, Listener("tcp", "192.168.77.1", "4420", SPDK_ADRFAM["tcp"]))
    expected = [
        {"method": "nvmf_get_transports", "params": {}},
        rpc_py("nvmf_create_transport", "-t", "TCP"),
        rpc_py("nvmf_subsystem_add_listener", NQN, "-t", "TCP", "-a", "192.168.77.1", "-s", "4420", "-f", "IPv4"),
    ]
    assert len(recorder.requests) == len(expected)
    for ours, theirs in zip(recorder.requests, expected, strict=True):
        assert_same_request(ours, theirs)


def test_a_killed_runs_spdk_objects_are_deleted_by_a_later_sweep(tmp_path: Path) -> None:
    """SPDK undo steps are journaled as shell commands: a later process's sweep sends the deletes of a
    killed run newest first, byte-exact even for names a shell would read as code, to the real socket."""
    dead = dead_owner()
    marker = tmp_path / "pwned"
    nqn = f"nqn.2024-01.io.fabqual:x'; touch {marker}; echo '$(touch {marker})"
    sock_dir = Path(tempfile.mkdtemp(prefix="fq 's$(x) "))  # AF_UNIX paths are short: not under tmp_path
    runs = str(tmp_path / "runs")
    local = LocalExecutor("tgt")
    try:
        with serving_like_nvmf_tgt(str(sock_dir / "spdk.sock")) as (path, seen):
            journal = Journal(RunDirs(lambda _node: local, dead, root=runs))
            spdk = SpdkTarget(NodeRpcClient(local, path, timeout=10, python="/usr/bin/python3"), journal, "tgt",
                              scratch_paths=("/dev/nullb0",))  # fmt: skip
            spdk.create_subsystem(nqn, allow_any_host=False)
            spdk.add_host(nqn, "nqn.2014-08.org.nvmexpress:uuid:0f01fb42")
            spdk.create_aio_bdev("fabqual_nullb0", "/dev/nullb0")
            spdk.add_namespace(nqn, "fabqual_nullb0")
            spdk.add_listener(nqn, Listener("tcp", "192.168.77.1", "4420", "IPv4"))
            # The process is killed here: nothing undoes the journal in it.
            made = len(seen)
            result = sweep_node(local, root=runs)
            deletes = seen[made:]
        assert len(result.undone) == 5 and not result.already_gone and not result.not_replayable, result.line()
        assert [(r["method"], r["params"]) for r in deletes] == [
            ("nvmf_subsystem_remove_listener", {"nqn": nqn, "listen_address": Listener("tcp", "192.168.77.1", "4420",
                                                                                      "IPv4").params()}),
            ("nvmf_subsystem_remove_ns", {"nqn": nqn, "nsid": 3}),
            ("bdev_aio_delete", {"name": "fabqual_nullb0"}),
            ("nvmf_subsystem_remove_host", {"nqn": nqn, "host": "nqn.2014-08.org.nvmexpress:uuid:0f01fb42"}),
            ("nvmf_delete_subsystem", {"nqn": nqn}),
        ]  # fmt: skip
        assert not marker.exists()
        assert os.listdir(runs) == []
        # A step whose target is gone is reported as such, not as undone.
        journal2 = Journal(RunDirs(lambda _node: local, dead, root=runs))
        absent = str(sock_dir / "absent.sock")
        gone = SpdkTarget(NodeRpcClient(local, absent, timeout=5, python="/usr/bin/python3"), journal2, "tgt",
                          scratch_paths=())  # fmt: skip
        gone._undo("SPDK subsystem x", "nvmf_delete_subsystem", {"nqn": "x"})
        again = sweep_node(local, root=runs)
        assert again.already_gone == ["SPDK subsystem x"] and again.undone == [], again.line()
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
