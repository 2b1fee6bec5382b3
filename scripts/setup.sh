#!/usr/bin/env bash
# Set up a virtual environment with embedforge and its test tools.
#
#   scripts/setup.sh                 .venv from the lock (requirements/lock.txt): the exact versions the test
#                                    suite passed with. `make demo`, `make test` and CI install this.
#   scripts/setup.sh --latest DIR    DIR from the newest versions pyproject.toml allows (make test-latest,
#                                    make lock), so upstream drift is seen on purpose, not by a user.
#
# Safe to run repeatedly: the locked venv is only touched when pyproject.toml, the lock or this script
# changed. torch is installed first and apart from the lock: the CPU build of 2.13.0 where there is no
# GPU (so pip never pulls a multi-GB CUDA build), the PyPI build of the same version (CUDA) where there is.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0   # the version the lock was tested with (requirements/lock.txt says so too)
PIP_VERSION=26.3
mode=locked venv=.venv
if [ "${1:-}" = "--latest" ]; then
  mode=latest venv=${2:?usage: scripts/setup.sh --latest DIR}
fi

[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
py="$venv/bin/python"
stamp="$venv/.embedforge-installed"
want=$(cat pyproject.toml requirements/lock.txt requirements/nodeps.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$mode" = locked ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

pip() { "$py" -m pip "$@"; }
pip install -q "pip==$PIP_VERSION"
if ! "$py" -c "import torch" 2>/dev/null; then
  # On machines without a GPU, 2.13.0 resolves to the CPU wheel found locally on our machines; elsewhere
  # add --index-url https://download.pytorch.org/whl/cpu to get the CPU build. With a GPU, PyPI's build
  # brings the CUDA libraries torch itself pins exactly.
  pip install -q "torch==$TORCH_VERSION"
fi
want_py=$(sed -n 's/^# python: //p' requirements/lock.txt)
have_py=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$mode" = locked ]; then
  [ "$have_py" = "$want_py" ] || echo "setup.sh: warning: the lock was made on Python $want_py, this is $have_py; some pins may not install" >&2
  # The lock pins every package; pyproject.toml's ranges must accept them, or pip refuses here.
  pip install -q -r requirements/lock.txt -e ".[test]"
else
  # Everything newest except torch, held at the tested version (an eager upgrade would pull a CUDA build).
  hold=$(mktemp); echo "torch==$TORCH_VERSION" > "$hold"
  pip install -q --upgrade --upgrade-strategy eager -c "$hold" -e ".[test]"
  rm -f "$hold"
fi
# Installed without their dependencies (requirements/nodeps.txt says why), so outside the lock's resolution.
pip install -q --no-deps -r requirements/nodeps.txt
[ "$mode" = locked ] && echo "$want" > "$stamp"
echo "embedforge installed in $venv ($mode; $("$py" -c 'import torch; print("torch", torch.__version__)'))"
