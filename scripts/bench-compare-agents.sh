#!/usr/bin/env bash
# scripts/bench-agents.sh for several builds of Sluice in alternating rounds (round r
# runs every build once, in an order rotated by r); each run measures the direct path
# too. Prints bench_agents_summary.py's table per build, over all its rounds.
#
# Usage: scripts/bench-compare-agents.sh OUT_DIR VARIANTS_FILE
#   VARIANTS_FILE: as for scripts/bench-compare.sh (label|sluice binary|...; only the
#   first two fields are used). env: REPEAT=5, SCENARIOS="c1 paced relay", QUICK=1 (default)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$1
VARIANTS=$2
REPEAT=${REPEAT:-5}
export SCENARIOS=${SCENARIOS:-"c1 paced relay"}
export QUICK=${QUICK-1}
mkdir -p "$OUT"
mapfile -t lines < <(grep -v '^\s*#' "$VARIANTS" | grep -v '^\s*$')
n=${#lines[@]}
for r in $(seq "$REPEAT"); do
    for i in $(seq 0 $((n - 1))); do
        IFS='|' read -r label bin _ <<<"${lines[$(( (i + r) % n ))]}"
        echo "round $r: $label" >&2
        SKIP_BUILD=1 REPEAT=1 SLUICE_BIN=$bin scripts/bench-agents.sh "$OUT/$label-$r" >/dev/null
        # Gather the rounds of one build under one directory, numbered by round.
        mkdir -p "$OUT/$label"
        for f in "$OUT/$label-$r"/*-1.json "$OUT/$label-$r"/*-1.cputicks; do
            [ -e "$f" ] || continue
            base=$(basename "$f"); cp "$f" "$OUT/$label/${base/-1./-$r.}"
        done
    done
done
for l in "${lines[@]}"; do
    label=${l%%|*}
    echo "### $label"
    python3 scripts/bench_agents_summary.py "$OUT/$label"
    echo
done | tee "$OUT/summary.md"
