"""Generic building of frozen dataclass records from parsed YAML.

A record class declares its fields with type hints; :func:`build` walks the
data, rejects unknown keys, missing keys and wrong types, and reports each
problem as one :class:`~fabqual.errors.TopologyError` naming the key path and
the value. Field-level checks beyond the type live in ``metadata["check"]``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from fabqual.errors import TopologyError

T = TypeVar("T")

Check = Callable[[Any], str | None]
"""Returns an error text for a bad value, or None when the value is fine."""


def field(default: Any = dataclasses.MISSING, *, check: Check | None = None, doc: str = "") -> Any:
    """A record field with an optional value check and a one-line description."""
    metadata = {"check": check, "doc": doc}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed in records")
    return dataclasses.field(default=default, metadata=metadata)


def build(cls: type[T], data: Any, source: str, path: str) -> T:
    """Build record ``cls`` from ``data``; raise TopologyError on the first problem."""
    if not isinstance(data, dict):
        raise TopologyError(source, path, f"expected a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise TopologyError(source, _join(path, str(key)), f"unknown key (known keys: {known})")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise TopologyError(source, key_path, "required key is missing")
            continue
        value = convert(hints[name], data[name], source, key_path)
        check = f.metadata.get("check")
        item_check = getattr(check, "item_check", None)
        if item_check is not None and isinstance(value, tuple):  # each(...): name the item at fault
            for i, item in enumerate(value):
                problem = item_check(item)
                if problem:
                    raise TopologyError(source, f"{key_path}[{i}]", f"{problem} (got {_show(item)})")
        elif check is not None and value is not None:
            problem = check(value)
            if problem:
                raise TopologyError(source, key_path, f"{problem} (got {_show(data[name])})")
        values[name] = value
    return cls(**values)


def checked(cls: type, name: str, data: Any, source: str, path: str) -> Any:
    """One field of ``cls`` converted to its type and run through its check, outside :func:`build`."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    value = convert(typing.get_type_hints(cls)[name], data, source, path)
    check = f.metadata.get("check")
    problem = check(value) if check is not None and value is not None else None
    if problem:
        raise TopologyError(source, path, f"{problem} (got {_show(data)})")
    return value


def convert(hint: Any, value: Any, source: str, path: str) -> Any:
    """Convert one YAML value to the declared type, or raise naming the path."""
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        present = [option for option in options if option is not type(None)]
        if len(present) == 1:  # X | None: X's own error, naming the key inside it that is wrong
            return convert(present[0], value, source, path)
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(option, value, source, path)
            except TopologyError as error:
                errors.append(error.message)
        raise TopologyError(source, path, " or ".join(errors))
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise TopologyError(source, path, f"{_show(value)} is not one of {choices}")
        return value
    if origin is tuple:
        (item_hint, _ellipsis) = get_args(hint)
        if not isinstance(value, list):
            raise TopologyError(source, path, f"expected a list, got {_show(value)}")
        return tuple(convert(item_hint, item, source, f"{path}[{i}]") for i, item in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return build(hint, value, source, path)  # type: ignore[arg-type]
    if hint is bool:
        if not isinstance(value, bool):
            raise TopologyError(source, path, f"expected true or false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TopologyError(source, path, f"expected an integer, got {_show(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TopologyError(source, path, f"expected a number, got {_show(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise TopologyError(source, path, f"expected a non-empty string, got {_show(value)}")
        return value
    raise TypeError(f"records cannot hold fields of type {hint!r}")  # a bug in fabqual, not in the file


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    """A value as the user wrote it, short, with its YAML type when that helps."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
