# Shell helpers shared by the load scripts that run a gateway against sluice-mock
# (scripts/soak.sh, scripts/bench-trickle.sh, scripts/bench-routing.sh). Source it after
# `cd` to the repository.
#
#   pids+=($!)                 processes to kill when the script exits (trap set here)
#   wait_port HOST:PORT        waits up to 10 s for a listener
#   rss_kb PID / fds PID       resident memory (kB) / open descriptors of PID
#   mock_gateway_toml GW MOCK DATA_DIR [EXTRA_SERVER_LINES]
#                              prints a gateway config: listen on GW, a private SQLite
#                              store in DATA_DIR, cache off, no engine, one OpenAI
#                              backend `mock` at MOCK serving `mock-model`
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listening on $1" >&2; exit 1
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
mock_gateway_toml() {
    cat <<TOML
[server]
listen = "$1"
${4:-}
[store]
url = "sqlite://$3/sluice.db"
[cache]
enabled = false
[engine]
default_model = "off"
[[backends]]
name = "mock"
kind = "openai"
url = "http://$2/v1"
models = ["mock-model"]
health = { enabled = false }
TOML
}
