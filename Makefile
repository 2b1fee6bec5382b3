# The two commands of the README's Quickstart; each sets up .venv on first use.
.PHONY: setup demo test test-all test-real-server

setup:
	bash scripts/setup.sh

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

test-all:
	bash scripts/test.sh -m "slow or not slow"

# The synth integration test against llama.cpp's llama-server (builds it once into ~/.cache; ~12 min).
test-real-server:
	bash scripts/test.sh -m slow tests/synth/test_real_server.py
