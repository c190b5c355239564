#!/usr/bin/env bash
# Load and soak runs of the gateway against the mock upstream, sampling the gateway's
# resident memory and open file descriptors while they run (not part of CI).
#
#   MODE=soak     STREAMS (1000) concurrent streams for DURATION (1h): each stream is
#                 TOKENS tokens DELAY_MS apart, then the next request on the same
#                 connection. Reports RSS after warm-up (WARMUP, 5m) vs the rest of the
#                 run (flat = within 5%), descriptors before and after, and errors.
#   MODE=streams  STREAMS (8000) slow streams held open at once (60 tokens 1 s apart)
#                 for DURATION (2m): peak RSS and errors.
#
# The gateway runs on CPU 0; the mock and the load generator on CPU 1. Everything stays
# on 127.0.0.1 and the load is bounded by DURATION and a request count.
#
# Usage: scripts/soak.sh [OUT_DIR]
#   env: MODE, STREAMS, DURATION, WARMUP, TOKENS, DELAY_MS, SAMPLE (10 s),
#        SLUICE_BIN / BENCH_BIN / MOCK_BIN (default target/release/…), SKIP_BUILD=1,
#        SLUICE_ARGS (extra `sluice serve` flags), EXTRA_TOML (appended to the config,
#        e.g. $'[usage]\nenabled = false'), MOCK_ADDR / GW_ADDR (listen addresses)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${MODE:-soak}
case "$MODE" in
    soak) STREAMS=${STREAMS:-1000}; DURATION=${DURATION:-1h}; TOKENS=${TOKENS:-100}; DELAY_MS=${DELAY_MS:-100} ;;
    streams) STREAMS=${STREAMS:-8000}; DURATION=${DURATION:-2m}; TOKENS=${TOKENS:-60}; DELAY_MS=${DELAY_MS:-1000} ;;
    *) echo "MODE must be soak or streams" >&2; exit 2 ;;
esac
WARMUP=${WARMUP:-5m}
SAMPLE=${SAMPLE:-10}
OUT=${1:-bench-results/$MODE-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q -p sluice -p sluice-mock -p sluice-bench
SLUICE_BIN=${SLUICE_BIN:-target/release/sluice}
BENCH_BIN=${BENCH_BIN:-target/release/sluice-bench}
MOCK_BIN=${MOCK_BIN:-target/release/sluice-mock}
# The gateway holds a client and an upstream connection per stream (the load generator
# and the mock one each): 2 per stream is the most any one process needs.
want=$((STREAMS * 2 + 1024))
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] || [ "$want" -le "$hard" ] || { echo "soak.sh: $STREAMS streams need $want descriptors; the hard limit is $hard" >&2; exit 1; }
ulimit -n "$want"

MOCK=${MOCK_ADDR:-127.0.0.1:18101}
GW=${GW_ADDR:-127.0.0.1:18180}
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
seconds() { python3 -c "import re,sys; t=sys.argv[1]; print(sum(int(n)*{'h':3600,'m':60,'s':1}[u] for n,u in re.findall(r'(\d+)([hms])',t)) or int(t))" "$1"; }

taskset -c 1 "$MOCK_BIN" --listen "$MOCK" >/dev/null 2>&1 &
pids+=($!)
wait_port "$MOCK"
data=$(mktemp -d)
# A private store, usage recording on (the default), no cache: every request runs.
# All the load comes from one address: lift the per-address cap above it.
mock_gateway_toml "$GW" "$MOCK" "$data" "max_connections = $((STREAMS * 2 + 1000))
max_connections_per_ip = $((STREAMS * 2 + 1000))" >"$data/sluice.toml"
printf '%s\n' "${EXTRA_TOML:-}" >>"$data/sluice.toml"
# shellcheck disable=SC2086 # SLUICE_ARGS is a list of flags
taskset -c 0 "$SLUICE_BIN" serve --config "$data/sluice.toml" ${SLUICE_ARGS:-} >"$OUT/gateway.log" 2>&1 &
GW_PID=$!
pids+=("$GW_PID")
wait_port "$GW"
# One request through, so lazily built state exists before the baseline.
curl -sf "http://$GW/v1/chat/completions" -H 'content-type: application/json' \
    -d '{"model":"mock-model","messages":[{"role":"user","content":"hi [mock tokens=2]"}]}' >/dev/null
sleep 1
base_rss=$(rss_kb "$GW_PID")
base_fds=$(fds "$GW_PID")
echo "baseline: rss ${base_rss} kB, ${base_fds} descriptors" | tee "$OUT/summary.txt"

total=$(seconds "$DURATION")
echo "t_s,rss_kb,fds" >"$OUT/samples.csv"
(
    start=$SECONDS
    while kill -0 "$GW_PID" 2>/dev/null && [ $((SECONDS - start)) -le $((total + 30)) ]; do
        echo "$((SECONDS - start)),$(rss_kb "$GW_PID"),$(fds "$GW_PID")" >>"$OUT/samples.csv"
        sleep "$SAMPLE"
    done
) &
SAMPLER=$!
pids+=("$SAMPLER")

# Requests are capped too: at most every stream's worth for the whole duration.
cap=$(( STREAMS * (total * 1000 / (TOKENS * DELAY_MS + 1) + 2) ))
taskset -c 1 "$BENCH_BIN" --url "http://$GW" --model mock-model \
    --prompt "soak [mock tokens=$TOKENS delay_ms=$DELAY_MS]" --concurrency "$STREAMS" --requests "$cap" \
    --duration "$DURATION" --ramp-up 10s --timeout 120s --threads 1 --quiet --no-progress \
    --json "$OUT/bench.json" || true
kill "$SAMPLER" 2>/dev/null || true
# Client connections close with the load generator; pooled upstream connections when
# their idle time (60 s) is up. Wait for the descriptors to come back, at most 90 s.
quiet_at=$SECONDS
for _ in $(seq 900); do
    [ "$(fds "$GW_PID")" -le "$base_fds" ] && break
    sleep 0.1
done
end_rss=$(rss_kb "$GW_PID")
end_fds=$(fds "$GW_PID")
echo "after: rss ${end_rss} kB, ${end_fds} descriptors ($((SECONDS - quiet_at)) s after the load ended)" | tee -a "$OUT/summary.txt"
python3 - "$OUT" "$(seconds "$WARMUP")" "$base_fds" "$end_fds" "$MODE" <<'EOF' | tee -a "$OUT/summary.txt"
import csv, json, statistics, sys
out, warmup, base_fds, end_fds, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rows = [(int(r["t_s"]), int(r["rss_kb"]), int(r["fds"])) for r in csv.DictReader(open(f"{out}/samples.csv")) if r["rss_kb"]]
report = json.load(open(f"{out}/bench.json"))
req = report["requests"]
print(f"requests: {req['ok']} ok, {req['failed']} failed, {req['aborted']} aborted; errors {report['errors'] or 'none'}")
print(f"tokens/s {report['throughput']['output_tokens_per_s']:.0f}; ttft p50 {report['ttft_ms']['p50']:.1f} ms, p99 {report['ttft_ms']['p99']:.1f} ms")
peak = max(r[1] for r in rows)
print(f"peak rss {peak / 1024:.1f} MiB; peak descriptors {max(r[2] for r in rows)}")
if mode == "soak":
    after = [r for r in rows if r[0] >= warmup]
    if after:
        first = statistics.median(r[1] for r in after[:6])
        last = statistics.median(r[1] for r in after[-6:])
        lo, hi = min(r[1] for r in after), max(r[1] for r in after)
        print(f"rss after warm-up: first minute {first / 1024:.1f} MiB, last minute {last / 1024:.1f} MiB "
              f"({(last - first) / first * 100:+.1f}%); range {lo / 1024:.1f}-{hi / 1024:.1f} MiB "
              f"({(hi - lo) / first * 100:.1f}% of the first)")
print(f"descriptors: {base_fds} before, {end_fds} after")
EOF
