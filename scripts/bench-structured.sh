#!/usr/bin/env bash
# Grammar-constrained JSON generation vs unconstrained on the embedded SmolLM2, same run:
# a release `sluice serve` with the engine alone (one slot, one thread, pinned to CPU 0,
# response cache off), the load (scripts/bench_structured.py, one request in flight,
# plain and constrained alternating) pinned to CPU 1.
#
#   scripts/bench-structured.sh [ROUNDS] [PAIRS]        # defaults 3 and 20
# Env: SKIP_BUILD=1, SLUICE_BIN (default target/release/sluice), THREADS (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
PAIRS=${2:-20}
THREADS=${THREADS:-1}
PORT=${PORT:-18120}
MODEL="${SLUICE_TEST_MODEL:-${SLUICE_MODEL_DIR:-$HOME/.local/share/sluice/models}/SmolLM2-135M-Instruct-Q4_1.gguf}"
[[ -f "$MODEL" ]] || { echo "bench-structured: no model at $MODEL (scripts/fetch-model.sh)" >&2; exit 1; }
[[ -n "${SKIP_BUILD:-}" ]] || nice -n 10 cargo build --release --locked -q -p sluice --bin sluice
SLUICE=${SLUICE_BIN:-${CARGO_TARGET_DIR:-target}/release/sluice}
cfg=$(mktemp --suffix=.toml)
cat > "$cfg" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[log]
level = "warn"
[cache]
enabled = false
[engine]
default_model = "off"
threads = $THREADS
parallel = 1
[[engine.models]]
name = "smollm2"
path = "$MODEL"
context = 2048
TOML
pid=""
trap '[[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null; rm -f "$cfg"' EXIT
taskset -c 0 "$SLUICE" serve --config "$cfg" &
pid=$!
for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
    sleep 0.1
done
taskset -c 1 python3 scripts/bench_structured.py "http://127.0.0.1:$PORT" smollm2 --rounds "$ROUNDS" --pairs "$PAIRS"
