"""Debian releases the lab guests can run, and a private apt view of each.

A release's guest image is built from that release's own archive: its kernel
package, its linux-source, its package names. The host (any Debian) knows only
its own release, so each release gets an apt view of its own under
``<cache>/apt/<release>/``: the host's Debian mirrors with the release's
suites, its own package lists, never the host's apt state. The view answers
"which kernel is current" and "which of these packages exist" by asking apt,
not from a table of versions.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fabqual.errors import LabError
from fabqual.topology.grammar import LAB_RELEASES

RELEASES: tuple[str, ...] = LAB_RELEASES
DEFAULT_RELEASE = "bookworm"
# Package lists older than this are fetched again (a new kernel in the archive means a new image).
LISTS_MAX_AGE_S = 24 * 3600


def check_release(value: str, what: str = "release") -> str:
    """``value`` if it names a known release, else one LabError line saying which ones are."""
    if value not in RELEASES:
        raise LabError(f"unknown {what} {value!r}: the lab guests run Debian {', '.join(RELEASES)}")
    return value


@dataclass(frozen=True)
class Pair:
    """The releases of the two lab guests: ``tgt`` runs ``target``, ``ini`` runs ``host``."""

    target: str = DEFAULT_RELEASE
    host: str = DEFAULT_RELEASE

    def __post_init__(self) -> None:
        check_release(self.target, "target release")
        check_release(self.host, "host release")

    @classmethod
    def parse(cls, text: str) -> Pair:
        """``target:host`` (``bookworm:trixie``); one release alone means both."""
        target, sep, host = text.strip().partition(":")
        if not target or (sep and not host) or ":" in host:
            raise LabError(f"bad release pair {text!r}: write TARGET:HOST, e.g. bookworm:trixie")
        return cls(target, host or target)

    @property
    def name(self) -> str:
        return f"{self.target}:{self.host}"

    def for_guest(self, guest: str) -> str:
        return self.target if guest == "tgt" else self.host


def all_pairs() -> tuple[Pair, ...]:
    return tuple(Pair(t, h) for t in RELEASES for h in RELEASES)


@dataclass(frozen=True)
class KernelPackage:
    abi: str  # "6.1.0-57-amd64"
    version: str  # "6.1.192-3"

    @property
    def series(self) -> str:
        """Upstream major.minor ("6.1"): names linux-source-<series> and the patch directory."""
        match = re.match(r"(\d+\.\d+)", self.version)
        if not match:
            raise LabError(f"cannot read the kernel series from version {self.version!r}")
        return match.group(1)


class AptView:
    """apt-get/apt-cache on one release's lists, kept apart from the host's own apt state."""

    def __init__(self, release: str, cache: Path) -> None:
        self.release = check_release(release)
        self.root = cache / "apt" / release
        self.sources = self.root / "sources.list.d" / "debian.sources"

    def options(self) -> list[str]:
        r = self.root
        return [
            "-o", "Dir::Etc::SourceList=/dev/null",
            "-o", f"Dir::Etc::SourceParts={r / 'sources.list.d'}",
            "-o", f"Dir::Etc::Preferences={r / 'preferences'}",
            "-o", f"Dir::Etc::PreferencesParts={r / 'preferences.d'}",
            "-o", f"Dir::State={r / 'state'}",
            "-o", f"Dir::State::Lists={r / 'lists'}",
            "-o", f"Dir::State::status={r / 'status'}",
            "-o", f"Dir::Cache={r / 'cache'}",
            "-o", "APT::Get::List-Cleanup=true",
        ]  # fmt: skip

    def refresh(self, *, max_age: float = LISTS_MAX_AGE_S, progress: Callable[[str], None] = print) -> None:
        """Write the view's sources and fetch its package lists unless they are fresh.

        If the archive cannot be reached but lists were fetched before, those are used (said once).
        """
        for sub in ("sources.list.d", "preferences.d", "state", "lists/partial", "cache/archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        (self.root / "preferences").touch()
        text = debian_sources(self.release)
        stamp = self.root / "lists" / ".fabqual-updated"
        fresh = stamp.is_file() and time.time() - stamp.stat().st_mtime < max_age
        if fresh and self.sources.is_file() and self.sources.read_text() == text:
            return
        old = self.sources.read_text() if self.sources.is_file() else ""
        self.sources.write_text(text)
        try:
            run(["apt-get", *self.options(), "-q", "update"], f"fetch the Debian {self.release} package lists")
        except LabError as error:
            if not stamp.is_file() or old != text:
                raise
            progress(f"using the Debian {self.release} package lists fetched before: {error}")
            return
        stamp.touch()

    def kernel(self) -> KernelPackage:
        """The release's current kernel (what linux-image-amd64 depends on)."""
        depends = run(["apt-cache", *self.options(), "depends", "linux-image-amd64"], "ask apt for the kernel")
        match = re.search(r"Depends: linux-image-(\S+)", depends)
        if not match:
            raise LabError(f"Debian {self.release} lists no linux-image-amd64 (apt view {self.root}); remove it, retry")
        abi = match.group(1)
        version = self.candidates([f"linux-image-{abi}"]).get(f"linux-image-{abi}")
        if not version:
            raise LabError(f"Debian {self.release} has no candidate for linux-image-{abi}; remove {self.root}, retry")
        return KernelPackage(abi, version)

    def candidates(self, names: Sequence[str]) -> dict[str, str]:
        """Name -> candidate version for each of ``names`` this release has (absent names left out)."""
        if not names:
            return {}
        out = run(["apt-cache", *self.options(), "policy", *names], "ask apt which packages exist")
        found: dict[str, str] = {}
        for block in re.split(r"\n(?=\S)", out):
            name = re.match(r"(\S+):", block)
            version = re.search(r"Candidate: (\S+)", block)
            if name and version and version.group(1) != "(none)":
                found[name.group(1)] = version.group(1)
        return found

    def download(self, package: str, into: Path) -> Path:
        """``apt-get download`` one package (``name=version``) into ``into``; the .deb's path."""
        into.mkdir(parents=True, exist_ok=True)
        run(["apt-get", *self.options(), "download", "-q", package], f"download {package}", cwd=into)
        debs = sorted(into.glob(f"{package.split('=')[0]}_*.deb"))
        if not debs:
            raise LabError(f"apt downloaded no .deb for {package} into {into}")
        return debs[-1]


def debian_sources(release: str) -> str:
    """deb822 sources for ``release`` on the host's own Debian mirrors (main archive and security).

    The mirrors are those of the host's Debian sources (whatever its release); the
    suites are renamed to ``release`` (``bookworm-updates`` -> ``trixie-updates``).
    Non-Debian repositories on the host are left out.
    """
    mirrors: dict[str, set[str]] = {}  # URI -> suite suffixes ("", "-updates", "-security")
    signed: dict[str, str] = {}
    for uri, suites, signed_by in _host_debian_sources():
        for suite in suites:
            base, dash, suffix = suite.partition("-")
            if base in RELEASES or base in ("stable", "oldstable", "testing"):
                mirrors.setdefault(uri, set()).add(dash + suffix)
        if signed_by:
            signed[uri] = signed_by
    if not mirrors:
        raise LabError(
            "no Debian apt source on this host (/etc/apt/sources.list*): add a Debian mirror, e.g. deb.debian.org"
        )
    stanzas = []
    for uri, suffixes in sorted(mirrors.items()):
        names = " ".join(release + s for s in sorted(suffixes))
        stanza = f"Types: deb\nURIs: {uri}\nSuites: {names}\nComponents: main"
        stanza += f"\nSigned-By: {signed.get(uri, '/usr/share/keyrings/debian-archive-keyring.gpg')}"
        stanzas.append(stanza)
    return "\n\n".join(stanzas) + "\n"


def _host_debian_sources() -> list[tuple[str, list[str], str]]:
    """(URI, suites, Signed-By) of every enabled ``deb`` source on the host."""
    found: list[tuple[str, list[str], str]] = []
    for file in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", file.read_text()):
            fields = _deb822_fields(stanza)
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                for uri in fields.get("uris", "").split():
                    found.append((uri, fields.get("suites", "").split(), fields.get("signed-by", "")))
    for file in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if file.is_file():
            for line in file.read_text().splitlines():
                match = re.match(r"^\s*deb\s+(\[(?P<opts>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)\s", line)
                if match:
                    key = re.search(r"signed-by=(\S+)", match["opts"] or "")
                    found.append((match["uri"], [match["suite"]], key.group(1) if key else ""))
    return found


def _deb822_fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[:1].isspace():
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    return fields


def run(argv: Sequence[str], what: str, *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a build command; on failure raise one LabError line naming the step and the last output lines."""
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, env=env, capture_output=True, text=True, errors="replace", check=False
        )
    except FileNotFoundError:
        raise LabError(f"cannot {what}: {argv[0]} is not installed (apt-get install {argv[0]})") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).strip().splitlines() if line.strip()]
        last = " | ".join(lines[-3:]) if lines else "no output"
        raise LabError(f"cannot {what}: {argv[0]} exited {proc.returncode}: {last}")
    return proc.stdout


__all__ = ["RELEASES", "AptView", "KernelPackage", "Pair", "all_pairs", "check_release", "debian_sources"]
