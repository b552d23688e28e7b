#!/usr/bin/env bash
# The suite's own tests: lint, types, and the self-tests in their three tiers, in this
# order: tests/self/unit (no VM, no service), tests/self/integration (real sshd,
# VMware's simulator, PostgreSQL, labgrid, inner pytest runs) and tests/self/lab (the
# emulated lab booted for real). CI runs exactly this, through .ci/run.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/setup.sh"
cd "$REPO"
ruff check src tests benchmarks
ruff format --check src tests benchmarks
mypy
exec pytest tests/self "$@"
