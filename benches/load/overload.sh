#!/usr/bin/env bash
# Overload, open loop (issue 15): a service that handles one request at a time
# (`loadgen --serial-upstream`, SERVICE_US each: the capacity of one busy core) behind
# Portcullis, offered twice what it can serve, first without limits (every request waits its
# turn), then with `limits` (a few slots, a short queue, the rest refused at once with 503 and
# Retry-After). Prints one table: admitted requests and their p50/p99, refusals and theirs.
#
#   benches/load/overload.sh            # DURATION=10 SERVICE_US=2500 CONNS=64
set -euo pipefail
cd "$(dirname "$0")/../.."
SERVICE_US=${SERVICE_US:-2500}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
cargo build --release --bin portcullis --example loadgen >/dev/null
BIN=target/release
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }

UP=$(free_port)
taskset -c 1 "$BIN/examples/loadgen" --serial-upstream "127.0.0.1:$UP" "$SERVICE_US" &
pids+=($!)
wait_port "$UP"

field() { tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }

# What the service can do: closed loop, directly, with as many connections.
echo "/" >"$dir/one.txt"
capacity=$(taskset -c 1 "$BIN/examples/loadgen" --sequence "127.0.0.1:$UP" "$DURATION" "$CONNS" "$dir/one.txt" | field per_s)
offered=$(( capacity * 2 ))
echo "service capacity: $capacity req/s (one request at a time, ${SERVICE_US} us each); offered: $offered req/s for ${DURATION}s over $CONNS connections"

run() {
    local label=$1 limits=$2 gw admin line
    gw=$(free_port)
    admin=$(free_port)
    cat >"$dir/$label.yaml" <<YAML
server:
  listen: ["127.0.0.1:$gw"]
  admin: "127.0.0.1:$admin"
  threads: 1
  access_log: false
upstreams:
  app:
    targets: ["127.0.0.1:$UP"]
    limits: $limits
    outlier: { consecutive_5xx: 0, consecutive_gateway_errors: 0 }
    retry: { attempts: 1 }
routes:
  - { name: all, match: { path_prefix: / }, upstream: app, timeout: 60s }
YAML
    RUST_LOG=error taskset -c 0 "$BIN/portcullis" run -c "$dir/$label.yaml" >/dev/null 2>&1 &
    local pid=$!
    pids+=($pid)
    wait_port "$gw"
    line=$(taskset -c 1 "$BIN/examples/loadgen" "127.0.0.1:$gw" / "$offered" "$DURATION" "$CONNS")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$line" | awk -v l="$label" -v d="$DURATION" '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        printf "| %s | %d | %d | %.1f | %.1f | %d | %.1f | %d |\n", l, f["requests"], f["ok"],
            f["ok_p50_us"] / 1000, f["ok_p99_us"] / 1000, f["non2xx"], f["refused_p99_us"] / 1000, f["errors"]
    }'
}

echo
echo "| limits | answered | admitted (2xx) | admitted p50 ms | admitted p99 ms | refused (503) | refused p99 ms | errors |"
echo "|---|---|---|---|---|---|---|---|"
run "off (1024 slots, 64 queued, 100ms)" "{ max_requests: 1024, max_pending: 64, pending_timeout: 100ms }"
run "on (2 slots, 4 queued, 20ms)" "{ max_requests: 2, max_pending: 4, pending_timeout: 20ms }"
