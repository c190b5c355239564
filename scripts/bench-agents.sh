#!/usr/bin/env bash
# Through an agent vs the agent's backend directly, measured in the same run.
#
# Path "direct": bench -> mock.  Path "agent": bench -> sluice serve -> (WebSocket) ->
# sluice agent -> mock. The gateway is pinned to CPU 0; the agent, the mock and the load
# generator share CPU 1 (this machine has two). Every scenario runs REPEAT times,
# alternating direct and agent; scripts/bench_agents_summary.py prints medians.
# All traffic stays on 127.0.0.1, and every load loop is capped in count and time.
#
# Scenarios:
#   c1     one stream at a time, 64 tokens, no upstream delay: added TTFT and per-token cost
#   paced  upstream at 1,000 tokens/s per stream (1 ms apart), 200 tokens: gap p99
#   relay  64 concurrent streams of 512 tokens: tokens/s the gateway core relays
#
# Usage: scripts/bench-agents.sh [OUT_DIR]   (env: REPEAT=3, SCENARIOS="c1 paced relay", SKIP_BUILD=1,
#        SLUICE_BIN=path of another sluice build to measure, QUICK=1: half the requests and
#        duration per run, for many alternating runs)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-results/agents-$(date +%Y%m%d-%H%M%S)}
REPEAT=${REPEAT:-3}
SCENARIOS=${SCENARIOS:-"c1 paced relay"}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p sluice -p sluice-mock -p sluice-bench
BIN=target/release
# SLUICE_BIN measures another build of sluice against the same mock and load generator.
SLUICE_BIN=${SLUICE_BIN:-$BIN/sluice}
ulimit -n 20000

MOCK=127.0.0.1:18101
GW=127.0.0.1:18180
CONF="$OUT/gateway.toml"
printf '[store]\nurl = "sqlite://%s/sluice.db"\n[agents]\ntimeouts = { first_token = "60s" }\n' "$OUT" >"$CONF"
TOKEN=$("$SLUICE_BIN" agent-token create --name bench --config "$CONF" | awk '/^token:/ {print $2}')

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listening on $1" >&2; exit 1
}
wait_agent() {
    for _ in $(seq 200); do
        curl -sf "http://$GW/admin/agents" | grep -q '"id":"bench"' && return 0
        sleep 0.05
    done
    echo "the agent did not connect" >&2; exit 1
}
start() { # mock flags...
    taskset -c 1 "$BIN/sluice-mock" --listen "$MOCK" "$@" >/dev/null &
    pids+=($!); MOCK_PID=$!
    wait_port "$MOCK"
    taskset -c 0 "$SLUICE_BIN" serve --config "$CONF" --listen "$GW" >"$OUT/gateway.log" 2>&1 &
    pids+=($!); GW_PID=$!
    wait_port "$GW"
    taskset -c 1 "$SLUICE_BIN" agent --gateway "http://$GW" --token "$TOKEN" --id bench --slots 256 \
        --backend "openai=http://$MOCK/v1" >"$OUT/agent.log" 2>&1 &
    pids+=($!); AGENT_PID=$!
    wait_agent
}
stop_all() { stop "$AGENT_PID"; stop "$GW_PID"; stop "$MOCK_PID"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
bench() { # name target extra-args...
    local name=$1 target=$2; shift 2
    taskset -c 1 "$BIN/sluice-bench" --url "http://$target" --quiet --no-progress --json "$OUT/$name.json" "$@"
}

# Requests and seconds per run: halved with QUICK=1.
n() { if [ -n "${QUICK:-}" ]; then echo $(( $1 / 2 )); else echo "$1"; fi; }
s() { echo "$(n "$1")s"; }

for r in $(seq "$REPEAT"); do
    for sc in $SCENARIOS; do
        case $sc in
        c1)
            start --tokens 64
            args=(--concurrency 1 --requests "$(n 3000)" --duration "$(s 30)" --stream --warmup 200)
            bench "c1-direct-$r" "$MOCK" "${args[@]}"
            bench "c1-agent-$r" "$GW" "${args[@]}"
            stop_all ;;
        paced)
            start --tokens 200 --delay-ms 1
            args=(--concurrency 8 --requests "$(n 400)" --duration "$(s 30)" --stream --warmup 16)
            bench "paced-direct-$r" "$MOCK" "${args[@]}"
            bench "paced-agent-$r" "$GW" "${args[@]}"
            stop_all ;;
        relay)
            start --tokens 512
            args=(--concurrency 64 --requests "$(n 4000)" --duration "$(s 20)" --stream --warmup 64)
            bench "relay-direct-$r" "$MOCK" "${args[@]}"
            t0=$(cpu_ticks "$GW_PID")
            bench "relay-agent-$r" "$GW" "${args[@]}"
            echo $(( $(cpu_ticks "$GW_PID") - t0 )) >"$OUT/relay-agent-$r.cputicks"
            stop_all ;;
        esac
    done
done
python3 scripts/bench_agents_summary.py "$OUT" | tee "$OUT/summary.md"
