#!/usr/bin/env bash
# Slow-header attack vs a normal client (issue 15's load target): a normal client on
# 127.0.0.2 streams from the gateway (mock upstream) while quiet, then while
# scripts/bench-trickle.py holds ATTACKERS connections from 127.0.0.1, each trickling a
# request head one byte a second and reconnecting a second after the gateway closes it
# (header read timeout, or the per-address cap's 503). Reports the normal client's TTFT
# p50/p99 both ways, per round, and the gateway's open descriptors and RSS under attack.
#
# The gateway runs on CPU 0 with its default limits (max_connections 10,000,
# max_connections_per_ip 1,000, header_read_timeout 10 s); the mock, the normal client
# and the attacker on CPU 1 (the attacker at nice 19, so the client's own measurement is
# not queued behind it). Bounded: each phase by a request count and a time cap.
#
# Usage: scripts/bench-trickle.sh [OUT_DIR]
#   env: ROUNDS (3), ATTACKERS (10000), REQUESTS (1500 per phase), CONCURRENCY (2),
#        PROMPT_DIRECTIVE ("[mock tokens=16 delay_ms=5]"), SKIP_BUILD=1,
#        SLUICE_BIN / BENCH_BIN / MOCK_BIN (default target/release/…)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
ATTACKERS=${ATTACKERS:-10000}
REQUESTS=${REQUESTS:-1500}
CONCURRENCY=${CONCURRENCY:-2}
DIRECTIVE=${PROMPT_DIRECTIVE:-[mock tokens=16 delay_ms=5]}
OUT=${1:-bench-results/trickle-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p sluice -p sluice-mock -p sluice-bench
SLUICE_BIN=${SLUICE_BIN:-target/release/sluice}
BENCH_BIN=${BENCH_BIN:-target/release/sluice-bench}
MOCK_BIN=${MOCK_BIN:-target/release/sluice-mock}
want=$((ATTACKERS + 2048))
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] || [ "$want" -le "$hard" ] || { echo "bench-trickle.sh: need $want descriptors; the hard limit is $hard" >&2; exit 1; }
ulimit -n "$want"

MOCK=127.0.0.1:18201
GW=127.0.0.1:18280
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

taskset -c 1 "$MOCK_BIN" --listen "$MOCK" >/dev/null 2>&1 &
pids+=($!)
wait_port "$MOCK"
data=$(mktemp -d)
mock_gateway_toml "$GW" "$MOCK" "$data" >"$data/sluice.toml"
taskset -c 0 "$SLUICE_BIN" serve --config "$data/sluice.toml" >"$OUT/gateway.log" 2>&1 &
GW_PID=$!
pids+=("$GW_PID")
wait_port "$GW"

# One phase of the normal client, its figures appended to rounds.csv.
phase() { # $1: round, $2: quiet|attacked, $3: gateway descriptors to record
    local report="$OUT/$2-$1.json"
    taskset -c 1 "$BENCH_BIN" --url "http://$GW" --local-address 127.0.0.2 --model mock-model \
        --prompt "trickle $DIRECTIVE" --concurrency "$CONCURRENCY" --requests "$REQUESTS" \
        --warmup 50 --duration 120s --timeout 30s --threads 1 --quiet --no-progress --json "$report"
    python3 - "$report" "$1" "$2" "$3" "$(rss_kb "$GW_PID")" >>"$OUT/rounds.csv" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]},{sys.argv[3]},{j['ttft_ms']['p50']:.2f},{j['ttft_ms']['p99']:.2f},{j['requests']['ok']},{j['requests']['failed']},{sys.argv[4]},{sys.argv[5]}")
EOF
}

echo "round,phase,ttft_p50_ms,ttft_p99_ms,ok,failed,gateway_fds,gateway_rss_kb" >"$OUT/rounds.csv"
for r in $(seq "$ROUNDS"); do
    phase "$r" quiet "$(fds "$GW_PID")"
    # The attack lasts for the settling time plus the client's phase at most.
    taskset -c 1 nice -n 19 python3 scripts/bench-trickle.py "$GW" 127.0.0.1 "$ATTACKERS" 150 1 1 \
        >"$OUT/attack-$r.json" 2>"$OUT/attack-$r.err" &
    ATTACK=$!
    pids+=("$ATTACK")
    # Settle: every attacker has tried once and the per-address cap is full.
    sleep 15
    during_fds=$(fds "$GW_PID")
    phase "$r" attacked "$during_fds"
    kill "$ATTACK" 2>/dev/null || true
    wait "$ATTACK" 2>/dev/null || true
    # Let the gateway see the attacker's connections go before the next quiet phase.
    for _ in $(seq 100); do [ "$(fds "$GW_PID")" -lt 100 ] && break; sleep 0.2; done
done
cat "$OUT/rounds.csv"
python3 - "$OUT/rounds.csv" <<'EOF' | tee "$OUT/summary.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
q = [float(r["ttft_p99_ms"]) for r in rows if r["phase"] == "quiet"]
a = [float(r["ttft_p99_ms"]) for r in rows if r["phase"] == "attacked"]
ratios = [y / x for x, y in zip(q, a)]
failed = sum(int(r["failed"]) for r in rows)
fds = max(int(r["gateway_fds"]) for r in rows if r["phase"] == "attacked")
print(f"normal client p99 TTFT: quiet median {statistics.median(q):.2f} ms, under attack median "
      f"{statistics.median(a):.2f} ms; per-round ratio median {statistics.median(ratios):.2f}x "
      f"(target <= 2x); failed requests {failed}; gateway descriptors under attack up to {fds}")
EOF
