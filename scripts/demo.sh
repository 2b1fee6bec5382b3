#!/usr/bin/env bash
# The demo: LoRA fine-tuning of the embedded all-MiniLM-L6-v2 on the hand-written demo data,
# printing validation metrics before and after. Offline: no hub, W&B offline unless you log in.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/embedforge-train experiment=demo "$@"
