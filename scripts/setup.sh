#!/usr/bin/env bash
# Installs what building and testing Sluice needs, idempotently: the C/C++ toolchain
# pieces llama.cpp's build uses (cmake, libclang for bindgen), Node and Chromium for
# the web UI's browser tests, the Python `openai` SDK, `ollama` client and LangChain
# integrations, the `openai` Node SDK and nginx used by client tests, a running Redis
# for the cache test, and the default model. Safe to run again: it only installs or
# starts what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
# The web UI: Node builds and tests it (never needed by `cargo build`); Chromium runs
# the browser tests.
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# A real reverse proxy for the slow-first-token test (never started as a service).
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    echo "setup: installing ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The Redis cache test needs a Redis on 127.0.0.1:6379: start one if none answers.
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    if ! command -v redis-server >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
        echo "setup: installing redis-server"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
    fi
    echo "setup: starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
fi

if ! python3 -c "import openai" >/dev/null 2>&1; then
    echo "setup: installing the openai Python SDK"
    python3 -m pip install -q --disable-pip-version-check openai
fi
if ! python3 -c "import ollama" >/dev/null 2>&1; then
    echo "setup: installing the ollama Python client"
    python3 -m pip install -q --disable-pip-version-check ollama
fi

if ! python3 -c "import langchain_openai, langchain_ollama" >/dev/null 2>&1; then
    echo "setup: installing LangChain's OpenAI and Ollama integrations"
    python3 -m pip install -q --disable-pip-version-check langchain-openai langchain-ollama
fi
# The official openai Node SDK, for the client tests (tests/clients, from its lockfile).
if [ ! -d tests/clients/node_modules/openai ]; then
    echo "setup: installing the openai Node SDK"
    (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ -x scripts/fetch-model.sh ]; then
    scripts/fetch-model.sh >/dev/null
fi
