#!/usr/bin/env bash
# Response cache and single-flight, measured on this machine.
#
#  hit     time to first token of a cache hit at concurrency 1 (64-token answers, all
#          requests identical and opted in with Cache-Control, so only the first warm-up
#          request goes upstream), beside the same requests straight to the mock and
#          through Sluice without the opt-in (every one upstream), in the same run.
#  fanout  100 identical requests sent at once while the upstream takes 500 ms to its
#          first token: how many reach the upstream (the mock prints its count at exit).
#
# The gateway is pinned to CPU 0; the mock and the load generator share CPU 1. All
# traffic stays on 127.0.0.1 and every load loop is capped in count and time.
#
# Usage: scripts/bench-cache.sh [OUT_DIR]   (env: REPEAT=3, SCENARIOS="hit fanout")
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-results/cache-$(date +%Y%m%d-%H%M%S)}
REPEAT=${REPEAT:-3}
SCENARIOS=${SCENARIOS:-"hit fanout"}
mkdir -p "$OUT"
cargo build --release -q -p sluice -p sluice-mock -p sluice-bench
BIN=target/release
ulimit -n 20000

MOCK=127.0.0.1:18001
GW=127.0.0.1:18080
OPT_IN="Cache-Control: max-age=3600"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

start_mock() { # args: log file, extra mock flags
    local log=$1; shift
    taskset -c 1 "$BIN/sluice-mock" --listen "$MOCK" "$@" >"$log" &
    pids+=($!); MOCK_PID=$!
    wait_port "$MOCK"
}
start_gw() {
    taskset -c 0 "$BIN/sluice" serve --listen "$GW" --backend "openai=http://$MOCK/v1" >"$OUT/gateway.log" 2>&1 &
    pids+=($!); GW_PID=$!
    wait_port "$GW"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listening on $1" >&2; exit 1
}
bench() { # name target extra-args...
    local name=$1 target=$2; shift 2
    taskset -c 1 "$BIN/sluice-bench" --url "http://$target" --quiet --no-progress --json "$OUT/$name.json" "$@"
}
cache_metrics() { # file
    exec 3<>"/dev/tcp/${GW%:*}/${GW#*:}"
    printf 'GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n' "$GW" >&3
    grep '^sluice_cache_requests_total' <&3 >"$1" || true
    exec 3<&-
}

for r in $(seq "$REPEAT"); do
    for sc in $SCENARIOS; do
        case $sc in
        hit)
            start_mock "$OUT/hit-mock-$r.log" --tokens 64; start_gw
            args=(--concurrency 1 --requests 3000 --duration 30s --stream --warmup 200)
            bench "hit-direct-$r" "$MOCK" "${args[@]}"
            bench "hit-sluice-$r" "$GW" "${args[@]}" -H "$OPT_IN"
            bench "bypass-sluice-$r" "$GW" "${args[@]}"
            cache_metrics "$OUT/hit-metrics-$r.txt"
            stop "$GW_PID"; stop "$MOCK_PID" ;;
        fanout)
            start_mock "$OUT/fanout-mock-$r.log" --tokens 64 --first-token-ms 500; start_gw
            bench "fanout-sluice-$r" "$GW" --concurrency 100 --requests 100 --duration 30s --stream \
                --prompt "fan-out run $r $$" -H "$OPT_IN"
            cache_metrics "$OUT/fanout-metrics-$r.txt"
            stop "$GW_PID"; stop "$MOCK_PID" ;;
        esac
    done
done

python3 - "$OUT" <<'EOF' | tee "$OUT/summary.md"
import glob, json, os, re, statistics, sys
out = sys.argv[1]
def runs(pattern):
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, pattern)))]
def med(values):
    return statistics.median(values) if values else float("nan")
print("| scenario | metric | value |")
print("|---|---|---|")
for name, label in (("hit-direct", "direct to the mock"), ("bypass-sluice", "through Sluice, not cached"), ("hit-sluice", "cache hit")):
    rs = runs(f"{name}-*.json")
    if not rs:
        continue
    for q in ("p50", "p99"):
        print(f"| c=1 stream 64 tok, {label} | TTFT {q} (ms) | {med([r['ttft_ms'][q] for r in rs]):.3f} |")
    print(f"| c=1 stream 64 tok, {label} | errors | {sum(sum(r['errors'].values()) for r in rs)} |")
for path in sorted(glob.glob(os.path.join(out, "fanout-mock-*.log"))):
    r = path.rsplit("-", 1)[1].split(".")[0]
    m = re.search(r"requests=(\d+)", open(path).read())
    rep = json.load(open(os.path.join(out, f"fanout-sluice-{r}.json")))
    print(f"| 100 identical concurrent requests (run {r}) | upstream requests | {m.group(1) if m else '?'} |")
    print(f"| 100 identical concurrent requests (run {r}) | ok / errors | {rep['requests']['ok']} / {sum(rep['errors'].values())} |")
EOF
