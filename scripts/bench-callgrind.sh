#!/usr/bin/env bash
# Instructions the gateway executes per request, counted by valgrind's callgrind: the
# same binary, inputs and environment give the same count whatever else the machine is
# doing, so two builds can be compared to the percent on a noisy 2-core VM.
#
# For each scenario (streamed: 64 SSE tokens; whole: the same answer non-streamed) the
# gateway runs under callgrind twice, serving N1 and then N2 requests (one at a time,
# after the same warm-up), and the count per request is
# (instructions(N2) - instructions(N1)) / (N2 - N1): start-up, discovery and shutdown
# cancel out. The mock upstream and the load generator run natively on CPU 1.
#
# Usage: scripts/bench-callgrind.sh [OUT_DIR]
#   env: SLUICE_BIN (default target/release/sluice) to measure another build,
#        N1=200 N2=1200, WARMUP=20, SKIP_BUILD=1,
#        SLUICE_ARGS="extra sluice serve flags, e.g. --config FILE",
#        SLUICE_BENCH_ARGS="extra load flags, e.g. --keys-file FILE",
#        BEFORE_EACH="a command run before each measurement (restore a store copy)".
# All traffic stays on 127.0.0.1; every load loop is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-results/callgrind-$(date +%Y%m%d-%H%M%S)}
N1=${N1:-200}
N2=${N2:-1200}
WARMUP=${WARMUP:-20}
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p sluice -p sluice-mock -p sluice-bench
BIN=target/release
SLUICE_BIN=${SLUICE_BIN:-$BIN/sluice}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

MOCK=127.0.0.1:18101
GW=127.0.0.1:18180
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_port() {
    for _ in $(seq 3000); do
        (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listening on $1" >&2; exit 1
}

taskset -c 1 "$BIN/sluice-mock" --listen "$MOCK" --tokens 64 >/dev/null &
pids+=($!)
wait_port "$MOCK"

# Runs the gateway under callgrind for `n` requests; prints its instruction total.
measure() { # name n bench-args...
    local name=$1 n=$2; shift 2
    local file="$OUT/$name-$n.callgrind"
    # BEFORE_EACH: a command run before each measurement, e.g. restoring a store copy,
    # so that what one run stored does not change the next one's start-up.
    [ -z "${BEFORE_EACH:-}" ] || bash -c "$BEFORE_EACH"
    # shellcheck disable=SC2086 # SLUICE_ARGS and SLUICE_BENCH_ARGS are lists of flags
    valgrind --tool=callgrind --callgrind-out-file="$file" \
        "$SLUICE_BIN" serve --listen "$GW" --backend "openai=http://$MOCK/v1" ${SLUICE_ARGS:-} \
        >"$OUT/$name-$n.log" 2>&1 &
    local gw=$!
    pids+=("$gw")
    wait_port "$GW"
    taskset -c 1 "$BIN/sluice-bench" --url "http://$GW" --quiet --no-progress \
        --concurrency 1 --requests "$n" --warmup "$WARMUP" --duration 600s "$@" ${SLUICE_BENCH_ARGS:-} >/dev/null
    kill -TERM "$gw"
    wait "$gw" 2>/dev/null || true
    awk '/^(summary|totals):/ {print $2; exit}' "$file"
}

{
    echo "| scenario | instructions ($N1 req) | instructions ($N2 req) | per request |"
    echo "|---|---|---|---|"
    for sc in stream whole; do
        if [ "$sc" = stream ]; then args=(--stream); else args=(--no-stream); fi
        a=$(measure "$sc" "$N1" "${args[@]}")
        b=$(measure "$sc" "$N2" "${args[@]}")
        echo "| $sc | $a | $b | $(( (b - a) / (N2 - N1) )) |"
    done
} | tee "$OUT/summary.md"
