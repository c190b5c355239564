#!/usr/bin/env bash
# Measures the web UI in Chromium (docs/benchmarks.md, "Web UI"): bundle size, first
# load, a 500-message conversation, streaming. Starts `sluice serve` on a temporary
# store in front of `sluice-mock`: the release build, or the debug one with
# PROFILE=debug (what the browser measures barely depends on it).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
if [ "$profile" = release ]; then flag=--release; else flag=; fi
cargo build $flag --locked -p sluice --bin sluice -p sluice-mock --bin sluice-mock
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
target/$profile/sluice-mock --listen 127.0.0.1:18701 >/dev/null &
cat > "$dir/sluice.toml" <<TOML
[server]
listen = "127.0.0.1:18700"
[store]
url = "sqlite://$dir/sluice.db"
[engine]
default_model = "off"
[[backends]]
name = "mock"
kind = "openai"
url = "http://127.0.0.1:18701/v1"
models = ["mock-model"]
TOML
target/$profile/sluice serve --config "$dir/sluice.toml" >/dev/null 2>&1 &
for _ in $(seq 50); do curl -sf http://127.0.0.1:18700/healthz >/dev/null && break; sleep 0.1; done
cd web
[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --loglevel=error
SLUICE_URL=http://127.0.0.1:18700 node bench/measure.mjs
