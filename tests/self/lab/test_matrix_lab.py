"""`fabqual matrix` on the mixed pair CI can afford: a bookworm target and a trixie host, for real.

Two real kernels (6.1 on tgt, 6.12 on ini) under QEMU, the smoke slice of the
acceptance tests across them, one interop matrix. The first test kills a matrix
run while its lab boots; the second is the run after it, which must find nothing
of the killed one in its way. The matrix keeps its lab apart (``<cache>/matrix``),
so the session's own lab, if up, is not touched. Cold, the trixie image is built
first (minutes); warm, the pair takes a few minutes under TCG.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fabqual.lab import EmulatedLab
from fabqual.lab import vm as lab_vm
from fabqual.lab.image import cache_root, ensure_image

REPO = Path(__file__).resolve().parents[3]
PAIR = "bookworm:trixie"
pytestmark = pytest.mark.emulated_lab


def _matrix(out: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "fabqual.cli", "matrix", "--pairs", PAIR, "--out", str(out)]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def images() -> None:
    """Both images built before any timing starts (cold in CI: the trixie one takes minutes)."""
    for release in PAIR.split(":"):
        ensure_image(release, print)


def test_matrix_killed_while_its_lab_boots_leaves_nothing_running(images: None, tmp_path: Path) -> None:
    """SIGTERM mid-boot: the run says the pair was interrupted, and no guest of its lab keeps running."""
    run_dir = cache_root() / "matrix" / "lab" / "run"
    proc = _matrix(tmp_path)
    try:
        deadline = time.monotonic() + 300
        while not lab_vm.find_stray(run_dir):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the matrix started no guest within 300 s"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    strays = lab_vm.find_stray(run_dir)
    if strays:
        EmulatedLab(cache=cache_root() / "matrix").down()
    assert not strays, f"QEMU {strays} kept running after SIGTERM (stopped by the test)"
    assert proc.returncode != 0 and "Traceback" not in err, err[-2000:]
    matrix = json.loads((tmp_path / "matrix.json").read_text())
    assert [p["state"] for p in matrix["pairs"]] == ["interrupted"]


def test_mixed_pair_interoperates_on_every_link(images: None, tmp_path: Path) -> None:
    """Every link type runs across a 6.1 target and a 6.12 host: each cell passes, or skips saying why."""
    proc = _matrix(tmp_path)
    try:
        out, err = proc.communicate(timeout=3600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    matrix = json.loads((tmp_path / "matrix.json").read_text())
    (pair,) = matrix["pairs"]
    assert pair["state"] == "done", f"{pair}\n{err[-3000:]}"
    assert (tmp_path / pair["report"]).is_file() and (tmp_path / "matrix.html").is_file()
    assert {c["link_type"] for c in pair["cells"]} >= {"fc_nvme", "nvmet_rdma", "pvrdma", "ipofc"}
    for cell in pair["cells"]:
        assert cell["verdict"] in ("PASS", "SKIPPED"), (cell["link_type"], cell["verdict"], cell["problems"])
        if cell["verdict"] == "SKIPPED":
            assert all(reason.strip() for reason in cell["skip_reasons"]), cell
        kernels = {guest: info["kernel"] for guest, info in cell["versions"].items()}
        assert kernels["tgt"].startswith("6.1.") and kernels["ini"].startswith("6.12."), kernels
    assert proc.returncode == 0, out + err[-2000:]
    assert not lab_vm.find_stray(cache_root() / "matrix" / "lab" / "run")
