"""The matrix record the repository keeps: pairs merged run by run, tables regenerated between markers."""

from __future__ import annotations

from typing import Any

import pytest

from fabqual.errors import FabqualError
from fabqual.matrix import record


def _cell(link_type: str, verdict: str, **extra: Any) -> dict[str, Any]:
    versions = {
        "tgt": {"kernel": "6.12.118+deb13-amd64", "tools": {"nvme-cli": "2.13", "fio": "3.39"}},
        "ini": {"kernel": "5.10.0-35-amd64", "tools": {"nvme-cli": "1.12", "fio": "3.25"}},
    }
    return {
        "link_type": link_type,
        "verdict": verdict,
        "counts": {},
        "skip_reasons": {},
        "problems": [],
        "versions": versions,
        **extra,
    }


def _run(*pairs: dict[str, Any], started: str = "2026-12-05T05:01:54Z") -> dict[str, Any]:
    return {"schema": "fabqual-matrix/1", "started": started, "load": "5.1 4.0 3.2", "patterns": ["p"], "pairs": pairs}


TRIXIE_BULLSEYE = {
    "pair": "trixie:bullseye",
    "target": "trixie",
    "host": "bullseye",
    "state": "done",
    "seconds": 300.0,
    "cells": [
        _cell("fc_nvme", "FAIL", problems=["test_fio[tr=fc-rw=write-bs=128k-qd=1]: Oops in fcloop_alloc_nport"]),
        _cell("ipofc", "SKIPPED", skip_reasons={"no FCoE | here": 2}),
        _cell("nvme_tcp", "PASS"),
    ],
}


def test_merge_takes_finished_pairs_and_replaces_their_older_entries() -> None:
    first = record.merge(None, _run(TRIXIE_BULLSEYE, {"pair": "bullseye:bullseye", "state": "interrupted"}), "run-1")
    assert [p["pair"] for p in first["pairs"]] == ["trixie:bullseye"]  # cut short: not recorded
    (entry,) = first["pairs"]
    assert entry["kernels"] == {"ini": "5.10.0-35-amd64", "tgt": "6.12.118+deb13-amd64"}
    assert entry["tools"]["ini"] == {"nvme-cli": "1.12", "fio": "3.25"}
    assert entry["source"]["run"] == "run-1" and "versions" not in entry["cells"][0]

    fixed = {**TRIXIE_BULLSEYE, "cells": [_cell("fc_nvme", "PASS")]}
    bookworm = {**TRIXIE_BULLSEYE, "pair": "bookworm:bookworm", "target": "bookworm", "host": "bookworm"}
    second = record.merge(first, _run(fixed, bookworm, started="2026-12-05T06:20:00Z"), "run-2")
    assert [p["pair"] for p in second["pairs"]] == ["bookworm:bookworm", "trixie:bullseye"]  # release order
    assert second["pairs"][1]["cells"][0]["verdict"] == "PASS"
    assert second["pairs"][1]["source"] == {**entry["source"], "run": "run-2", "started": "2026-12-05T06:20:00Z"}


def test_merge_refuses_a_record_of_another_schema() -> None:
    with pytest.raises(FabqualError, match=r"schema 'other/9'.*move it away"):
        record.merge({"schema": "other/9", "pairs": []}, _run(), "run")


def test_markdown_puts_each_verdict_in_its_cell_with_the_reason_numbered() -> None:
    text = record.render_markdown(record.merge(None, _run(TRIXIE_BULLSEYE), "run-1"))
    fc = text.split("### `fc_nvme`")[1].split("###")[0]
    assert "| **trixie** | **FAIL** (1) | not run | not run |" in fc
    assert "1. trixie:bullseye: test_fio[tr=fc-rw=write-bs=128k-qd=1]: Oops in fcloop_alloc_nport" in fc
    ipofc = text.split("### `ipofc`")[1].split("###")[0]
    assert "skip (1)" in ipofc and "skip: no FCoE \\| here" in ipofc  # a pipe cannot break the table
    assert "| trixie | 6.12.118+deb13-amd64 | 2.13 | 3.39 |" in text
    assert "| bullseye | 5.10.0-35-amd64 | 1.12 | 3.25 |" in text
    assert text.startswith(record.BEGIN) and text.endswith(record.END)


def test_document_keeps_its_prose_and_replaces_only_the_generated_part() -> None:
    old = f"# Title\n\nprose before\n\n{record.BEGIN}\nold table\n{record.END}\n\nprose after\n"
    new = record.update_document(old, f"{record.BEGIN}\nnew table\n{record.END}")
    assert new == f"# Title\n\nprose before\n\n{record.BEGIN}\nnew table\n{record.END}\n\nprose after\n"
    assert record.update_document(None, "T").startswith("# The release matrix\n\nT")
    with pytest.raises(FabqualError, match="no generated part"):
        record.update_document("# a document without markers\n", "T")


def test_cell_names_each_reason_once_and_keeps_its_end() -> None:
    """Rows that failed for the same reason share one line; a long reason keeps the kernel's words at its end."""
    connect = (
        "setup: fabqual.errors.DriverError: ini: `nvme connect -t rdma -a 192.168.77.1 -s 4420 "
        + "-n nqn.2024-01.io.fabqual:nvmet-rdma " * 8
        + "` failed: could not add new controller; its kernel logged: nvme nvme0: Invalid MNAN value 1024"
    )
    problems = [
        f"tests/acceptance/test_rdma_perftest.py::test_bandwidth[tr=rdma]: {connect}",
        f"tests/acceptance/test_nvme_fio.py::test_fio[tr=rdma]: {connect}",
    ]
    pair = {**TRIXIE_BULLSEYE, "cells": [_cell("nvmet_rdma", "ERROR", problems=problems)]}
    word, why = record._cell(pair, "nvmet_rdma")
    assert word == "**ERROR**"
    assert why.startswith("test_bandwidth[tr=rdma], test_fio[tr=rdma]: setup:")
    assert why.endswith("Invalid MNAN value 1024") and " … " in why and why.count("nvme connect") <= 1
