#!/usr/bin/env bash
# Rebuilds the web UI bundle (web/dist, committed and embedded in the binary) from the
# lockfile. `--check` then fails if the rebuild differs from what is committed.
set -euo pipefail
cd "$(dirname "$0")/../web"
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
if [ "${1:-}" = "--check" ]; then
    if ! git diff --quiet --exit-code -- dist || [ -n "$(git ls-files --others --exclude-standard -- dist)" ]; then
        git status --short -- dist
        echo "build-web.sh: web/dist differs from a rebuild of web/: run scripts/build-web.sh and commit web/dist" >&2
        exit 1
    fi
    echo "build-web.sh: web/dist matches a rebuild"
fi
