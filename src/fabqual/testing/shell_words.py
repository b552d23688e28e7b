"""How ``/bin/sh`` reads a command line, for checking what hostile values did to it.

:func:`words` splits a command as a POSIX shell would (quotes, backslashes,
operators) and keeps, for every character of every word, whether it was quoted.
:func:`violations` then looks for the marks a hostile value leaves when a
command builder forgot to quote it: a *canary* whose shell metacharacter
reached the shell unquoted (or was eaten as an operator or a word break), and a
path word with a ``..`` component. Pure functions, no Hypothesis: the strategies
that make the canaries are :func:`fabqual.testing.strategies.hostile_strings`.
"""

from __future__ import annotations

from dataclasses import dataclass

CANARY = "fqz"
"""Letters no command builder writes: every hostile atom ends in them."""

# Characters a shell gives a meaning to when they are not quoted.
META = frozenset(";&|<>()$`\\\"' \t\n*?[]#~{}!")
_OPERATORS = frozenset(";&|<>()\n")
# Directories whose paths the builders make (a bare value such as a netdev is no path, even with '/').
ROOTS = ("/sys/", "/dev/", "/proc/", "/lib/", "/etc/", "/var/", "/tmp/", "/run/", "/usr/", "/root/", "/home/")


@dataclass(frozen=True)
class Word:
    """One shell word: its text after quote removal, and which of its characters were quoted."""

    text: str
    quoted: tuple[bool, ...]


def words(command: str) -> list[Word | str]:
    """``command`` as the shell splits it: :class:`Word` items and operator strings (``;``, ``|``, ...)."""
    out: list[Word | str] = []
    text: list[str] = []
    quoted: list[bool] = []
    started = False

    def end() -> None:
        nonlocal started
        if started:
            out.append(Word("".join(text), tuple(quoted)))
        text.clear()
        quoted.clear()
        started = False

    i = 0
    while i < len(command):
        c = command[i]
        if c == "'":
            close = command.find("'", i + 1)
            close = len(command) if close < 0 else close
            text.extend(command[i + 1 : close])
            quoted.extend([True] * (close - i - 1))
            started, i = True, close + 1
            continue
        if c == '"':
            i += 1
            while i < len(command) and command[i] != '"':
                d = command[i]
                if d == "\\" and i + 1 < len(command) and command[i + 1] in '$`"\\\n':
                    text.append(command[i + 1])
                    quoted.append(True)
                    i += 2
                    continue
                live = d in "$`\\" or (d in "({" and text[-1:] == ["$"] and not quoted[-1])
                text.append(d)
                quoted.append(not live)  # expansions ($, $(, ${, `) stay live inside double quotes
                i += 1
            started, i = True, i + 1
            continue
        if c == "\\" and i + 1 < len(command):
            text.append(command[i + 1])
            quoted.append(True)
            started, i = True, i + 2
            continue
        if c in " \t":
            end()
            i += 1
            continue
        if c in _OPERATORS and not (c == "(" and text and text[-1] == "$" and not quoted[-1]):
            end()
            out.append(c)
            i += 1
            continue
        text.append(c)
        quoted.append(False)
        started, i = True, i + 1
    end()
    return out


def violations(command: str) -> list[str]:
    """What hostile values did to ``command``: unquoted metacharacters before a canary, a canary
    split off its metacharacter by the shell, a path under a directory (``/sys/...``) with a ``..``
    component. Empty when none."""
    found: list[str] = []
    for item in words(command):
        if not isinstance(item, Word):
            continue
        start = item.text.find(CANARY)
        while start >= 0:
            if start == 0:
                found.append(f"a hostile value was split by the shell before {item.text!r}")
            else:
                before = item.text[start - 1]
                if before in META and not item.quoted[start - 1]:
                    found.append(f"{before!r} reached the shell unquoted in {item.text!r}")
            start = item.text.find(CANARY, start + 1)
        if item.text.startswith(ROOTS) and ".." in item.text.split("/"):
            found.append(f"path {item.text!r} leaves its directory ('..')")
    return found
