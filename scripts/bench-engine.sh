#!/usr/bin/env bash
# The embedded engine side by side with llama.cpp's own Python binding
# (llama-cpp-python), same GGUF and thread count, in one run; then the engine behind the
# whole gateway: time to first token and RSS after 10 and after 1,000 requests.
#
#   pip install llama-cpp-python        # once; builds llama.cpp (several minutes)
#   REPEAT=3 scripts/bench-engine.sh [OUT]
#
# The engine and the reference each use THREADS compute threads (default: both cores),
# so nothing is pinned here; they run one after the other, never at the same time.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench-results/engine}"
REPEAT="${REPEAT:-3}"
THREADS="${THREADS:-2}"
TOKENS="${TOKENS:-128}"
MODEL="${SLUICE_TEST_MODEL:-${SLUICE_MODEL_DIR:-$HOME/.local/share/sluice/models}/SmolLM2-135M-Instruct-Q4_1.gguf}"
PORT="${PORT:-18090}"
mkdir -p "$OUT"
python3 -c "import llama_cpp" 2>/dev/null || { echo "bench-engine: pip install llama-cpp-python first" >&2; exit 1; }
[[ -f "$MODEL" ]] || { echo "bench-engine: no model at $MODEL (scripts/fetch-model.sh)" >&2; exit 1; }
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    cargo build --release --locked -q -p sluice-engine --example throughput
    cargo build --release --locked -q -p sluice --bin sluice
fi
BIN=target/release

# Memory bandwidth (one-thread copy, read + write), for the per-token bound.
python3 - > "$OUT/bandwidth.json" <<'PY'
import json, time
import numpy as np
a = np.ones(32 * 1024 * 1024)  # 256 MiB
b = np.empty_like(a)
best = min((lambda t0: (np.copyto(b, a), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(7))
print(json.dumps({"copy_gb_per_s": 2 * a.nbytes / best / 1e9}))
PY

cfg="$OUT/gateway.toml"
cat > "$cfg" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[log]
level = "warn"
[cache]
enabled = false   # every request must reach the engine
[engine]
default_model = "off"
threads = $THREADS
parallel = 4
[[engine.models]]
name = "smollm2"
path = "$MODEL"
TOML

rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
common=(--url "http://127.0.0.1:$PORT" --model smollm2 --quiet --no-progress --timeout 60s)

for r in $(seq "$REPEAT"); do
    echo "bench-engine: repeat $r/$REPEAT" >&2
    "$BIN/examples/throughput" "$THREADS" "$TOKENS" 8 > "$OUT/engine-$r.txt"
    python3 scripts/bench_engine_ref.py "$MODEL" "$THREADS" "$TOKENS" 50 > "$OUT/ref-$r.json"

    "$BIN/sluice" serve --config "$cfg" > "$OUT/gateway-$r.log" 2>&1 &
    gw=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
    "$BIN/sluice" bench "${common[@]}" --concurrency 1 --requests 50 --warmup 5 --stream \
        --max-tokens 2 --prompt "Say hello." --unique-prompts --json "$OUT/gw-ttft-$r.json"
    if [[ "$r" == "$REPEAT" ]]; then
        # Memory over many finished requests (once: it takes minutes).
        "$BIN/sluice" bench "${common[@]}" --concurrency 4 --requests 10 --no-stream --unique-prompts \
            --max-tokens 8 --json "$OUT/gw-rss10.json"
        rss10=$(rss "$gw")
        "$BIN/sluice" bench "${common[@]}" --concurrency 4 --requests 990 --duration 600s --no-stream \
            --unique-prompts --max-tokens 8 --json "$OUT/gw-rss1000.json"
        rss1000=$(rss "$gw")
        echo "{\"rss10_kb\": $rss10, \"rss1000_kb\": $rss1000}" > "$OUT/gw-rss.json"
    fi
    kill -TERM "$gw"; wait "$gw" || true
done

python3 - "$OUT" "$REPEAT" "$MODEL" <<'PY'
import json, os, re, statistics, sys
out, repeat, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
med = statistics.median
eng = {"pp": [], "single": [], "agg": [], "steady": []}
for r in range(1, repeat + 1):
    t = open(f"{out}/engine-{r}.txt").read()
    eng["pp"].append(float(re.search(r"prompt processing: .* = (\d+) tok/s", t).group(1)))
    eng["single"].append(float(re.search(r"single stream: .* = ([\d.]+) tok/s", t).group(1)))
    eng["agg"].append(float(re.search(r"streams: .* = ([\d.]+) tok/s aggregate", t).group(1)))
    eng["steady"].append(float(re.search(r"([\d.]+) tok/s after the last first token", t).group(1)))
ref = [json.load(open(f"{out}/ref-{r}.json")) for r in range(1, repeat + 1)]
gw = [json.load(open(f"{out}/gw-ttft-{r}.json")) for r in range(1, repeat + 1)]
rss = [json.load(open(f"{out}/gw-rss.json"))]
bw = json.load(open(f"{out}/bandwidth.json"))["copy_gb_per_s"]
size = os.path.getsize(model)
single = med(eng["single"])
rows = [
    ("prompt processing tok/s", med(eng["pp"]), med(x["prompt"]["tok_per_s"] for x in ref)),
    ("single-stream generation tok/s", single, med(x["single"]["tok_per_s"] for x in ref)),
]
for name, e, rf in rows:
    print(f"{name}: engine {e:.1f}, llama-cpp-python {rf:.1f}, ratio {e / rf:.3f}")
print(f"8 streams generation tok/s (after the last first token, as single excludes its prompt): {med(eng['steady']):.1f} = {med(eng['steady']) / single:.2f}x single")
print(f"8 streams aggregate incl. their prompts: {med(eng['agg']):.1f} = {med(eng['agg']) / single:.2f}x single")
g = med(x["ttft_ms"]["p50"] for x in gw)
rf = med(x["ttft"]["p50_ms"] for x in ref)
print(f"TTFT short prompt p50: gateway+engine {g:.2f} ms, llama-cpp-python in-process {rf:.2f} ms, +{g - rf:.2f} ms")
for x in rss:
    print(f"RSS after 10: {x['rss10_kb'] / 1024:.1f} MiB, after 1000: {x['rss1000_kb'] / 1024:.1f} MiB, +{100 * (x['rss1000_kb'] / x['rss10_kb'] - 1):.1f}%")
ms = 1000 / single
bound = size / (bw * 1e9) * 1000
print(f"ms/token single stream {ms:.2f}; memory-bandwidth bound {bound:.2f} ms ({size / 1e6:.1f} MB per token at {bw:.1f} GB/s copy)")
PY
