#!/usr/bin/env bash
# Install what fabqual needs on a Debian 12 machine, idempotently:
# Debian packages (only the missing ones) and a virtual environment with fabqual.
# Sourced by qualify.sh and selftest.sh; safe to run again and again.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FABQUAL_VENV:-$REPO/.venv}"

# Host-side tools: QEMU and image building for the emulated lab, the traffic tools,
# OpenSSH (the executor's self-tests run a real sshd), Go and govmomi's source
# to build VMware's vCenter simulator, Chromium to check the HTML report.
# PostgreSQL: the results database self-tests start a throwaway cluster with its binaries.
APT_PACKAGES=(
  python3 python3-venv python3-dev gcc
  qemu-system-x86 qemu-utils mmdebstrap zstd cpio kmod
  openssh-server openssh-client
  fio iperf3 iputils-ping iproute2 sg3-utils nvme-cli
  golang-go golang-github-vmware-govmomi-dev
  chromium
  postgresql
)

if [ "$(id -u)" -ne 0 ]; then
  echo "fabqual setup: run as root (it installs Debian packages and boots VMs)" >&2
  exit 2
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "fabqual setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The venv is rebuilt only when pyproject.toml changes.
stamp="$VENV/.fabqual-installed"
want="$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "fabqual setup: installing fabqual into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e "$REPO[dev]"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
