#!/usr/bin/env bash
# Prepares the multi-tenant gateway benchmark (issue "Many people, one Sluice"): a SQLite
# store with one user and N API keys (default 10,000), each with its own limits (rpm,
# tpm, concurrent streams, daily and monthly tokens, a monthly budget), usage recording
# on and a price on the mock's model so every answer is metered, counted and priced.
# Limits are high enough that none refuses during the benchmark: what is measured is
# the cost of checking them.
#
# Usage: scripts/bench-tenants-setup.sh DIR [N]   (env: SLUICE_BIN=target/release/sluice)
# Writes DIR/tenants.toml (serve with --config), DIR/keys.txt (load with --keys-file) and
# DIR/bare.toml (an empty store: keyless mode, for the same build without tenants).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=$1
N=${2:-10000}
SLUICE_BIN=${SLUICE_BIN:-target/release/sluice}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
rm -f "$DIR"/tenants.db* "$DIR"/bare.db*
cat >"$DIR/tenants.toml" <<TOML
[store]
url = "sqlite://$DIR/tenants.db"

[usage]
enabled = true

[[models]]
name = "mock-model"
price = { input_per_mtok = 0.15, output_per_mtok = 0.6 }
TOML
cat >"$DIR/bare.toml" <<TOML
[store]
url = "sqlite://$DIR/bare.db"
TOML
echo "a long bench password" | "$SLUICE_BIN" user create --name bench --config "$DIR/tenants.toml" >/dev/null
python3 - "$DIR" "$N" <<'PY'
import hashlib, os, sqlite3, sys, time
d, n = sys.argv[1], int(sys.argv[2])
db = sqlite3.connect(os.path.join(d, "tenants.db"))
(user_id,) = db.execute("SELECT id FROM users WHERE name = 'bench'").fetchone()
now = int(time.time())
keys, rows = [], []
for i in range(n):
    secret = "sk-sluice-" + os.urandom(32).hex()
    keys.append(secret)
    rows.append((
        f"bench{i:06d}", user_id, f"bench {i}", secret[:14], hashlib.sha256(secret.encode()).hexdigest(),
        1_000_000, 1_000_000_000, 256, 10**12, 10**12, now, 10**15, "hard",
    ))
db.executemany(
    "INSERT INTO api_keys (id, user_id, name, prefix, key_sha256, rpm, tpm, max_streams, daily_tokens, "
    "monthly_tokens, created_at, monthly_budget_micros, budget_mode) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
    rows,
)
db.execute("UPDATE auth_version SET version = version + 1")
db.commit()
with open(os.path.join(d, "keys.txt"), "w") as f:
    f.write("\n".join(keys) + "\n")
print(f"{n} keys for user {user_id} in {d}/tenants.db")
PY
