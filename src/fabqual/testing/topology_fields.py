"""Every string field of the topology records, found by walking them from :class:`Topology` down.

Used by the self-tests that keep docs/topology-fields.md complete and that push
hostile strings through every field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, get_args, get_origin

from fabqual.linkspec import link_spec, link_types
from fabqual.topology.model import Topology


def _is_text(hint: Any) -> bool:
    """str, str | None, or tuple[str, ...] (a Literal is a closed set: not free text)."""
    if hint is str:
        return True
    if get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_text(option) for option in get_args(hint) if option is not type(None))
    if get_origin(hint) is tuple:
        return _is_text(get_args(hint)[0])
    return False


def _records(hint: Any) -> list[type]:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return [hint]
    if get_origin(hint) is Literal:
        return []
    found: list[type] = []
    for arg in get_args(hint):
        if arg is not Ellipsis:
            found += _records(arg)
    return found


def string_fields() -> dict[str, str | None]:
    """``Record.field`` → the name of its check (None when it has none), for every record under Topology
    and every registered link type's params record."""
    fields: dict[str, str | None] = {}
    todo: list[type] = [Topology, *(link_spec(name).params for name in link_types())]
    seen: set[type] = set()
    while todo:
        record = todo.pop()
        if record in seen:
            continue
        seen.add(record)
        hints = typing.get_type_hints(record)
        for f in dataclasses.fields(record):
            hint = hints[f.name]
            if _is_text(hint):
                check = f.metadata.get("check")
                fields[f"{record.__name__}.{f.name}"] = check.__name__ if check else None
            todo += _records(hint)
    return fields
