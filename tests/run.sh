#!/usr/bin/env bash
# The test command: sets everything up on a fresh machine, then runs the whole suite.
#   bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q -r requirements.txt -r tests/requirements.txt
# The browser test drives Debian's Chromium (no browser download).
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo")
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
exec .venv/bin/python -m pytest -q tests "$@"
