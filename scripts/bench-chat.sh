#!/usr/bin/env bash
# The embedded engine against llama.cpp's own llama-server, through HTTP, in one run:
# same GGUF, 2 threads, 4 slots, 4,096 tokens per slot, temperature 0, streamed.
#
#   scripts/bench-chat.sh [OUT]            # ROUNDS=3 by default
#
# Each round runs llama-server, then Sluice (alternating, never both at once), and
# measures on each: the first turn's time to first token on a ~2,000-token message and
# three follow-up turns (scripts/bench_chat.py), one stream and 8 concurrent streams of
# 128 tokens (`sluice bench`: aggregate tokens/s from the first request to the last
# token), 32 conversations taking turns round robin on the 4 slots, and resident memory.
# llama-server is built once by scripts/build-llama-server.sh (cache outside the repo).
#
# Knobs: ROUNDS, THREADS, SLOTS, CTX, PHASES (default "turns one eight rounds"),
# SLUICE_ENGINE_TOML (extra [engine] lines for Sluice, e.g. 'kv_cache_type = "q8_0"'),
# LLAMA_ARGS (extra llama-server flags),
# SKIP_BUILD=1, ONLY=sluice|llama, SLUICE_BIN (a prebuilt `sluice`, implies SKIP_BUILD),
# SLUICE_BINS="sluice=PATH sluice_b=PATH2 …" (several builds, each measured every round
# after llama-server; names start with `sluice`, no `-`; `TOML_sluice_b='kv_cache_type =
# "q8_0"'` gives one build extra [engine] lines), RSS_REQUESTS=N (then, once per
# Sluice build: resident memory after warm-up and after N more requests: N/5
# conversations of ~300 tokens each taking 4 follow-up turns round robin, so the slots
# keep evicting into the host KV cache and it keeps evicting; the issue's bound is
# baseline + kv_cache_bytes + 5 %).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench-results/chat}"
ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-2}"
SLOTS="${SLOTS:-4}"
CTX="${CTX:-4096}"
CONVS="${CONVS:-32}"
MODEL="${SLUICE_TEST_MODEL:-${SLUICE_MODEL_DIR:-$HOME/.local/share/sluice/models}/SmolLM2-135M-Instruct-Q4_1.gguf}"
PORT_LLAMA="${PORT_LLAMA:-18101}"
PORT_SLUICE="${PORT_SLUICE:-18102}"
mkdir -p "$OUT"
rm -f "$OUT"/*.json
[[ -f "$MODEL" ]] || { echo "bench-chat: no model at $MODEL (scripts/fetch-model.sh)" >&2; exit 1; }

# llama-server is built (once, cached) only when it is measured.
[[ "${ONLY:-}" == sluice ]] || LLAMA_SERVER="$(scripts/build-llama-server.sh)"
if [[ "${SKIP_BUILD:-}" != 1 && -z "${SLUICE_BIN:-}" ]]; then
    nice -n 10 cargo build --release --locked -q -p sluice --bin sluice
fi
SLUICE="${SLUICE_BIN:-target/release/sluice}"
if [[ ! -x "$SLUICE" && -n "${SLUICE_BINS:-}" ]]; then # the load generator: any build will do
    first=${SLUICE_BINS%% *}; SLUICE=${first#*=}
fi

write_cfg() { # NAME: the config of one Sluice build; TOML_<NAME> adds [engine] lines to it
    local extra="TOML_$1"
    cfg="$OUT/$1.toml"
    cat > "$cfg" <<TOML
[server]
listen = "127.0.0.1:$PORT_SLUICE"
[log]
level = "warn"
[cache]
enabled = false   # every request must reach the engine
[engine]
default_model = "off"
threads = $THREADS
parallel = $SLOTS
${SLUICE_ENGINE_TOML:-}
${!extra:-}
[[engine.models]]
name = "smollm2"
path = "$MODEL"
context = $CTX
TOML
}

pid=""
trap '[[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null; true' EXIT
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
port_free() { # PORT
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        echo "bench-chat: something already listens on port $1" >&2; exit 1
    fi
}
wait_ready() { # URL PID
    for _ in $(seq 600); do
        curl -sf "$1" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || { echo "bench-chat: server exited during start-up" >&2; return 1; }
        sleep 0.1
    done
    echo "bench-chat: server not ready" >&2; return 1
}

start_sluice() { # NAME BIN LOG: serves with NAME's config; sets pid
    write_cfg "$1"
    port_free "$PORT_SLUICE"
    "$2" serve --config "$cfg" > "$3" 2>&1 &
    pid=$!
    wait_ready "http://127.0.0.1:$PORT_SLUICE/readyz" "$pid"
}

measure() { # NAME URL PID ROUND
    local name=$1 url=$2 pid=$3 r=$4
    local common=(--url "$url" --model smollm2 --quiet --no-progress --timeout 300s --duration 600s --stream)
    # Warm-up: page the weights in.
    "$SLUICE" bench "${common[@]}" --requests 2 --max-tokens 8 --prompt "Hi" --unique-prompts >/dev/null
    local rss_idle; rss_idle=$(rss_kb "$pid")
    local phases=" ${PHASES:-turns one eight rounds} "
    if [[ $phases == *" turns "* ]]; then
        python3 scripts/bench_chat.py "$url" smollm2 turns 3 32 > "$OUT/$name-turns-$r.json"
    fi
    if [[ $phases == *" one "* ]]; then
        "$SLUICE" bench "${common[@]}" --concurrency 1 --requests 4 --max-tokens 128 --unique-prompts \
            --prompt "Write a long story about a lighthouse keeper." --json "$OUT/$name-one-$r.json"
    fi
    if [[ $phases == *" eight "* ]]; then
        "$SLUICE" bench "${common[@]}" --concurrency 8 --requests 16 --max-tokens 128 --unique-prompts \
            --prompt "Write a long story about a lighthouse keeper." --json "$OUT/$name-eight-$r.json"
    fi
    if [[ $phases == *" rounds "* ]]; then
        python3 scripts/bench_chat.py "$url" smollm2 rounds "$CONVS" 2 16 > "$OUT/$name-rounds-$r.json"
    fi
    echo "{\"rss_idle_kb\": $rss_idle, \"rss_after_kb\": $(rss_kb "$pid")}" > "$OUT/$name-rss-$r.json"
}

echo "bench-chat: load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/load.txt"
for r in $(seq "$ROUNDS"); do
    if [[ "${ONLY:-llama}" == llama ]]; then
        echo "bench-chat: round $r/$ROUNDS llama-server" >&2
        port_free "$PORT_LLAMA"
        # shellcheck disable=SC2086
        "$LLAMA_SERVER" -m "$MODEL" --host 127.0.0.1 --port "$PORT_LLAMA" -t "$THREADS" -tb "$THREADS" \
            -np "$SLOTS" -c $((CTX * SLOTS)) --alias smollm2 ${LLAMA_ARGS:-} \
            > "$OUT/llama-$r.log" 2>&1 &
        pid=$!
        wait_ready "http://127.0.0.1:$PORT_LLAMA/health" "$pid"
        measure llama "http://127.0.0.1:$PORT_LLAMA" "$pid" "$r"
        kill -TERM "$pid"; wait "$pid" || true
    fi
    if [[ "${ONLY:-sluice}" == sluice ]]; then
        for variant in ${SLUICE_BINS:-sluice=$SLUICE}; do
            name=${variant%%=*} bin=${variant#*=}
            echo "bench-chat: round $r/$ROUNDS $name ($bin)" >&2
            start_sluice "$name" "$bin" "$OUT/$name-$r.log"
            measure "$name" "http://127.0.0.1:$PORT_SLUICE" "$pid" "$r"
            kill -TERM "$pid"; wait "$pid" || true
        done
    fi
done
if [[ "${RSS_REQUESTS:-0}" -gt 0 && "${ONLY:-sluice}" == sluice ]]; then
    for variant in ${SLUICE_BINS:-sluice=$SLUICE}; do
        name=${variant%%=*} bin=${variant#*=}
        echo "bench-chat: $name, resident memory over $RSS_REQUESTS requests" >&2
        start_sluice "$name" "$bin" "$OUT/$name-rssrun.log"
        "$bin" bench --url "http://127.0.0.1:$PORT_SLUICE" --model smollm2 --quiet --no-progress \
            --requests 8 --concurrency 4 --max-tokens 8 --prompt "Hi" --unique-prompts >/dev/null
        base=$(rss_kb "$pid")
        # RSS_REQUESTS / 5 conversations, each opened and then 4 follow-ups round robin:
        # far more history than the slots and the host cache hold.
        python3 scripts/bench_chat.py "http://127.0.0.1:$PORT_SLUICE" smollm2 rounds \
            $((RSS_REQUESTS / 5)) 4 8 > "$OUT/$name-rssrun.json"
        metrics=$(curl -s "http://127.0.0.1:$PORT_SLUICE/metrics")
        metric() { awk -v m="$1" '$1 ~ "^"m"[{ ]" || $1 == m {s += $2} END {print s + 0}' <<<"$metrics"; }
        echo "{\"rss_base_kb\": $base, \"rss_after_kb\": $(rss_kb "$pid"), \"kv_host_bytes\": $(metric sluice_engine_kv_host_bytes), \"saves\": $(metric sluice_engine_kv_host_saves_total), \"restores\": $(metric sluice_engine_kv_host_restores_total), \"evictions\": $(metric sluice_engine_kv_host_evictions_total), \"requests\": $RSS_REQUESTS}" > "$OUT/$name-rssrun-result.json"
        cat "$OUT/$name-rssrun-result.json" >&2
        kill -TERM "$pid"; wait "$pid" || true
    done
fi
echo "bench-chat: load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt"
python3 scripts/bench_chat_summary.py "$OUT"
