#!/usr/bin/env bash
# Installs what building and testing Sluice needs, idempotently: the C/C++ toolchain
# pieces llama.cpp's build uses (cmake, libclang for bindgen), the Python `openai` SDK
# used by one test, and the default model. Safe to run again: it only installs what is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    echo "setup: installing ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! python3 -c "import openai" >/dev/null 2>&1; then
    echo "setup: installing the openai Python SDK"
    python3 -m pip install -q --disable-pip-version-check openai
fi

if [ -x scripts/fetch-model.sh ]; then
    scripts/fetch-model.sh >/dev/null
fi
