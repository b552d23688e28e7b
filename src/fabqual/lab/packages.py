"""The guest's Debian packages, as wanted, and resolved per release by asking its apt.

Each entry is a package name, ``a|b`` for "the first of these the release
has", and a trailing ``?`` for "only if the release has it". Names are
resolved against the release's own package lists (releases.AptView), never
from a table of which release calls a package what.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fabqual.errors import LabError
from fabqual.lab.releases import AptView

GUEST_PACKAGES: tuple[str, ...] = (
    # Satisfies init-system-helpers' "usrmerge | usr-is-merged" where it has that dependency,
    # so that usrmerge, which the essential phase then installs, and the perl it drags in can go.
    "usr-is-merged?",
    "systemd",
    "systemd-sysv",
    "udev",
    "openssh-server",
    "iproute2",
    "kmod",
    "rdma-core",
    "ibverbs-utils",
    "ibverbs-providers",
    "perftest",
    "fio",
    "nvme-cli",
    "iperf3",
    "iputils-ping",
    "sg3-utils",
    "python3",
    "procps",
    "tcmu-runner",
    "dmsetup",  # a device-mapper holder over a scratch device: the scratch-safety self-test
)

# Whatever of these the essential phase installed is purged from the guest (usrmerge and the perl
# it needs; nothing in the lab uses them). dpkg refuses if anything else came to depend on them, so
# the build fails loudly rather than losing a package. Patterns are awk regular expressions.
PURGED: tuple[str, ...] = (
    "usrmerge",
    "libfile-find-rule-perl",
    "libnumber-compare-perl",
    "libtext-glob-perl",
    "perl",
    r"perl-modules-[0-9.]+",
    r"libperl5\.[0-9.]+",
)


@dataclass(frozen=True)
class Resolved:
    install: tuple[str, ...]  # names given to mmdebstrap, in the wanted order
    versions: dict[str, str]  # name -> candidate version in the release
    left_out: tuple[str, ...]  # optional entries the release does not have


def resolve(view: AptView, wanted: Sequence[str] = GUEST_PACKAGES) -> Resolved:
    """Pick each wanted entry's package from what ``view``'s release has; one line if a required one is missing."""
    names = sorted({name for entry in wanted for name in entry.rstrip("?").split("|")})
    have = view.candidates(names)
    install: list[str] = []
    left_out: list[str] = []
    for entry in wanted:
        optional = entry.endswith("?")
        choices = entry.rstrip("?").split("|")
        chosen = next((name for name in choices if name in have), None)
        if chosen is not None:
            install.append(chosen)
        elif optional:
            left_out.append(entry)
        else:
            raise LabError(
                f"Debian {view.release} has no package {' or '.join(choices)} that the lab guest needs;"
                f" check the apt view in {view.root}, or mark the entry optional in fabqual/lab/packages.py"
            )
    return Resolved(tuple(install), {name: have[name] for name in install}, tuple(left_out))


def purge_script() -> str:
    """Shell run in the guest root: purge whatever of PURGED is installed."""
    pattern = "^(" + "|".join(PURGED) + ")$"
    return (
        "pkgs=$(dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n' | "
        f"awk '$1 == \"ii\" && $2 ~ /{pattern}/ {{print $2}}'); "
        '[ -z "$pkgs" ] || dpkg --purge $pkgs'
    )


__all__ = ["GUEST_PACKAGES", "PURGED", "Resolved", "purge_script", "resolve"]
