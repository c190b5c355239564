#!/usr/bin/env bash
# Gateway vs direct-to-upstream, measured in the same run on this machine.
#
# The gateway is pinned to CPU 0; the mock upstream and the load generator share CPU 1.
# Every scenario runs direct (bench -> mock), through a plain hyper proxy that parses and
# re-encodes every JSON body and SSE event (crates/bench/examples/plain_proxy.rs, also on
# CPU 0: the reference for what any proxy costs on this machine) and through Sluice
# (bench -> sluice -> mock), REPEAT times, alternating; scripts/bench_summary.py prints
# medians and ratios.
# All traffic stays on 127.0.0.1, and every load loop is capped in count and time.
#
# Usage: scripts/bench-gateway.sh [OUT_DIR]   (env: REPEAT=3, SCENARIOS="c1 c64 nostream slow",
#        SLUICE_BIN=path of another sluice build to measure, SKIP_BUILD=1,
#        SLUICE_ARGS="extra sluice serve flags, e.g. --config FILE",
#        SLUICE_BENCH_ARGS="extra load flags for the Sluice runs only, e.g. --keys-file FILE",
#        QUICK=1: half the requests and duration per run, for many alternating runs,
#        NO_PLAIN=1: skip the plain proxy)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-results/gateway-$(date +%Y%m%d-%H%M%S)}
REPEAT=${REPEAT:-3}
SCENARIOS=${SCENARIOS:-"c1 c64 nostream slow"}
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p sluice -p sluice-mock -p sluice-bench
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p sluice-bench --example plain_proxy
BIN=target/release
# SLUICE_BIN measures another build of sluice against the same mock and load generator.
SLUICE_BIN=${SLUICE_BIN:-$BIN/sluice}
ulimit -n 20000

MOCK=127.0.0.1:18001
GW=127.0.0.1:18080
PLAIN=127.0.0.1:18081
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

start_mock() { # args: extra mock flags
    taskset -c 1 "$BIN/sluice-mock" --listen "$MOCK" "$@" >/dev/null &
    pids+=($!); MOCK_PID=$!
    wait_port "$MOCK"
}
start_gw() {
    # shellcheck disable=SC2086 # SLUICE_ARGS is a list of flags
    taskset -c 0 "$SLUICE_BIN" serve --listen "$GW" --backend "openai=http://$MOCK/v1" ${SLUICE_ARGS:-} \
        >"$OUT/gateway.log" 2>&1 &
    pids+=($!); GW_PID=$!
    wait_port "$GW"
}
start_plain() {
    [ -z "${NO_PLAIN:-}" ] || { PLAIN_PID=; return 0; }
    taskset -c 0 "$BIN/examples/plain_proxy" "$PLAIN" "http://$MOCK" >/dev/null 2>&1 &
    pids+=($!); PLAIN_PID=$!
    wait_port "$PLAIN"
}
stop() { [ -n "$1" ] || return 0; kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listening on $1" >&2; exit 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
bench() { # name target extra-args...
    local name=$1 target=$2; shift 2
    taskset -c 1 "$BIN/sluice-bench" --url "http://$target" --quiet --no-progress --json "$OUT/$name.json" "$@"
}
# Runs one scenario direct, through the plain proxy and through Sluice, recording the
# proxies' CPU ticks. args: scenario bench-args...
three_ways() {
    local sc=$1; shift
    bench "$sc-direct-$r" "$MOCK" "$@"
    local t0
    if [ -z "${NO_PLAIN:-}" ]; then
        t0=$(cpu_ticks "$PLAIN_PID")
        bench "$sc-plain-$r" "$PLAIN" "$@"
        echo $(( $(cpu_ticks "$PLAIN_PID") - t0 )) >"$OUT/$sc-plain-$r.cputicks"
    fi
    t0=$(cpu_ticks "$GW_PID")
    # shellcheck disable=SC2086 # SLUICE_BENCH_ARGS is a list of flags
    bench "$sc-sluice-$r" "$GW" "$@" ${SLUICE_BENCH_ARGS:-}
    echo $(( $(cpu_ticks "$GW_PID") - t0 )) >"$OUT/$sc-sluice-$r.cputicks"
}

# Requests and seconds per run: halved with QUICK=1.
n() { if [ -n "${QUICK:-}" ]; then echo $(( $1 / 2 )); else echo "$1"; fi; }
s() { echo "$(n "$1")s"; }

for r in $(seq "$REPEAT"); do
    for sc in $SCENARIOS; do
        case $sc in
        c1)  # time to first token and per-token cost, one stream at a time, 64 tokens
            start_mock --tokens 64; start_gw; start_plain
            three_ways c1 --concurrency 1 --requests "$(n 3000)" --duration "$(s 30)" --stream --warmup 200
            stop "$PLAIN_PID"; stop "$GW_PID"; stop "$MOCK_PID" ;;
        c64) # streamed throughput at concurrency 64, 64 tokens each
            start_mock --tokens 64; start_gw; start_plain
            three_ways c64 --concurrency 64 --requests "$(n 40000)" --duration "$(s 20)" --stream --warmup 500
            stop "$PLAIN_PID"; stop "$GW_PID"; stop "$MOCK_PID" ;;
        nostream) # non-streamed throughput and gateway CPU per request
            start_mock --tokens 64; start_gw; start_plain
            three_ways nostream --concurrency 64 --requests "$(n 200000)" --duration "$(s 20)" --no-stream --warmup 1000
            stop "$PLAIN_PID"; stop "$GW_PID"; stop "$MOCK_PID" ;;
        slow) # 8,000 concurrent slow streams (1 token/s, 20 tokens), gateway RSS
            [ "$r" -eq 1 ] || continue
            start_mock --tokens 20 --delay-ms 1000; start_gw
            bench "slow-sluice-$r" "$GW" --concurrency 8000 --requests 8000 --duration 60s \
                --stream --ramp-up 4s --timeout 50s
            grep -E 'VmHWM|VmRSS' "/proc/$GW_PID/status" >"$OUT/slow-sluice-$r.rss"
            stop "$GW_PID"; stop "$MOCK_PID" ;;
        esac
    done
done
python3 scripts/bench_summary.py "$OUT" | tee "$OUT/summary.md"
