"""vcsim built from Debian's govmomi source by fabqual's launcher, started on 127.0.0.1.

Real components only: the Go toolchain and govmomi sources from Debian packages,
the simulator binary, and pyvmomi talking TLS to it.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from fabqual.errors import LabError
from fabqual.vsphere import vcsim

pytestmark = pytest.mark.skipif(
    shutil.which("go") is None or not (vcsim.GOPATH / "src/github.com/vmware/govmomi/simulator").is_dir(),
    reason="vcsim needs Debian's golang-go and golang-github-vmware-govmomi-dev (apt-get install them)",
)


def test_build_is_cached_and_keyed_by_package_version() -> None:
    first = vcsim.build_vcsim()
    started = time.monotonic()
    again = vcsim.build_vcsim()
    assert again == first
    assert time.monotonic() - started < 5, "a cached build must not compile again"
    version = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", vcsim.GOVMOMI_PACKAGE], capture_output=True, text=True, check=True
    ).stdout
    assert first.parent.name.startswith(f"{version}-")


def test_build_failure_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FABQUAL_CACHE", str(tmp_path))
    monkeypatch.setattr(vcsim, "GOPATH", tmp_path / "no-gocode")
    with pytest.raises(LabError) as err:
        vcsim.build_vcsim()
    assert "\n" not in str(err.value)
    assert "apt-get install" in str(err.value)


def test_simulator_answers_with_verified_tls_and_two_hosts() -> None:
    with vcsim.running_vcsim(user="alice", password="s3cret") as sim:
        assert sim.address == "127.0.0.1" and sim.port > 0
        si = SmartConnect(
            host=sim.address,
            port=sim.port,
            user="alice",
            pwd="s3cret",
            sslContext=ssl.create_default_context(cafile=str(sim.cert_path)),
        )
        try:
            content = si.RetrieveContent()
            # API 7.0.3.0: pyvmomi keeps the 6.7+ PVRDMA fields only with an exact known version.
            assert content.about.apiVersion == vcsim.API_VERSION
            view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
            assert sorted(h.name for h in view.view) == ["DC0_C0_H0", "DC0_C0_H1"]
            vms = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
            assert {vm.runtime.host.name for vm in vms.view} == {"DC0_C0_H0", "DC0_C0_H1"}
        finally:
            Disconnect(si)
        pid = sim.pid
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)


def test_busy_port_is_one_clear_line() -> None:
    with vcsim.running_vcsim() as sim, pytest.raises(LabError) as err, vcsim.running_vcsim(port=sim.port):
        pass
    assert "vcsim did not start" in str(err.value) and "\n" not in str(err.value)
