#!/usr/bin/env bash
# Routing with a broken backend: one gateway in front of three mock upstreams, first
# all healthy, then with one of them (the first in configuration order, so ties favour
# it) answering every generation with 500. Same load both times; reports the error
# rate clients see and their p99 time to first token, medians over REPEAT runs.
#
# The gateway is pinned to CPU 0; the mocks and the load generator share CPU 1. All
# traffic stays on 127.0.0.1 and every load loop is capped in count and time.
#
# Usage: scripts/bench-routing.sh [OUT_DIR]
#   env: REPEAT=3 REQUESTS=20000 CONCURRENCY=32 DURATION=60s FIRST_MS=20 TOKENS=16
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-results/routing-$(date +%Y%m%d-%H%M%S)}
REPEAT=${REPEAT:-3}
REQUESTS=${REQUESTS:-20000}
CONCURRENCY=${CONCURRENCY:-32}
DURATION=${DURATION:-60s}
FIRST_MS=${FIRST_MS:-20}
TOKENS=${TOKENS:-16}
mkdir -p "$OUT"
cargo build --release -q -p sluice -p sluice-mock -p sluice-bench
BIN=target/release
ulimit -n 20000

MOCKS=(127.0.0.1:18011 127.0.0.1:18012 127.0.0.1:18013)
GW=127.0.0.1:18090
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh   # pids + cleanup on exit, wait_port
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

run() { # scenario-name mode-of-the-first-mock repeat
    local name=$1 mode=$2 r=$3 run_pids=() backends=()
    for i in 0 1 2; do
        local m=normal
        [ "$i" -eq 0 ] && m=$mode
        taskset -c 1 "$BIN/sluice-mock" --listen "${MOCKS[$i]}" --tokens "$TOKENS" \
            --first-token-ms "$FIRST_MS" --mode "$m" >/dev/null &
        pids+=($!); run_pids+=($!)
        wait_port "${MOCKS[$i]}"
        backends+=(--backend "openai=http://${MOCKS[$i]}/v1")
    done
    taskset -c 0 "$BIN/sluice" serve --listen "$GW" "${backends[@]}" >"$OUT/$name-$r.log" 2>&1 &
    pids+=($!); run_pids+=($!)
    wait_port "$GW"
    # No warm-up: the requests that teach the gateway about the broken backend count.
    taskset -c 1 "$BIN/sluice-bench" --url "http://$GW" --quiet --no-progress --stream \
        --concurrency "$CONCURRENCY" --requests "$REQUESTS" --duration "$DURATION" --timeout 30s \
        --json "$OUT/$name-$r.json"
    # The gateway's own view: retries, budget, breaker states.
    { exec 3<>"/dev/tcp/${GW%:*}/${GW#*:}"
      printf 'GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n' >&3
      grep -E '^sluice_(retries|retry_budget|breaker_state|model_breaker_state|upstream_errors|rejections)' <&3 || true
    } >"$OUT/$name-$r.metrics"
    for p in "${run_pids[@]}"; do stop "$p"; done
}

for r in $(seq "$REPEAT"); do
    run healthy normal "$r"
    run one-failing status:500 "$r"
done

python3 - "$OUT" <<'EOF' | tee "$OUT/summary.md"
import glob, json, os, statistics, sys
out = sys.argv[1]
def runs(name):
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, f"{name}-*.json")))]
def med(xs):
    return statistics.median(xs) if xs else float("nan")
rows = {}
for name in ("healthy", "one-failing"):
    rs = runs(name)
    rows[name] = {
        "runs": len(rs),
        "requests": med([r["requests"]["completed"] for r in rs]),
        "error_pct": med([100.0 * r["requests"]["failed"] / max(r["requests"]["completed"], 1) for r in rs]),
        "p50": med([r["ttft_ms"]["p50"] for r in rs]),
        "p99": med([r["ttft_ms"]["p99"] for r in rs]),
        "rps": med([r["throughput"]["requests_per_s"] for r in rs]),
    }
h, f = rows["healthy"], rows["one-failing"]
print("| backends | runs | requests | client errors | TTFT p50 (ms) | TTFT p99 (ms) | requests/s |")
print("|---|---|---|---|---|---|---|")
for name, v in rows.items():
    print(f"| {name} | {v['runs']} | {v['requests']:.0f} | {v['error_pct']:.3f}% | {v['p50']:.2f} | {v['p99']:.2f} | {v['rps']:.0f} |")
ratio = f["p99"] / h["p99"] if h["p99"] else float("nan")
print()
print(f"error rate with one failing backend: {f['error_pct']:.3f}% (target < 0.1%): {'met' if f['error_pct'] < 0.1 else 'MISSED'}")
print(f"p99 TTFT ratio failing/healthy: {ratio:.2f}x (target <= 2x): {'met' if ratio <= 2 else 'MISSED'}")
EOF
