"""One vCenter session over pyvmomi: login, TLS trust, re-login, remote calls and tasks.

:class:`VCenterSession` is how fabqual talks to a vCenter (or VMware's simulator):
TLS is verified against the system CAs, a CA file, or a pinned certificate
thumbprint; an expired session is logged in again once, transparently; every
remote interaction goes through :meth:`VCenterSession.call`, which maps vSphere
faults to one line naming the server, the object and the step; tasks are waited
for under fabqual's own deadline. What is configured with it lives in
:mod:`fabqual.vsphere.vcenter`.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from fabqual.errors import DriverError, LabError
from fabqual.executors.base import log_step

log = logging.getLogger("fabqual.vsphere")
T = TypeVar("T")

# Faults meaning "this server does not implement that", as opposed to "you asked wrongly".
UNIMPLEMENTED = (vmodl.fault.MethodNotFound, vmodl.fault.NotSupported)


class Unimplemented(DriverError):
    """The server lacks a call (MethodNotFound/NotSupported); carries the fault's text."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def fault_text(fault: BaseException) -> str:
    """``InvalidLogin: Login failure`` from a vSphere fault (type name, then the server's message)."""
    name = getattr(fault, "_wsdlName", type(fault).__name__)
    msg = getattr(fault, "msg", None) or ""
    if not msg and getattr(fault, "faultMessage", None):
        msg = "; ".join(m.message for m in getattr(fault, "faultMessage", []) if getattr(m, "message", None))
    return f"{name}: {msg}" if msg else name


def moid(obj: Any) -> str:
    return str(getattr(obj, "_moId", obj))


class VCenterSession:
    """One logged-in session to a vCenter: the connection, its TLS trust and its remote calls."""

    def __init__(
        self,
        address: str,
        port: int = 443,
        user: str = "administrator@vsphere.local",
        password: str = "",
        *,
        verify_tls: bool = True,
        ca_file: str | None = None,
        thumbprint: str | None = None,
        task_timeout: float = 300.0,
        http_timeout: float = 60.0,
    ) -> None:
        self.address = address
        self.port = port
        self.user = user
        self.password = password
        self.verify_tls = verify_tls
        self.ca_file = ca_file
        self.thumbprint = thumbprint
        self.task_timeout = task_timeout
        self.http_timeout = http_timeout
        self.name = f"vCenter {address}:{port}"
        self._si: Any = None
        self._content: Any = None
        self.relogins = 0

    def connect(self) -> None:
        """Log in; TLS is verified (system CAs, ``ca_file``, or a pinned ``thumbprint``) unless opted out."""
        kwargs: dict[str, Any] = {"httpConnectionTimeout": self.http_timeout}
        if not self.verify_tls:
            log.warning("%s: TLS certificate verification is off (verify_tls: false in the topology)", self.name)
            kwargs["disableSslCertValidation"] = True
        elif self.thumbprint:
            kwargs["sslContext"] = self._pinned_context(self.thumbprint)
        else:
            # Always an explicit context: pyvmomi skips verification for 127.0.0.1 otherwise.
            kwargs["sslContext"] = ssl.create_default_context(cafile=self.ca_file)
        try:
            self._si = SmartConnect(host=self.address, port=self.port, user=self.user, pwd=self.password, **kwargs)
        except vim.fault.InvalidLogin as exc:
            raise LabError(
                f"{self.name}: login as {self.user!r} rejected ({fault_text(exc)}); "
                "check the user and password of this vCenter in the topology"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise LabError(
                f"{self.name}: TLS certificate not trusted ({exc.verify_message}); give its CA file or thumbprint "
                "in the topology, or set verify_tls: false for this vCenter"
            ) from None
        except vim.fault.SSLVerifyFault as exc:
            raise LabError(
                f"{self.name}: TLS certificate does not match the pinned thumbprint ({fault_text(exc)})"
            ) from None
        except vmodl.MethodFault as exc:
            raise LabError(f"{self.name}: login failed: {fault_text(exc)}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise LabError(
                f"{self.name} unreachable: {exc}; check the address and port, and that vCenter is running"
            ) from None
        self._content = self._si.RetrieveContent()
        log_step(self.name, f"connected as {self.user} ({self._content.about.fullName})")

    def _pinned_context(self, thumbprint: str) -> ssl.SSLContext:
        """A context trusting exactly the certificate whose SHA-1/SHA-256 digest is pinned.

        pyvmomi's own ``thumbprint`` is not honoured by SmartConnect's version
        probe, so the pin is checked here and the certificate becomes the only
        trust anchor (host names are not checked: the pin identifies the server).
        """
        try:
            pem = ssl.get_server_certificate((self.address, self.port), timeout=self.http_timeout)
        except OSError as exc:
            raise LabError(
                f"{self.name} unreachable: {exc}; check the address and port, and that vCenter is running"
            ) from None
        der = ssl.PEM_cert_to_DER_cert(pem)
        want = thumbprint.replace(":", "").lower()
        digests = {hashlib.sha1(der).hexdigest(), hashlib.sha256(der).hexdigest()}
        if want not in digests:
            raise LabError(
                f"{self.name}: TLS certificate SHA-1 {hashlib.sha1(der).hexdigest()} does not match the pinned "
                f"thumbprint {thumbprint}; check the thumbprint in the topology"
            )
        ctx = ssl.create_default_context(cadata=pem)
        ctx.check_hostname = False
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        return ctx

    def close(self) -> None:
        if self._si is not None:
            try:
                Disconnect(self._si)
            except Exception as exc:
                log.debug("%s: disconnect: %s", self.name, exc)
            self._si = None

    @property
    def service_instance(self) -> Any:
        if self._si is None:
            raise DriverError(f"{self.name}: not connected; call connect() first")
        return self._si

    def relogin(self) -> None:
        # Same stub, new session cookie: every managed object already held stays valid.
        log_step(self.name, "session expired (NotAuthenticated); logging in again")
        try:
            self._content.sessionManager.Login(self.user, self.password)
        except vmodl.MethodFault as exc:
            raise LabError(f"{self.name}: re-login as {self.user!r} failed: {fault_text(exc)}") from None
        self.relogins += 1

    def call(self, target: str, what: str, fn: Callable[[], T]) -> T:
        """Run one remote interaction; re-login once on an expired session; map faults to one line."""
        self.service_instance  # noqa: B018 - raises when not connected
        for attempt in (1, 2):
            try:
                return fn()
            except vim.fault.NotAuthenticated:
                if attempt == 2:
                    raise DriverError(f"{self.name}: {target}: {what}: session rejected again after re-login") from None
                self.relogin()
            except UNIMPLEMENTED as exc:
                raise Unimplemented(f"{self.name}: {target}: {what}: {fault_text(exc)}", fault_text(exc)) from None
            except vmodl.MethodFault as exc:
                raise DriverError(f"{self.name}: {target}: {what} failed: {fault_text(exc)}") from None
            except (OSError, http.client.HTTPException) as exc:
                raise LabError(f"{self.name} unreachable during {what} on {target}: {exc}") from None
        raise AssertionError("unreachable")

    def wait(self, target: str, what: str, start: Callable[[], Any]) -> Any:
        """Start a task and wait for it under our own deadline (pyvmomi's wait can hang)."""
        task = self.call(target, what, start)
        deadline = time.monotonic() + self.task_timeout
        delay = 0.05
        while True:
            info = self.call(target, f"{what} (task {moid(task)})", lambda: task.info)
            if info.state == vim.TaskInfo.State.success:
                return info.result
            if info.state == vim.TaskInfo.State.error:
                fault = info.error
                if isinstance(fault, UNIMPLEMENTED):
                    raise Unimplemented(f"{self.name}: {target}: {what}: {fault_text(fault)}", fault_text(fault))
                raise DriverError(f"{self.name}: {target}: {what} failed: {fault_text(fault)}")
            if time.monotonic() > deadline:
                try:
                    task.CancelTask()
                except vmodl.MethodFault as exc:
                    log.debug("cancel %s: %s", moid(task), fault_text(exc))
                raise DriverError(
                    f"{self.name}: {target}: {what} did not finish within {self.task_timeout:.0f}s "
                    f"(task {moid(task)} {info.state}, {info.progress or 0}%); look at the task in vCenter"
                )
            time.sleep(delay)
            delay = min(1.0, delay * 2)

    @property
    def content(self) -> Any:
        """The service content (root folder, view and session managers ...) of the connected server."""
        self.service_instance  # noqa: B018 - raises when not connected
        return self._content

    def view(self, root: Any, kind: type) -> list[Any]:
        def read() -> list[Any]:
            view = self._content.viewManager.CreateContainerView(root, [kind], True)
            try:
                return list(view.view)
            finally:
                view.Destroy()

        return self.call(self.name, f"list {kind.__name__}", read)
