#!/usr/bin/env bash
# Install llama-cpp-python into a venv, built from its PyPI source with hearth's Q8_0 kernel.
#
#   bash requirements/llama-cpp-python/build.sh .venv/bin
#
# What changes in llama.cpp: on CPUs with AVX-512 VNNI, batched Q8_0 x Q8_0 matrix products
# (prompt chunks, decode steps of several sequences) run in hearth_q8_gemm.h instead of llamafile's
# tinyBLAS, giving the same floats bit for bit in fewer instructions (see that file). Everything
# else is the release as published. Elsewhere the patch compiles to nothing.
#
# The source is the pinned release, checked by sha256. The wheel is compiled for this CPU
# (llama.cpp's default -march=native) and kept in a cache keyed by the patch, this script and the
# CPU's feature flags, so a later install on the same kind of machine takes seconds. The version
# carries a local label (0.3.36+hearth.<key>), which still satisfies hearth's `==0.3.36` pin.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${1:?usage: build.sh VENV_BIN_DIR}"
VERSION="0.3.36"
SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"

cpu_flags="$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m)"
key="$( (cat "$HERE/sgemm.patch" "$HERE/hearth_q8_gemm.h" "$HERE/build.sh"; echo "$cpu_flags") \
        | sha256sum | cut -c1-12)"
label="$VERSION+hearth.$key"
cache="${HEARTH_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/wheels}"

installed="$("$BIN/python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))' \
             2>/dev/null || true)"
if [ "$installed" = "$label" ]; then
  exit 0
fi

wheel="$(ls "$cache"/llama_cpp_python-"$label"-*.whl 2>/dev/null | head -n1 || true)"
if [ -z "$wheel" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  echo "building llama-cpp-python $label from source (~6 min on 2 cores)"
  "$BIN/pip" download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$work"
  echo "$SHA256  $work/llama_cpp_python-$VERSION.tar.gz" | sha256sum -c --quiet -
  tar xzf "$work/llama_cpp_python-$VERSION.tar.gz" -C "$work"
  src="$work/llama_cpp_python-$VERSION"
  cp "$HERE/hearth_q8_gemm.h" "$src/vendor/llama.cpp/ggml/src/ggml-cpu/llamafile/"
  patch -s -d "$src" -p1 < "$HERE/sgemm.patch"
  sed -i "s/^__version__ = \"$VERSION\"$/__version__ = \"$label\"/" "$src/llama_cpp/__init__.py"
  grep -q "__version__ = \"$label\"" "$src/llama_cpp/__init__.py"
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    "$BIN/pip" wheel -q --no-deps -w "$work/dist" "$src"
  mkdir -p "$cache"
  cp "$work"/dist/llama_cpp_python-*.whl "$cache/"
  wheel="$(ls "$cache"/llama_cpp_python-"$label"-*.whl | head -n1)"
fi
"$BIN/pip" install -q --no-deps --force-reinstall "$wheel"
