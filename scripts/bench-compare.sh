#!/usr/bin/env bash
# Several builds or configurations of Sluice, measured by scripts/bench-gateway.sh in
# alternating rounds (round r runs every variant once, in an order rotated by r), so
# that drift on a noisy machine hits every variant alike. Each run measures the direct
# path and the plain proxy too, so every figure has its same-run reference.
#
# Usage: scripts/bench-compare.sh OUT_DIR VARIANTS_FILE
#   VARIANTS_FILE: one variant per line, fields separated by '|':
#     label|path of the sluice binary|extra `sluice serve` flags|extra load flags (Sluice runs only)
#   env: REPEAT=5, SCENARIOS="c1 c64 nostream", QUICK=1 (default here: halves each run),
#        NO_PLAIN=1 (default here: no plain-proxy leg)
# The binaries of the mock, the load generator and the plain proxy are this tree's
# target/release ones (build them first: cargo build --release -p sluice-mock -p sluice-bench
# && cargo build --release -p sluice-bench --example plain_proxy).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$1
VARIANTS=$2
REPEAT=${REPEAT:-5}
export SCENARIOS=${SCENARIOS:-"c1 c64 nostream"}
export QUICK=${QUICK-1}
export NO_PLAIN=${NO_PLAIN-1}
mkdir -p "$OUT"
mapfile -t lines < <(grep -v '^\s*#' "$VARIANTS" | grep -v '^\s*$')
n=${#lines[@]}
for r in $(seq "$REPEAT"); do
    for i in $(seq 0 $((n - 1))); do
        line=${lines[$(( (i + r) % n ))]}
        IFS='|' read -r label bin serve_args bench_args <<<"$line"
        echo "round $r: $label" >&2
        SKIP_BUILD=1 REPEAT=1 SLUICE_BIN=$bin SLUICE_ARGS=$serve_args SLUICE_BENCH_ARGS=$bench_args \
            scripts/bench-gateway.sh "$OUT/$label-$r" >/dev/null
    done
done
python3 scripts/bench_compare.py "$OUT" $(for l in "${lines[@]}"; do echo "${l%%|*}"; done) | tee "$OUT/summary.md"
