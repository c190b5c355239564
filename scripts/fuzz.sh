#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for a set time and prints, per
# target, the executions, new corpus inputs, peak memory, and the crashes, timeouts and
# out-of-memory inputs found (libFuzzer's -print_final_stats).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]          (default 60)
# Env:   TARGETS="sse h1_response"  only these targets (default: all)
#        PARALLEL=2                 targets run at once (default 1; the box has 2 cores)
#        RSS_LIMIT_MB=2048          a target using more is an out-of-memory finding
#        TIMEOUT=10                 seconds one input may take before it is a timeout
#        SANITIZER=none             or address (slower; the code under test has no unsafe)
#        SKIP_BUILD=1               reuse the last build
#        RUNS=10000000              also stop a target after this many executions (the
#                                   time is then a cap: on a busy machine a count is
#                                   what a run is meant to reach)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); libFuzzer needs nightly features, which
# the pinned stable toolchain allows with RUSTC_BOOTSTRAP=1 (set here, for fuzz/ only).
# Inputs the fuzzers find go to fuzz/corpus-run/TARGET (not committed); findings to
# fuzz/artifacts/TARGET/. Each run appends its figures to fuzz/runs.tsv, the record the
# totals in docs/security.md are summed from. A finding is fixed in the code under test
# and its input committed under fuzz/regressions/TARGET/, which the stable test
# `cargo nextest run -p sluice-fuzz` replays.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
PARALLEL=${PARALLEL:-1}
RSS_LIMIT_MB=${RSS_LIMIT_MB:-2048}
TIMEOUT=${TIMEOUT:-10}
SANITIZER=${SANITIZER:-none}
ALL=$(ls fuzz/fuzz_targets | sed 's/\.rs$//')
TARGETS=${TARGETS:-$ALL}
export RUSTC_BOOTSTRAP=1

if [ -z "${SKIP_BUILD:-}" ]; then
    (cd fuzz && nice cargo fuzz build --sanitizer "$SANITIZER" $TARGETS)
fi
BIN=fuzz/target/x86_64-unknown-linux-gnu/release
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT

run_one() {
    local t=$1 dirs=()
    mkdir -p "fuzz/corpus-run/$t" "fuzz/artifacts/$t"
    for d in "fuzz/corpus-run/$t" "fuzz/corpus/$t" "fuzz/regressions/$t"; do
        [ -d "$d" ] && dirs+=("$d")
    done
    local before runs=() t0=$SECONDS
    before=$(ls "fuzz/artifacts/$t" | wc -l)
    [ -n "${RUNS:-}" ] && runs=(-runs="$RUNS")
    set +e
    nice "$BIN/$t" "${dirs[@]}" "${runs[@]}" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
        -rss_limit_mb="$RSS_LIMIT_MB" -timeout="$TIMEOUT" -max_len=65536 \
        -artifact_prefix="fuzz/artifacts/$t/" >"$LOGS/$t.log" 2>&1
    echo $? >"$LOGS/$t.rc"
    echo $((SECONDS - t0)) >"$LOGS/$t.secs"
    set -e
    echo "$before" >"$LOGS/$t.before"
}

running=0
for t in $TARGETS; do
    [ -x "$BIN/$t" ] || { echo "no binary for target $t (build it first)" >&2; exit 1; }
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$PARALLEL" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

stat() { grep -o "^stat::$1: *[0-9]*" "$2" | tail -1 | grep -o '[0-9]*$' || echo 0; }
count() { grep -c "$1" "$2" || true; }

printf '%-18s %14s %10s %8s %8s %9s %6s %6s  %s\n' target executions exec/s new_inputs peak_MB crashes timeouts ooms artifacts
status=0
for t in $TARGETS; do
    log=$LOGS/$t.log
    execs=$(stat number_of_executed_units "$log")
    rate=$(stat average_exec_per_sec "$log")
    new=$(stat new_units_added "$log")
    peak=$(stat peak_rss_mb "$log")
    crashes=$(count 'ERROR: libFuzzer: deadly signal\|panicked at\|ERROR: AddressSanitizer' "$log")
    [ "$crashes" -gt 1 ] && crashes=1 # libFuzzer stops at the first finding
    timeouts=$(count 'ERROR: libFuzzer: timeout' "$log")
    ooms=$(count 'ERROR: libFuzzer: out-of-memory' "$log")
    artifacts=$(ls "fuzz/artifacts/$t" | tail -n +"$(( $(cat "$LOGS/$t.before") + 1 ))" | tr '\n' ' ')
    printf '%-18s %14s %10s %8s %8s %9s %6s %6s  %s\n' "$t" "$execs" "$rate" "$new" "$peak" \
        "$crashes" "$timeouts" "$ooms" "$artifacts"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$t" \
        "$(cat "$LOGS/$t.secs")" "$execs" "$crashes" "$timeouts" "$ooms" "$SANITIZER" >>fuzz/runs.tsv
    if [ $((crashes + timeouts + ooms)) -gt 0 ] || [ "$(cat "$LOGS/$t.rc")" != 0 ]; then
        status=1
        echo "--- $t: the finding (fuzz/artifacts/$t/) ---"
        grep -m1 -A12 'panicked at\|ERROR: libFuzzer' "$log" || tail -20 "$log"
    fi
done
exit $status
