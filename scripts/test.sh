#!/usr/bin/env bash
# The test command: formatting, lints, then every test of every crate (nextest runs each
# test in its own process, two at a time), the doc examples, then the web UI: its
# committed bundle must equal a rebuild, and its browser tests must pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
t0=$SECONDS
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "test.sh: fmt + clippy took $((SECONDS - t0)) s"
t1=$SECONDS
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --lib --bins --tests
fi
cargo test --workspace --locked --doc
t2=$SECONDS
scripts/build-web.sh --check
scripts/test-browser.sh
echo "test.sh: web bundle check and browser tests took $((SECONDS - t2)) s"
echo "test.sh: tests took $((SECONDS - t1)) s (total $((SECONDS - t0)) s)"
