#!/usr/bin/env bash
# The web UI's browser tests: Debian's Chromium driven by playwright-core (web/tests/)
# against a real `sluice serve` in front of the mock upstream. Builds both binaries
# (debug) first. SLUICE_SCREENSHOTS=docs/screenshots also refreshes the README's
# screenshots.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -p sluice --bin sluice -p sluice-mock --bin sluice-mock
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export SLUICE_BIN="$target/debug/sluice" SLUICE_MOCK="$target/debug/sluice-mock"
if [ -n "${SLUICE_SCREENSHOTS:-}" ]; then SLUICE_SCREENSHOTS=$(realpath -m "$SLUICE_SCREENSHOTS"); export SLUICE_SCREENSHOTS; fi
cd web
[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --loglevel=error
node --test --test-concurrency=1 tests/
