"""The release matrix without booting: release names, apt views, package resolution, patches, smoke slice, table.

The apt views are real (each release's package lists from the Debian archive, fetched
into the test's cache once a day); nothing about a release is assumed here that apt
was not asked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fabqual.errors import LabError, TopologyError
from fabqual.lab import EmulatedLab
from fabqual.lab.image import cache_root
from fabqual.lab.kernel_modules import patched_modules, patches_for
from fabqual.lab.packages import GUEST_PACKAGES, resolve
from fabqual.lab.releases import RELEASES, AptView, KernelPackage, Pair, all_pairs, debian_sources
from fabqual.matrix import smoke, table
from fabqual.topology import load_topology, parse_topology

REPO = Path(__file__).resolve().parents[3]
RESULTS = REPO / "fixtures" / "outputs" / "results"


@pytest.mark.parametrize(
    "text",
    ["bookworm:", "buster:trixie", "bookworm:sid", "a:b:c", ":trixie", "bookworm;rm -rf /"],
)
def test_bad_pair_is_one_line_naming_it(text: str) -> None:
    """A release pair that is not TARGET:HOST of known releases is refused, naming the value and the choices."""
    with pytest.raises(LabError) as caught:
        Pair.parse(text)
    message = str(caught.value)
    assert "\n" not in message
    assert "TARGET:HOST" in message or "bullseye, bookworm, trixie" in message


def test_pairs_default_and_all_nine() -> None:
    """One release names both guests; the default pair is bookworm on both; all_pairs() is the 3 x 3 grid."""
    assert Pair.parse("trixie") == Pair("trixie", "trixie")
    assert Pair() == Pair("bookworm", "bookworm")
    assert len(set(all_pairs())) == 9 and Pair("bookworm", "trixie") in all_pairs()


def test_lab_up_with_unknown_release_is_one_line() -> None:
    """`fabqual lab up --target buster` fails before anything starts, with one line naming the choices."""
    proc = subprocess.run(
        [sys.executable, "-m", "fabqual.cli", "lab", "up", "--target", "buster"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "--target: unknown release 'buster'" in proc.stderr and "Traceback" not in proc.stderr


def test_lab_section_of_a_topology_is_checked(tmp_path: Path) -> None:
    """The generated topology carries the pair as its ``lab`` section; a bad release there fails at load."""
    lab = EmulatedLab(cache=tmp_path, pair=Pair("bookworm", "trixie"))
    topology = load_topology(lab.prepare())
    assert topology.lab is not None and (topology.lab.target, topology.lab.host) == ("bookworm", "trixie")
    text = lab.topology_path.read_text().replace("host: trixie", "host: buster")
    with pytest.raises(TopologyError, match=r"lab\.host.*one of bullseye, bookworm, trixie"):
        parse_topology(text, "edited.yaml")


def test_running_lab_of_another_pair_is_not_taken_for_the_asked_one(tmp_path: Path) -> None:
    """Asking for bullseye:trixie while the lab's state says bookworm:bookworm runs is one line, not a reuse."""
    lab = EmulatedLab(cache=tmp_path)
    lab.prepare()
    asked = EmulatedLab(cache=tmp_path, pair=Pair("bullseye", "trixie"))
    with pytest.raises(LabError, match=r"runs bookworm:bookworm .*not bullseye:trixie.*fabqual lab down"):
        asked._check_pair()


@pytest.mark.parametrize("release", RELEASES)
def test_sources_name_only_the_release(release: str) -> None:
    """The release's apt view uses the host's Debian mirrors with only that release's suites."""
    text = debian_sources(release)
    suites = [line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("Suites:")]
    assert suites and all(s == release or s.startswith(f"{release}-") for line in suites for s in line)


@pytest.mark.parametrize("release", RELEASES)
def test_packages_resolve_against_the_release_archive(release: str) -> None:
    """Every required guest package exists in the release (asked of its own lists), optional ones may be left out."""
    view = AptView(release, cache_root())
    view.refresh()
    resolved = resolve(view)
    required = [entry for entry in GUEST_PACKAGES if not entry.endswith("?")]
    assert len(resolved.install) + len(resolved.left_out) == len(GUEST_PACKAGES) >= len(required)
    assert all(resolved.versions[name] for name in resolved.install)
    kernel = view.kernel()
    assert kernel.abi.endswith("-amd64") and kernel.version.startswith(kernel.series)


def test_missing_required_package_is_one_line(tmp_path: Path) -> None:
    """A required package the release lacks stops the build before mmdebstrap, naming package and release."""
    view = AptView("bookworm", cache_root())
    view.refresh()
    with pytest.raises(LabError, match=r"Debian bookworm has no package no-such-package-fabqual or other-missing"):
        resolve(view, ("kmod", "no-such-package-fabqual|other-missing"))
    assert resolve(view, ("kmod", "no-such-package-fabqual?")).left_out == ("no-such-package-fabqual?",)


def test_kernel_patches_only_for_the_kernel_that_needs_them() -> None:
    """6.1 carries the nvme-fc admin-queue patch, 6.12 the fcloop nport-list patch, 5.10 none (sources read)."""
    assert [p.name for p in patches_for(KernelPackage("6.1.0-57-amd64", "6.1.192-3"))] == [
        "nvme-fc-admin-queue-lifetime.patch"
    ]
    assert patched_modules(patches_for(KernelPackage("6.1.0-57-amd64", "6.1.192-3"))) == {"nvme-fc"}
    assert patches_for(KernelPackage("5.10.0-46-amd64", "5.10.262-1")) == ()
    trixie = patches_for(KernelPackage("6.12.118+deb13-amd64", "6.12.118-1"))
    assert [p.name for p in trixie] == ["nvme-fcloop-nport-list.patch"]
    assert patched_modules(trixie) == {"nvme-fcloop"}


def test_smoke_slice_has_rows_for_every_capability(tmp_path: Path) -> None:
    """Collected against the lab's own topology, the slice holds one short row per capability of every link."""
    topology = EmulatedLab(cache=tmp_path).prepare()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "--topology", str(topology)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ids = smoke.collected_ids(proc.stdout)
    chosen = smoke.select(ids)
    assert len(chosen) < len(ids) / 5
    for transport in ("tr=fc-", "tr=rdma-", "tr=pvrdma-", "tr=ipofc"):
        assert any(transport in node for node in chosen), (transport, chosen)
    assert all(pattern_hits == 1 for pattern_hits in _hits_per_transport(chosen).values())


def _hits_per_transport(chosen: list[str]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for node in chosen:
        test = node.split("[")[0]
        transport = next(part for part in node.split("[")[1].rstrip("]").split("-") if part.startswith("tr="))
        counts[(test, transport)] = counts.get((test, transport), 0) + 1
    return counts


def test_matrix_table_from_a_real_run() -> None:
    """A pair's real results become one cell per link type with verdict, kernels and tools; HTML is escaped."""
    results = json.loads((RESULTS / "matrix_pair_bullseye_bullseye.json").read_text())
    link_types = ["fc_nvme", "nvmet_rdma", "ipofc", "pvrdma"]
    cells = table.cells(results, link_types)
    assert [c["link_type"] for c in cells] == link_types
    assert all(c["verdict"] in ("PASS", "FAIL", "ERROR", "SKIPPED", "NOT RUN") for c in cells)
    kernels = {guest: info["kernel"] for guest, info in cells[0]["versions"].items()}
    assert kernels["tgt"].startswith("5.10.") and kernels["ini"].startswith("5.10.")
    assert {c["link_type"]: c["verdict"] for c in cells}["pvrdma"] == "PASS"
    assert all(c["problems"] for c in cells if c["verdict"] == "ERROR")  # each error says why
    matrix = {"pairs": [{"pair": "bullseye:bullseye", "state": "done", "report": "x/<r>.html", "cells": cells}]}
    page = table.render_html(matrix)
    assert page.count("<table>") == len(link_types) and "x/&lt;r&gt;.html" in page and "not chosen" in page
