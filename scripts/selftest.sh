#!/usr/bin/env bash
# The suite's own tests: lint, types, and the self-tests (parsers, codecs, topology,
# executors against a real sshd, vCenter driver against VMware's simulator, and the
# emulated lab booted for real). CI runs exactly this, through .ci/run.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/setup.sh"
cd "$REPO"
ruff check src tests benchmarks
ruff format --check src tests benchmarks
mypy
exec pytest tests/self "$@"
