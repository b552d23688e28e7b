"""vcsim built from Debian's govmomi source by fabqual's launcher, started on 127.0.0.1.

Real components only: the Go toolchain and govmomi sources from Debian packages,
the simulator binary, and pyvmomi talking TLS to it.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

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


def test_a_sigkilled_starters_directory_is_removed_by_the_next_start(tmp_path: Path) -> None:
    """The certificate and log directory of a simulator whose starter was SIGKILLed (its cleanup never
    ran) is removed by the next simulator start; a live starter's directory is left alone."""
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from fabqual.vsphere import vcsim\n"
            "with vcsim.running_vcsim() as sim:\n"
            "    print(sim.cert_path.parent, sim.pid, flush=True)\n"
            "    time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert starter.stdout is not None
    line = starter.stdout.readline().split()
    assert len(line) == 2, f"the starter did not start vcsim (exit {starter.poll()})"
    left, simulator = Path(line[0]), int(line[1])
    os.kill(starter.pid, signal.SIGKILL)
    starter.wait()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{simulator}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # the simulator exits when its stdin (the starter's pipe) closes
    assert not Path(f"/proc/{simulator}").exists(), "vcsim outlived the process that started it"
    assert left.is_dir(), "the kill must leave the directory (nothing ran the starter's cleanup)"
    assert left.name.startswith(f"fabqual-vcsim-run-{starter.pid}-")
    with vcsim.running_vcsim() as sim:
        assert not left.exists()
        assert sim.cert_path.parent.is_dir()
        assert vcsim.sweep_dead_dirs() == []  # this process's own, live, is not swept
        assert sim.cert_path.is_file()
    assert not sim.cert_path.parent.exists()
