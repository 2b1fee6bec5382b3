# The two commands of the README's Quickstart (demo, test); each sets up .venv from the lock on first use.
.PHONY: setup demo test test-all test-latest lock test-real-server

setup:
	bash scripts/setup.sh

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

test-all:
	bash scripts/test.sh -m "slow or not slow"

# The default test run on the newest versions pyproject.toml allows (a separate .venv-latest).
test-latest:
	bash scripts/test_latest.sh

# Regenerate requirements/lock.txt from the newest allowed versions; then `make test` before committing it.
lock:
	bash scripts/lock.sh

# The synth integration test against llama.cpp's llama-server (builds it once into ~/.cache; 12-25 min on 2 cores).
test-real-server:
	bash scripts/test.sh -m slow tests/synth/test_real_server.py
