"""Reading the YAML files a user writes (topologies, thresholds profiles) strictly.

The file must be UTF-8 text, and no mapping may give a key twice (PyYAML's own
loaders let the last value silently win). Every problem is one
:class:`~fabqual.errors.TopologyError` line naming the file and where in it.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml

from fabqual.errors import TopologyError

_BOMS = {
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
}


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping."""


def _construct_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def decode(raw: bytes, source: str) -> str:
    """``raw`` as UTF-8 text, or one line saying what the file is instead and how to fix it."""
    for bom, encoding in _BOMS.items():
        if raw.startswith(bom):
            raise TopologyError(source, "", f"the file is {encoding} text, not UTF-8; save it as UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        byte = raw[error.start]
        kind = "a binary file" if b"\0" in raw[:4096] else "not UTF-8 text"
        raise TopologyError(
            source, "", f"{kind}: byte 0x{byte:02x} at offset {error.start} is not UTF-8; give a UTF-8 YAML file"
        ) from None


def read_text(path: str | Path, missing_hint: str) -> str:
    """The UTF-8 text of ``path``; a missing or unreadable file is one line (``missing_hint`` says what to pass)."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise TopologyError(source, "", f"no such file; {missing_hint}") from None
    except IsADirectoryError:
        raise TopologyError(source, "", f"is a directory, not a file; {missing_hint}") from None
    except OSError as error:
        raise TopologyError(source, "", f"cannot read the file: {error.strerror}") from None
    return decode(raw, source)


def parse(text: str, source: str) -> Any:
    """YAML ``text`` parsed safely with duplicate keys refused; errors name the line and column."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = error.problem or str(error).splitlines()[0]
        raise TopologyError(source, "", f"not valid YAML at {where}: {problem}") from None
    except yaml.YAMLError as error:  # a ReaderError: a control character YAML does not allow
        first = str(error).splitlines()[0]
        raise TopologyError(source, "", f"not valid YAML: {first}") from None
