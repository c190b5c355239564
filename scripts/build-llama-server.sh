#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` for side-by-side benchmarks (scripts/bench-chat.sh).
# The llama-cpp-sys-2 crate ships no server sources, so llama.cpp comes from the
# llama-cpp-python sdist on PyPI (its vendor/llama.cpp), built with cmake, UI off, niced,
# into a cache directory outside the repository. Prints the binary's path on stdout.
#
#   scripts/build-llama-server.sh            # LLAMA_CPP_PYTHON=0.3.36 by default
#   LLAMA_NATIVE=OFF scripts/build-llama-server.sh   # the crate's ISA choice (AVX2, no AVX-512)
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON:-0.3.36}"
NATIVE="${LLAMA_NATIVE:-ON}"
CACHE="${SLUICE_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-bench}"
SRC="$CACHE/llama_cpp_python-$VERSION"
BUILD="$CACHE/llama-server-$VERSION-native-$NATIVE"
BIN="$BUILD/bin/llama-server"
if [[ -x "$BIN" ]]; then echo "$BIN"; exit 0; fi
mkdir -p "$CACHE"
if [[ ! -d "$SRC/vendor/llama.cpp/tools/server" ]]; then
    echo "build-llama-server: fetching the llama-cpp-python $VERSION sdist" >&2
    python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$CACHE" >&2
    tar -xzf "$CACHE/llama_cpp_python-$VERSION.tar.gz" -C "$CACHE"
fi
echo "build-llama-server: building into $BUILD (several minutes)" >&2
# GGML_NATIVE=OFF without target features is what llama-cpp-sys-2 builds (AVX, AVX2, FMA,
# F16C, BMI2; no AVX-512); ON is llama.cpp's own default (every ISA extension of this CPU).
nice -n 10 cmake -S "$SRC/vendor/llama.cpp" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE="$NATIVE" -DGGML_CCACHE=OFF >&2
nice -n 10 cmake --build "$BUILD" --target llama-server -j "${JOBS:-2}" >&2
echo "$BIN"
