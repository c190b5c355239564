#!/usr/bin/env bash
# Instructions the gateway spends per streamed token of each kind: text deltas
# (`delta.content`), reasoning deltas (`delta.reasoning_content`) and tool-call argument
# deltas (`delta.tool_calls[0].function.arguments`), counted by valgrind's callgrind
# (the same binary and inputs give the same count however busy the machine is).
#
# The mock upstream (OpenAI dialect) streams each kind on request (`[mock tokens=T]`,
# `[mock tokens=T reasoning=T]`, `[mock tokens=T call=lookup]`). For each kind and each
# answer length T1 and T2, the gateway runs under callgrind twice, serving N1 and then
# N2 streamed chat completions one at a time after the same warm-up; the count per
# request is (instructions(N2) - instructions(N1)) / (N2 - N1), and the count per token
# is (per request at T2 - per request at T1) / (T2 - T1): start-up and everything a
# request costs once (routing, the first and last chunks, the usage record) cancel out.
# The mock and the load generator run natively on CPU 1.
#
# Usage: scripts/bench-deltas.sh [OUT_DIR]
#   env: SLUICE_BIN (default target/release/sluice), N1=50 N2=250, T1=16 T2=80,
#        WARMUP=10, SKIP_BUILD=1.
# All traffic stays on 127.0.0.1; every load loop is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-results/deltas-$(date +%Y%m%d-%H%M%S)}
N1=${N1:-50}
N2=${N2:-250}
T1=${T1:-16}
T2=${T2:-80}
WARMUP=${WARMUP:-10}
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p sluice -p sluice-mock -p sluice-bench
BIN=${CARGO_TARGET_DIR:-target}/release
SLUICE_BIN=${SLUICE_BIN:-$BIN/sluice}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

MOCK=127.0.0.1:18111
GW=127.0.0.1:18190
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

taskset -c 1 "$BIN/sluice-mock" --listen "$MOCK" >/dev/null &
pids+=($!)
wait_port "$MOCK"

# Runs the gateway under callgrind for `n` requests of `prompt`; prints its instruction total.
measure() { # name n prompt
    local name=$1 n=$2 prompt=$3
    local file="$OUT/$name-$n.callgrind"
    valgrind --tool=callgrind --callgrind-out-file="$file" \
        "$SLUICE_BIN" serve --listen "$GW" --backend "openai=http://$MOCK/v1" \
        >"$OUT/$name-$n.log" 2>&1 &
    local gw=$!
    pids+=("$gw")
    wait_port "$GW"
    taskset -c 1 "$BIN/sluice-bench" --url "http://$GW" --quiet --no-progress --stream \
        --concurrency 1 --requests "$n" --warmup "$WARMUP" --duration 600s --prompt "$prompt" >/dev/null || true
    kill -TERM "$gw"
    wait "$gw" 2>/dev/null || true
    awk '/^(summary|totals):/ {print $2; exit}' "$file"
}

per_request() { # name prompt
    local a b
    a=$(measure "$1" "$N1" "$2")
    b=$(measure "$1" "$N2" "$2")
    echo $(( (b - a) / (N2 - N1) ))
}

directive() { # kind tokens
    case $1 in
        text) echo "hi [mock tokens=$2]" ;;
        reasoning) echo "hi [mock tokens=$2 reasoning=$2]" ;;
        tool) echo "hi [mock tokens=$2 call=lookup]" ;;
    esac
}

{
    echo "| kind | per request ($T1 tokens) | per request ($T2 tokens) | per token |"
    echo "|---|---|---|---|"
    for kind in text reasoning tool; do
        a=$(per_request "$kind-$T1" "$(directive "$kind" "$T1")")
        b=$(per_request "$kind-$T2" "$(directive "$kind" "$T2")")
        echo "| $kind | $a | $b | $(( (b - a) / (T2 - T1) )) |"
    done
} | tee "$OUT/summary.md"
