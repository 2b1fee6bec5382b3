#!/usr/bin/env bash
# The default test run (slow tests excluded; add `-m "slow or not slow"` for everything).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
