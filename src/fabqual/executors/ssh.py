"""Run commands on a remote node over SSH (paramiko).

This is the only module of fabqual that imports paramiko. One connection per
executor is opened on first use and reused by every command and file transfer;
if the server dropped it in between, it is re-opened once before a command is
started (a command that was already running is never re-sent).

Host keys are checked against ``known_hosts`` by default and an unknown or
changed key is refused; ``check_host_key=False`` (``host_key_check: false`` in
the topology) is the explicit opt-out for throwaway nodes.

Every remote command runs as ``/bin/sh -c COMMAND``, like the local executor,
whatever the user's login shell is. The login shell first prints its PID: sshd
makes it the leader of a new session and process group, so on a timeout the
whole group (the command and everything it started) is killed, not just the
channel closed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shlex
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import paramiko

from fabqual.errors import CommandError, CommandTimeoutError, LabError, NodeUnreachableError
from fabqual.executors.base import Command, CommandResult, command_text, log_step

if TYPE_CHECKING:
    from fabqual.topology.model import Node

log = logging.getLogger(__name__)

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
# How long the kill of a timed-out command's process group may take.
_KILL_TIMEOUT = 5.0
_CHUNK = 65536


class _UnknownHostKey(paramiko.SSHException):
    """The server's host key is not in known_hosts."""

    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(f"host key of {hostname} not in known_hosts")
        self.key = key


class _RejectUnknownPolicy(paramiko.RejectPolicy):
    """RejectPolicy that tells the caller which key it refused (for the error message)."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> NoReturn:
        raise _UnknownHostKey(hostname, key)


class _AcceptAndWarnPolicy(paramiko.AutoAddPolicy):
    """AutoAddPolicy (in memory only) that leaves a warning in the log: host_key_check is off."""

    def __init__(self, node: str) -> None:
        self.node = node

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        log.warning(
            "%s: host key checking is off (host_key_check: false); accepting %s key %s of %s unverified",
            self.node,
            key.get_name(),
            key.fingerprint,
            hostname,
        )
        super().missing_host_key(client, hostname, key)


class SshExecutor:
    """Executor for a node reached over SSH; see the module docstring for the behaviour."""

    def __init__(
        self,
        node: str,
        host: str,
        port: int = 22,
        user: str = "root",
        *,
        key_file: str | None = None,
        use_agent: bool = False,
        password: str | None = None,
        known_hosts: str | None = None,
        check_host_key: bool = True,
        connect_timeout: float = 10.0,
        keepalive: float = 15.0,
    ) -> None:
        self.node = node
        self.host = host
        self.port = port
        self.user = user
        self.key_file = os.path.expanduser(key_file) if key_file else None
        self.use_agent = use_agent
        self._password = password
        self.known_hosts = os.path.expanduser(known_hosts or DEFAULT_KNOWN_HOSTS)
        self._known_hosts_given = known_hosts is not None
        self.check_host_key = check_host_key
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    @classmethod
    def for_node(cls, node: Node) -> SshExecutor:
        """An executor for a topology node, with the credentials the node declares."""
        creds = node.credentials
        password = None
        if creds.password_env is not None:
            password = os.environ.get(creds.password_env)
            if password is None:
                raise LabError(
                    f"{node.name}: credentials.password_env names ${creds.password_env}, which is not set;"
                    f" export {creds.password_env}=<password> before running"
                )
        return cls(
            node.name,
            node.address,
            node.port,
            node.user,
            key_file=creds.key_file,
            use_agent=creds.agent,
            password=password,
            known_hosts=node.known_hosts,
            check_host_key=node.host_key_check,
        )

    def __repr__(self) -> str:
        return f"SshExecutor({self.node!r}, {self.user}@{self.host}:{self.port})"

    # -- connection -------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.node} ({self.user}@{self.host}:{self.port})"

    def _connected(self) -> paramiko.SSHClient:
        """The open connection, (re)connecting if there is none or it died."""
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
            log.info("%s: connection lost, reconnecting", self._where)
            self.close()
        self._client = self._connect()
        return self._client

    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        if self.check_host_key:
            if os.path.exists(self.known_hosts):
                # "system" host keys are read-only: paramiko never writes back to this file.
                client.load_system_host_keys(self.known_hosts)
            elif self._known_hosts_given:
                raise NodeUnreachableError(
                    f"{self._where}: known_hosts file {self.known_hosts} does not exist; create it with"
                    f" ssh-keyscan -p {self.port} {self.host} >> {self.known_hosts}"
                )
            client.set_missing_host_key_policy(_RejectUnknownPolicy())
        else:
            client.set_missing_host_key_policy(_AcceptAndWarnPolicy(self.node))
        explicit = self.key_file is not None or self.use_agent or self._password is not None
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                password=self._password,
                key_filename=self.key_file,
                allow_agent=self.use_agent,
                # Like ssh: with no credentials configured, try ~/.ssh/id_*.
                look_for_keys=not explicit,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
            )
        except Exception as exc:
            client.close()
            raise NodeUnreachableError(f"{self._where}: {self._explain(exc)}") from exc
        transport = client.get_transport()
        assert transport is not None  # connect() succeeded
        if self.keepalive > 0:
            transport.set_keepalive(max(1, round(self.keepalive)))
        log.debug("%s: connected", self._where)
        return client

    def _explain(self, exc: Exception) -> str:
        """What went wrong while connecting, and what to do, as one line."""
        keyscan = f"ssh-keyscan -p {self.port} {self.host} >> {self.known_hosts}"
        if isinstance(exc, _UnknownHostKey):
            return (
                f"host key {exc.key.get_name()} {exc.key.fingerprint} is not in {self.known_hosts};"
                f" add its key with {keyscan}, or set host_key_check: false for a throwaway node"
            )
        if isinstance(exc, paramiko.BadHostKeyException):
            return (
                f"host key CHANGED: server offers {exc.key.get_name()} {exc.key.fingerprint},"
                f" {self.known_hosts} expects {exc.expected_key.fingerprint}; if the node was reinstalled,"
                f" remove the old entry (ssh-keygen -R '[{self.host}]:{self.port}' -f {self.known_hosts})"
                f" and run {keyscan}"
            )
        if isinstance(exc, paramiko.PasswordRequiredException):
            return f"key file {self.key_file} is encrypted; load it into ssh-agent and set credentials.agent: true"
        if isinstance(exc, paramiko.AuthenticationException):
            return (
                f"authentication as {self.user} failed ({self._credential_text()});"
                f" check that the key is in ~{self.user}/.ssh/authorized_keys on the node"
            )
        if isinstance(exc, FileNotFoundError):
            return f"key file {exc.filename or self.key_file} not found; fix credentials.key_file"
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            return "connection refused; is sshd running on the node and the port right?"
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve host name {self.host!r}; fix the node's address"
        if isinstance(exc, TimeoutError | socket.timeout):
            return (
                f"no answer within {self.connect_timeout:.0f}s; is the node up and reachable from here"
                " (network, firewall)?"
            )
        if isinstance(exc, paramiko.SSHException) and ("banner" in str(exc) or "No existing session" in str(exc)):
            # paramiko reports a handshake that never finished as "No existing session".
            return (
                f"no SSH server answered within {self.connect_timeout:.0f}s (the SSH handshake did not finish);"
                " is sshd running on that port, and is the node not overloaded?"
            )
        if isinstance(exc, paramiko.SSHException) and "No authentication methods" in str(exc):
            return "no credentials: set credentials.key_file, credentials.agent or credentials.password_env"
        return f"cannot connect: {type(exc).__name__}: {exc}"

    def _credential_text(self) -> str:
        ways = []
        if self.key_file:
            ways.append(f"key {self.key_file}")
        if self.use_agent:
            ways.append("ssh-agent")
        if self._password is not None:
            ways.append("password")
        return ", ".join(ways) or "default keys in ~/.ssh"

    def _open_session(self) -> paramiko.Channel:
        """A new session channel; reconnects once if the connection turns out to be dead."""
        try:
            return self._transport().open_session(timeout=self.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            # The server may have dropped the connection before our transport noticed.
            log.info("%s: opening a session failed (%s), reconnecting", self._where, exc)
            self.close()
        try:
            return self._transport().open_session(timeout=self.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self.close()
            raise NodeUnreachableError(f"{self._where}: connected, but cannot open a session: {exc}") from exc

    def _transport(self) -> paramiko.Transport:
        transport = self._connected().get_transport()
        if transport is None:  # cannot happen after a successful connect; keeps the types honest
            raise NodeUnreachableError(f"{self._where}: connection has no transport")
        return transport

    def close(self) -> None:
        """Close the connection; the next command reconnects."""
        if self._sftp is not None:
            with contextlib.suppress(Exception):  # already dead with the connection; nothing to release
                self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> SshExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- commands ---------------------------------------------------------------------------

    def run(
        self,
        command: Command,
        *,
        timeout: float = 60.0,
        check: bool = True,
        stdin: str | None = None,
    ) -> CommandResult:
        text = command_text(command)
        start = time.monotonic()
        channel = self._open_session()
        try:
            # The login shell reports its PID (= process group) before becoming /bin/sh -c.
            channel.exec_command(f"echo $$; exec /bin/sh -c {shlex.quote(text)}")
            pgid, out, err, status = self._collect(channel, (stdin or "").encode(), start + timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            channel.close()
            self.close()
            raise NodeUnreachableError(f"{self._where}: connection lost while running `{text}`: {exc}") from exc
        if status is None:
            self._kill_group(pgid, text)
            channel.close()
            raise CommandTimeoutError(self.node, text, timeout, _decode(out) + _decode(err))
        channel.close()
        result = CommandResult(self.node, text, status, _decode(out), _decode(err), time.monotonic() - start)
        log.debug("%s: `%s` exited %d in %.2fs", self.node, text, status, result.duration)
        if check and not result.ok:
            raise CommandError(result)
        return result

    def _collect(
        self, channel: paramiko.Channel, stdin: bytes, deadline: float
    ) -> tuple[int | None, bytes, bytes, int | None]:
        """Feed stdin and read stdout/stderr until the command exits or ``deadline`` passes.

        stdin goes in chunks between reads: a command that echoes a large input would otherwise
        block on its full output window while we block on its full input window.
        Returns (pgid, stdout, stderr, exit status or None on timeout).
        """
        out = bytearray()
        err = bytearray()
        sent = 0
        if not stdin:
            channel.shutdown_write()
        pgid: int | None = None
        header_done = False
        while True:
            while channel.recv_ready():
                out += channel.recv(_CHUNK)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(_CHUNK)
            pending = sent < len(stdin)
            if pending and (channel.eof_received or channel.closed):
                sent = len(stdin)  # the command is done and did not read it all, as with a local pipe
            elif pending and channel.send_ready():
                sent += channel.send(stdin[sent : sent + _CHUNK])
                if sent == len(stdin):
                    channel.shutdown_write()
            if not header_done and (b"\n" in out or channel.eof_received):
                header_done = True
                line, _, rest = bytes(out).partition(b"\n")
                if line.strip().isdigit():
                    pgid = int(line)
                    out = bytearray(rest)
            remaining = deadline - time.monotonic()
            if channel.eof_received and not channel.recv_ready() and not channel.recv_stderr_ready():
                # All output is in; the exit status follows (or never comes if the command hangs on).
                if channel.status_event.wait(max(remaining, 0)):
                    return pgid, bytes(out), bytes(err), channel.recv_exit_status()
                return pgid, bytes(out), bytes(err), None
            if remaining <= 0:
                return pgid, bytes(out), bytes(err), None
            if channel.closed:
                raise EOFError("channel closed before the command finished")
            # The channel's pipe becomes readable on new data and on EOF; it says nothing about
            # room to send, so poll briefly while stdin is still pending.
            select.select([channel], [], [], min(remaining, 0.02 if sent < len(stdin) else 1.0))

    def _kill_group(self, pgid: int | None, text: str) -> None:
        """Kill a timed-out command and everything it started, through a second channel."""
        if pgid is None or pgid <= 1:
            log.warning("%s: `%s` timed out and its PID is unknown; only closing its channel", self.node, text)
            return
        log_step(self.node, f"kill process group {pgid} of timed-out `{text}`")
        try:
            killer = self._open_session()
            killer.exec_command(f"kill -KILL -- -{pgid}")
            killer.shutdown_write()
            if not killer.status_event.wait(_KILL_TIMEOUT):
                log.warning("%s: killing process group %d did not finish in %.0fs", self.node, pgid, _KILL_TIMEOUT)
            killer.close()
        except Exception as exc:  # the timeout error that follows matters more
            log.warning("%s: could not kill process group %d of `%s`: %s", self.node, pgid, text, exc)

    # -- files ------------------------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        client = self._connected()  # clears a stale SFTP session when it reconnects
        if self._sftp is None:
            self._sftp = client.open_sftp()
        return self._sftp

    def _transfer(self, what: str, action: Callable[[paramiko.SFTPClient], None]) -> None:
        """Run one SFTP action, reconnecting once if the connection died (a transfer can be repeated)."""
        for attempt in (1, 2):
            try:
                action(self._sftp_client())
                return
            except NodeUnreachableError:
                raise
            except (paramiko.SSHException, EOFError, OSError) as exc:
                transport = self._client.get_transport() if self._client is not None else None
                alive = transport is not None and transport.is_active()
                if isinstance(exc, OSError) and alive:
                    # A file problem (missing, permission), not a connection problem.
                    raise LabError(f"{self._where}: cannot {what}: {_os_text(exc)}") from exc
                self.close()
                if attempt == 2:
                    raise NodeUnreachableError(f"{self._where}: connection lost, cannot {what}: {exc}") from exc
                log.info("%s: connection lost during SFTP (%s), reconnecting", self._where, exc)

    def put(self, local: Path, remote: str) -> None:
        """Upload ``local`` to ``remote`` (binary-safe, permission bits of the local file kept)."""
        log_step(self.node, f"upload {local} -> {remote}")
        mode = os.stat(local).st_mode & 0o7777 if os.path.exists(local) else None

        def upload(sftp: paramiko.SFTPClient) -> None:
            sftp.put(str(local), remote)
            if mode is not None:
                sftp.chmod(remote, mode)

        self._transfer(f"upload {local} to {remote}", upload)

    def get(self, remote: str, local: Path) -> None:
        """Download ``remote`` to ``local`` (binary-safe)."""
        self._transfer(f"download {remote} to {local}", lambda sftp: sftp.get(remote, str(local)))


def _decode(data: bytes) -> str:
    return data.decode(errors="replace")


def _os_text(exc: OSError) -> str:
    """An OSError as 'No such file' text without the errno tuple noise."""
    return exc.strerror or str(exc)
