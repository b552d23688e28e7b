#!/usr/bin/env bash
# The main job: a qualification run. Without a topology it boots the emulated lab
# (built and cached on first use), runs every link's acceptance tests, tears
# everything down and writes reports/qualification.html, junit.xml and results.json.
#   bash scripts/qualify.sh                          # the emulated lab
#   bash scripts/qualify.sh --topology my-rack.yaml  # a real rack
#   bash scripts/qualify.sh -m fc_nvme               # one link type
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/setup.sh"
cd "$REPO"
mkdir -p reports
exec pytest tests/acceptance \
  --html=reports/qualification.html --self-contained-html \
  --junitxml=reports/junit.xml \
  "$@"
