#!/usr/bin/env bash
# Regenerate requirements/lock.txt (make lock): install the newest versions pyproject.toml allows (with the
# test extra) into .venv-latest, and freeze them. torch and the --no-deps packages (requirements/nodeps.txt)
# stay out of the lock: scripts/setup.sh installs them itself. Run `make test` afterwards: a lock is only
# committed once the suite passes with it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-latest}
bash scripts/setup.sh --latest "$venv"
py="$venv/bin/python"
{
  echo "# The exact versions the test suite passes with. Made by \`make lock\` (scripts/lock.sh) from pyproject.toml"
  echo "# with the test extra; installed by scripts/setup.sh, so \`make demo\`, \`make test\` and CI get exactly these."
  echo "# Not in here: torch (scripts/setup.sh installs torch==$("$py" -c 'import torch; print(torch.__version__.split("+")[0])'),"
  echo "# the CPU build without a GPU, PyPI's CUDA build with one, whose nvidia-* libraries torch pins itself)"
  echo "# and requirements/nodeps.txt."
  echo "# python: $("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  echo "# platform: $("$py" -c 'import platform; print(platform.system(), platform.machine())')"
  "$py" -m pip freeze --exclude-editable \
    | grep -v -i -E '^(torch|embedforge|pip|setuptools|wheel)(==| @)' \
    | grep -v -i -F -f <(sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1==/p' requirements/nodeps.txt)
} > requirements/lock.txt.new
mv requirements/lock.txt.new requirements/lock.txt
echo "requirements/lock.txt: $(grep -c '^[^#]' requirements/lock.txt) pins"
