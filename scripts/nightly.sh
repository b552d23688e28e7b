#!/usr/bin/env bash
# The nightly qualification run on a lab rack, for CI (docs/nightly.md):
#   bash scripts/nightly.sh --topology topologies/my-rack.yaml [--wait 3600] [-- -m fc_nvme]
# Takes the rack's exclusive lock, runs the doctor, every link's acceptance tests,
# and writes under reports/: qualification-<run>.html, junit-<run>.xml,
# results-<run>.json, doctor-<run>.txt (plus qualification.html, junit.xml and
# results-latest.json, replaced atomically).
# Exit: 0 pass, 1 a test failed, 2 lab error or usage, 3 the rack is locked.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v fabqual >/dev/null 2>&1; then
  # The venv is built on first use (needs root for the Debian packages).
  source "$REPO/scripts/setup.sh" || exit 2
fi
# Paths given by the caller stay relative to where it runs; the suite is this repository's.
exec fabqual nightly --tests "$REPO/tests/acceptance" "$@"
