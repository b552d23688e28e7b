"""Acceptance-suite ordering: tests that break a link's fabric run after every other test of that link.

A link is brought up once per session and shared by all its rows. A
``fabric_fault`` test takes the fabric away and repairs it; even with a good
repair, a row that ran after it would measure a link that was just broken. So
within each link's group of rows the fault tests go last, and the group stays
contiguous (the link is not torn down and brought up again for them).
"""

from __future__ import annotations

import pytest

FAULT_MARKER = "fabric_fault"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{FAULT_MARKER}: takes the link's fabric away; runs after the link's other rows"
    )


def _link_key(item: pytest.Item) -> object:
    callspec = getattr(item, "callspec", None)
    link = callspec.params.get("link") if callspec is not None else None
    if link is None:
        return item  # a row without a link is its own group
    return ("link", getattr(link, "name", repr(link)))  # Link records hold dicts: not hashable themselves


@pytest.hookimpl(trylast=True)  # after pytest grouped the rows by their session-scoped link
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    first_of_group: dict[object, int] = {}
    for index, item in enumerate(items):
        first_of_group.setdefault(_link_key(item), index)
    order = {id(item): index for index, item in enumerate(items)}
    items.sort(
        key=lambda item: (
            first_of_group[_link_key(item)],
            item.get_closest_marker(FAULT_MARKER) is not None,
            order[id(item)],
        )
    )
