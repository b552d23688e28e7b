"""Secrets never reach anything a run writes.

The secrets are the values of every ``password_env`` variable the topology
names, and any value fabqual makes up and treats as secret at run time (the
password of its own vCenter simulator), registered with :func:`register`.
:func:`redact` hides them, and ``password=…``-style pairs, in text and nested
data. :func:`install_log_redaction` makes every log record redacted when it is
created, so no handler (console, ``--log-file``, pytest's captured logs, the
HTML and JUnit reports) ever sees a secret; the report plugin redacts each test
report (failure messages, captured output, skip reasons) before pytest-html and
JUnit XML read it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fabqual.topology.model import Topology

MARK = "[redacted]"

# Values of key=value or key: value pairs that look secret are hidden wherever
# text from nodes or tools reaches a report.
_SECRET_PAIRS = re.compile(r"(?i)\b(password|passwd|secret|token|api[_-]?key)(\s*[=:]\s*)(\S+)")
# Too short to hide without hiding ordinary text (a one-letter password is still refused nowhere).
_MIN_LENGTH = 4

_known: set[str] = set()
_lock = threading.Lock()


def register(*values: str) -> None:
    """Treat ``values`` as secrets from now on, in this process."""
    with _lock:
        _known.update(v for v in values if v and len(v) >= _MIN_LENGTH)


def known() -> list[str]:
    """Every registered secret, longest first (so a secret holding another is hidden whole)."""
    with _lock:
        return sorted(_known, key=len, reverse=True)


def of_topology(topology: Topology, environ: dict[str, str] | None = None) -> list[str]:
    """The values of every ``password_env`` variable the topology names (only those that are set)."""
    env = os.environ if environ is None else environ
    names = [n.credentials.password_env for n in topology.nodes if n.credentials.password_env]
    names += [vc.password_env for vc in topology.vcenters]
    return [env[name] for name in names if env.get(name)]


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """``value`` (str, or nested dicts/lists of them) with ``secrets``, every registered secret
    and ``password=…`` hidden."""
    every = sorted({*(s for s in secrets if s), *known()}, key=len, reverse=True)
    return _redact(value, every)


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MARK)
        return _SECRET_PAIRS.sub(lambda m: m.group(1) + m.group(2) + MARK, value)
    if isinstance(value, dict):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, secrets) for v in value]
    return value


def contains_secret(text: str) -> bool:
    return bool(redact(text) != text)


_FORMATTER = logging.Formatter()


def install_log_redaction() -> None:
    """Make every log record of this process carry its message (and traceback) redacted (idempotent)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "fabqual_redacts", False):
        return

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if not known():
            return record
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to logging to report
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
        return record

    redacting_factory.fabqual_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting_factory)
