#!/usr/bin/env bash
# The default test run against the newest versions pyproject.toml allows, in .venv-latest (make test-latest):
# drift in an upstream release shows up here, on purpose, before it reaches the lock or a user.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --latest .venv-latest
echo "newest allowed: $(.venv-latest/bin/python -m pip freeze --exclude-editable | grep -i -E '^(transformers|peft|pytorch-lightning|sentence-transformers|mteb|openai|datasets|faiss-cpu|hydra-core|wandb)==' | tr '\n' ' ')"
exec .venv-latest/bin/python -m pytest -q "$@"
