#!/usr/bin/env bash
# Run Sluice from a fresh clone: install the build prerequisites and the default model
# (idempotent; see setup.sh), then build and start the gateway in release mode.
# Extra arguments go to `sluice serve`, e.g. `scripts/run.sh --listen 127.0.0.1:9000`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release --locked -p sluice -- serve "$@"
