"""The SSH executor against a real OpenSSH server started on 127.0.0.1 by the tests.

Nothing is mocked: every test talks to ``/usr/sbin/sshd`` through paramiko, and
processes are checked in ``/proc`` of this machine (the server runs here too).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabqual.errors import CommandError, CommandTimeoutError, LabError, NodeUnreachableError
from fabqual.executors import LocalExecutor, SshExecutor, executor_for_node
from fabqual.testing.sshd import SshServer, free_port, generate_key, known_hosts_line
from fabqual.topology.model import Credentials, Node


@pytest.fixture(scope="module")
def server() -> Iterator[SshServer]:
    """One sshd for the module's tests that do not count connections."""
    with SshServer() as srv:
        yield srv


@pytest.fixture
def fresh_server() -> Iterator[SshServer]:
    """An sshd of its own, for tests that count or drop its connections."""
    with SshServer() as srv:
        yield srv


def make_executor(srv: SshServer, **kwargs: object) -> SshExecutor:
    options: dict[str, object] = {"key_file": str(srv.client_key), "known_hosts": str(srv.known_hosts)}
    options.update(kwargs)
    return SshExecutor("n1", srv.host, srv.port, **options)  # type: ignore[arg-type]


@pytest.fixture
def ex(server: SshServer) -> Iterator[SshExecutor]:
    executor = make_executor(server)
    yield executor
    executor.close()


def processes_with(marker: str) -> list[int]:
    """PIDs on this machine whose command line contains ``marker``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in text and int(cmdline.parent.name) != os.getpid():
            found.append(int(cmdline.parent.name))
    return found


def ssh_source_port(executor: SshExecutor) -> str:
    """The client-side TCP port of the executor's connection, as the server sees it."""
    return executor.run("echo $SSH_CONNECTION").stdout.split()[1]


# -- running commands -----------------------------------------------------------------------


def test_run_returns_frozen_result_with_separate_streams(ex: SshExecutor) -> None:
    """A command's stdout, stderr, exit status, node, command text and duration all come back, unmixed."""
    result = ex.run("echo out; echo err >&2")
    assert result.node == "n1"
    assert result.command == "echo out; echo err >&2"
    assert result.exit_status == 0 and result.ok
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert 0 < result.duration < 30
    with pytest.raises(AttributeError):
        result.stdout = "changed"  # type: ignore[misc]


def test_argument_list_is_quoted_and_runs_in_posix_sh(ex: SshExecutor) -> None:
    """An argv list arrives argument by argument (spaces, quotes, $ intact) and runs under /bin/sh."""
    result = ex.run(["printf", "%s|", "a b", "it's", "$HOME"])
    assert result.stdout == "a b|it's|$HOME|"
    assert ex.run("readlink /proc/$$/exe").stdout.strip() == os.path.realpath("/bin/sh")


def test_nonzero_exit_raises_with_command_and_output_tail(ex: SshExecutor) -> None:
    """A non-zero exit raises CommandError carrying the result; the message names node, command, status, tail."""
    with pytest.raises(CommandError) as caught:
        ex.run("echo step1; echo 'boom: disk on fire' >&2; exit 7")
    assert caught.value.result.exit_status == 7
    assert caught.value.result.stdout == "step1\n"
    text = str(caught.value)
    assert "n1: `echo step1;" in text and "exited 7" in text
    assert "boom: disk on fire" in text.split("--- output tail ---")[1]


def test_check_false_returns_the_failure(ex: SshExecutor) -> None:
    """With check=False a failing command returns its result instead of raising."""
    result = ex.run("echo partial; exit 3", check=False)
    assert result.exit_status == 3 and not result.ok
    assert result.stdout == "partial\n"


def test_timeout_raises_with_output_and_kills_the_remote_processes(ex: SshExecutor) -> None:
    """A timeout raises with the output so far, on time, and kills the command's whole process group.

    The ``sleep`` is a child of the remote shell, so closing the channel alone would leave it running.
    """
    marker = "sleep 4242.5"
    start = time.monotonic()
    with pytest.raises(CommandTimeoutError) as caught:
        ex.run(f"echo started; {marker}; echo never", timeout=1.5)
    elapsed = time.monotonic() - start
    assert 1.4 < elapsed < 8, elapsed
    assert caught.value.output.strip() == "started"
    assert "timed out after 2s" in str(caught.value) or "timed out after 1s" in str(caught.value)
    deadline = time.monotonic() + 3
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == [], "the timed-out remote command is still running"
    assert ex.run("echo still usable").stdout == "still usable\n"


def test_stdin_is_fed_and_closed(ex: SshExecutor) -> None:
    """stdin text reaches the command and is closed after, so readers like `wc` finish."""
    result = ex.run("wc -l; cat", stdin="one\ntwo\nthree\n")
    assert result.stdout.split()[0] == "3"
    assert ex.run("cat", stdin="").stdout == ""


def test_large_stdin_echoed_back_does_not_deadlock(ex: SshExecutor) -> None:
    """6 MB of stdin through `cat` (more than both SSH windows) comes back whole: input and output interleave."""
    data = "0123456789abcdef" * 375_000 + "\n"
    result = ex.run("cat; echo fed >&2", stdin=data, timeout=120)
    assert len(result.stdout) == len(data) and result.stdout == data
    assert result.stderr == "fed\n"


def test_unread_stdin_neither_blocks_nor_fails(ex: SshExecutor) -> None:
    """A command that ignores a large stdin and exits succeeds; one that ignores it and hangs times out on time."""
    assert ex.run("echo ignored", stdin="x" * 5_000_000, timeout=60).stdout == "ignored\n"
    start = time.monotonic()
    with pytest.raises(CommandTimeoutError):
        ex.run("sleep 4444.5", stdin="x" * 5_000_000, timeout=2)
    assert time.monotonic() - start < 10


def test_output_larger_than_the_ssh_window_is_read_completely(ex: SshExecutor) -> None:
    """5 MB of stdout (more than paramiko's 2 MB window) plus stderr arrive whole, without a deadlock."""
    result = ex.run("head -c 5000000 /dev/zero | tr '\\0' x; echo done >&2", timeout=60)
    assert len(result.stdout) == 5_000_000 and set(result.stdout) == {"x"}
    assert result.stderr == "done\n"


def test_command_that_kills_its_connection_raises_node_unreachable(ex: SshExecutor) -> None:
    """If the connection dies mid-command, the error says so (the command is not re-sent); the next one reconnects."""
    with pytest.raises(NodeUnreachableError, match=r"connection lost while running `kill -KILL \$PPID`"):
        ex.run("kill -KILL $PPID")  # $PPID is the sshd process serving this connection
    assert ex.run("echo back").stdout == "back\n"


# -- files ----------------------------------------------------------------------------------


def test_upload_download_round_trip_is_binary_exact(ex: SshExecutor, tmp_path: Path) -> None:
    """Bytes of every value survive put and get unchanged (checked remotely by sha256 too); modes are kept."""
    payload = bytes(range(256)) * 4096 + os.urandom(100_001)
    src = tmp_path / "payload.bin"
    src.write_bytes(payload)
    src.chmod(0o750)
    remote = str(tmp_path / "remote-copy.bin")
    ex.put(src, remote)
    remote_sum = ex.run(["sha256sum", remote]).stdout.split()[0]
    assert remote_sum == hashlib.sha256(payload).hexdigest()
    assert ex.run(["stat", "-c", "%a", remote]).stdout.strip() == "750"
    back = tmp_path / "back.bin"
    ex.get(remote, back)
    assert back.read_bytes() == payload


def test_download_of_missing_file_names_it(ex: SshExecutor, tmp_path: Path) -> None:
    """Getting a file that does not exist raises one LabError naming the node and the remote path."""
    with pytest.raises(LabError, match=r"n1 \(root@127\.0\.0\.1:\d+\): cannot download /nonexistent/x") as caught:
        ex.get("/nonexistent/x", tmp_path / "x")
    assert not isinstance(caught.value, NodeUnreachableError)
    assert "\n" not in str(caught.value)


# -- connection, reuse and reconnect --------------------------------------------------------


def test_connection_is_opened_lazily_and_reused(fresh_server: SshServer) -> None:
    """No connection before the first command; then many commands and a transfer share one SSH connection."""
    executor = make_executor(fresh_server)
    try:
        time.sleep(0.2)  # let the server's readiness probe connection finish
        assert fresh_server.session_pids() == []
        ports = {ssh_source_port(executor) for _ in range(5)}
        executor.get("/etc/hostname", Path(fresh_server.dir) / "hostname")
        ports.add(ssh_source_port(executor))
        assert len(ports) == 1
        assert len(fresh_server.session_pids()) == 1
    finally:
        executor.close()


def test_reconnects_after_server_dropped_the_connection(fresh_server: SshServer) -> None:
    """When the server side drops the connection between commands, the next command reconnects and runs."""
    executor = make_executor(fresh_server)
    try:
        before = ssh_source_port(executor)
        fresh_server.drop_connections()
        after = ssh_source_port(executor)  # must not raise
        assert after != before
        fresh_server.drop_connections()
        executor.put(Path("/etc/hostname"), str(fresh_server.dir / "h"))  # SFTP reconnects too
        assert (fresh_server.dir / "h").read_bytes() == Path("/etc/hostname").read_bytes()
    finally:
        executor.close()


def test_close_then_use_again_reconnects(ex: SshExecutor) -> None:
    """close() releases the connection and the executor still works afterwards."""
    before = ssh_source_port(ex)
    ex.close()
    assert ssh_source_port(ex) != before


def test_keepalive_packets_are_sent_while_idle(fresh_server: SshServer) -> None:
    """With keepalive=1 an idle connection sends keep-alive requests that the server logs."""
    executor = make_executor(fresh_server, keepalive=1.0)
    try:
        executor.run("true")
        time.sleep(2.5)
        assert fresh_server.log_file.read_text().count("keepalive@lag.net") >= 1
    finally:
        executor.close()


# -- refusals: host keys, client keys, unreachable ------------------------------------------


def test_changed_host_key_is_refused(server: SshServer, tmp_path: Path) -> None:
    """A known_hosts entry with a different key for host:port refuses the connection, saying how to fix it."""
    other = generate_key(tmp_path / "other_host_key")
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts_line(server.host, server.port, other.with_suffix(".pub")))
    executor = make_executor(server, known_hosts=str(known))
    with pytest.raises(NodeUnreachableError) as caught:
        executor.run("true")
    text = str(caught.value)
    assert text.startswith(f"n1 (root@127.0.0.1:{server.port}): host key CHANGED")
    assert f"ssh-keygen -R '[127.0.0.1]:{server.port}'" in text and "\n" not in text


def test_unknown_host_key_is_refused(server: SshServer, tmp_path: Path) -> None:
    """A host missing from known_hosts is refused with the ssh-keyscan line and the opt-out named."""
    known = tmp_path / "known_hosts"
    known.write_text("")
    executor = make_executor(server, known_hosts=str(known))
    with pytest.raises(NodeUnreachableError) as caught:
        executor.run("true")
    text = str(caught.value)
    assert f"n1 (root@127.0.0.1:{server.port}): host key ssh-ed25519 SHA256:" in text
    assert f"ssh-keyscan -p {server.port} 127.0.0.1 >> {known}" in text
    assert "host_key_check: false" in text and "\n" not in text


def test_missing_known_hosts_file_is_named(server: SshServer, tmp_path: Path) -> None:
    """An explicitly given known_hosts file that does not exist is named in the error."""
    executor = make_executor(server, known_hosts=str(tmp_path / "nope"))
    with pytest.raises(NodeUnreachableError, match=r"known_hosts file .*/nope does not exist"):
        executor.run("true")


def test_host_key_check_off_accepts_with_a_warning(
    server: SshServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """check_host_key=False connects to an unknown host, logs a warning, and writes no known_hosts file."""
    known = tmp_path / "known_hosts"
    known.write_text("")
    executor = make_executor(server, known_hosts=str(known), check_host_key=False)
    with caplog.at_level(logging.WARNING, logger="fabqual.executors.ssh"):
        assert executor.run("echo hi").stdout == "hi\n"
    executor.close()
    assert any("host key checking is off" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert known.read_text() == ""


def test_wrong_client_key_is_refused(server: SshServer, tmp_path: Path) -> None:
    """A key the server does not authorize gives one line: authentication failed, with the key named."""
    wrong = generate_key(tmp_path / "wrong_key")
    executor = make_executor(server, key_file=str(wrong))
    with pytest.raises(NodeUnreachableError) as caught:
        executor.run("true")
    text = str(caught.value)
    assert text.startswith(f"n1 (root@127.0.0.1:{server.port}): authentication as root failed (key {wrong})")
    assert "\n" not in text


def test_missing_key_file_is_named(server: SshServer, tmp_path: Path) -> None:
    """A key file that does not exist is named, rather than a FileNotFoundError traceback."""
    executor = make_executor(server, key_file=str(tmp_path / "no_such_key"))
    with pytest.raises(NodeUnreachableError, match=r"key file .*/no_such_key not found"):
        executor.run("true")


def test_connection_refused_names_node_and_port() -> None:
    """Nothing listening on the port: one NodeUnreachableError naming the node, host:port and 'refused'."""
    port = free_port()
    executor = SshExecutor("dead-node", "127.0.0.1", port, key_file="/dev/null", connect_timeout=3)
    start = time.monotonic()
    with pytest.raises(NodeUnreachableError) as caught:
        executor.run("true")
    assert time.monotonic() - start < 3
    text = str(caught.value)
    assert text.startswith(f"dead-node (root@127.0.0.1:{port}): connection refused")
    assert "\n" not in text


def test_silent_server_times_out_within_connect_timeout() -> None:
    """A port that accepts TCP but never speaks SSH fails after connect_timeout, not hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel completes the handshake; nobody ever answers
        port = listener.getsockname()[1]
        executor = SshExecutor("mute", "127.0.0.1", port, key_file="/dev/null", connect_timeout=1)
        start = time.monotonic()
        with pytest.raises(NodeUnreachableError, match=rf"^mute \(root@127\.0\.0\.1:{port}\): no SSH server answered"):
            executor.run("true")
        assert time.monotonic() - start < 6


# -- building from the topology -------------------------------------------------------------


def test_for_node_uses_topology_credentials_with_tilde(server: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """for_node takes address, port, user, key file (~ expanded) and known_hosts from a topology Node."""
    monkeypatch.setenv("HOME", str(server.dir))
    node = Node(
        name="target1",
        address=server.host,
        port=server.port,
        credentials=Credentials(key_file="~/client_key"),
        known_hosts="~/known_hosts",
    )
    executor = SshExecutor.for_node(node)
    try:
        assert executor.key_file == str(server.client_key)
        assert executor.run("echo ok").node == "target1"
    finally:
        executor.close()


def test_for_node_names_unset_password_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """credentials.password_env naming an unset variable fails at once, naming the variable."""
    monkeypatch.delenv("FABQUAL_TEST_NO_SUCH_PW", raising=False)
    node = Node(name="esx1", address="192.0.2.10", credentials=Credentials(password_env="FABQUAL_TEST_NO_SUCH_PW"))
    with pytest.raises(LabError, match=r"^esx1: credentials.password_env names \$FABQUAL_TEST_NO_SUCH_PW"):
        SshExecutor.for_node(node)


def test_executor_for_node_picks_local_or_ssh(server: SshServer) -> None:
    """address 'local' gives a LocalExecutor; any other address an SshExecutor (no connection yet)."""
    local = executor_for_node(Node(name="me", address="local"))
    assert isinstance(local, LocalExecutor) and local.node == "me"
    remote = executor_for_node(
        Node(
            name="n2",
            address=server.host,
            port=server.port,
            credentials=Credentials(key_file=str(server.client_key)),
            known_hosts=str(server.known_hosts),
        )
    )
    assert isinstance(remote, SshExecutor)
    assert (remote.host, remote.port, remote.user) == ("127.0.0.1", server.port, "root")
    remote.close()
