#!/usr/bin/env bash
# Side-by-side load benchmark: Portcullis, HAProxy 2.6, nginx 1.22 and a minimal Pingora proxy
# (the framework's floor) in front of the same two nginx upstreams, driven by the same load
# generators on the same machine in one run. See BENCHMARKS.md for what each scenario means.
#
# Knobs (environment): SCENARIOS, THREADS_LIST, PROXIES, REPS, DURATION, WARMUP, CONNS,
# OPEN_LOOP, IDLE_POLL, MINIMAL_WORK_STEALING, PERF, CALLGRIND, BEFORE_BIN, BASE_PORT, OUT, PROFILE
# (the cargo profile built and measured; release unless set). Example: SCENARIOS="A B" THREADS_LIST=1 REPS=3 benches/load/run.sh
# CALLGRIND=1 measures instructions per request instead of throughput: Portcullis runs under
# `valgrind --tool=callgrind`, wrk warms it up, the counters are zeroed, wrk drives it for
# DURATION seconds, and the dump's total is divided by the requests wrk reports. With
# BEFORE_BIN=<path to an older portcullis binary> the same is measured for it ("before").
# PROXIES narrows the proxies run (e.g. "portcullis minimal"; minimal then runs in every scenario
# as the framework floor). PERF=1 adds one profiled wrk run per Rust proxy (perf record -g into
# $OUT/perf-<proxy>-<scenario>-<threads>.data), outside the measured runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
# shellcheck source=scripts/deps.sh
source scripts/deps.sh
require_cargo
ensure_packages "${BUILD_PACKAGES[@]}" haproxy nginx wrk nghttp2-client

SCENARIOS=${SCENARIOS:-"A B C-RS256-1 C-RS256-10k C-ES256-1 C-ES256-10k D K A1K T G S S-NEW H2 P CACHE"}
THREADS_LIST=${THREADS_LIST:-"1 2"}
REPS=${REPS:-3}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-50}
OPEN_LOOP=${OPEN_LOOP:-1}
PROXIES=${PROXIES:-}
PERF=${PERF:-0}
CALLGRIND=${CALLGRIND:-0}
BEFORE_BIN=${BEFORE_BIN:-}
if [ "$CALLGRIND" = 1 ]; then ensure_packages valgrind; fi
BASE_PORT=${BASE_PORT:-18100}
# Scenario K: distinct rate-limit keys, and a warm-up long enough to send each once.
KEYS_K=${KEYS_K:-1000000}
WARMUP_K=${WARMUP_K:-90}
OUT=${OUT:-$ROOT/target/bench-load}
SECRET=bench-only-hmac-secret-0123456789abcdef
U1=$((BASE_PORT + 1))
U2=$((BASE_PORT + 2))
# A third upstream port that answers 500 to everything (scenarios E and E-OFF).
U3=$((BASE_PORT + 3))
# Scenario P's gRPC service (benches/load/grpc_bench.rs, h2c).
UG=$((BASE_PORT + 4))
PORT=$((BASE_PORT + 10))
ADMIN=$((BASE_PORT + 11))
FIXTURES=$ROOT/tests/fixtures/jwt
# The cargo profile the gateway and the minimal proxy are built with (Cargo.toml): release or
# dist or profiling (a profile's binaries are in target/<profile>; `dev` builds go to
# target/debug instead).
PROFILE=${PROFILE:-release}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE

mkdir -p "$OUT"

# Idle CPUs poll instead of halting while the benchmark runs (a PM QoS request of 0 µs wake-up
# latency, what tuned's latency-performance profile holds; released when this script exits).
# In a virtual machine a halted vCPU waits for the host to wake it: at 50% load that added
# milliseconds to the open loop's p99 with no proxy at all (nginx directly, 9k req/s: p99
# 0.5-3 ms with halting, 0.09 ms with polling). Every proxy runs under the same setting.
# IDLE_POLL=0 leaves the machine's idle states alone.
if [ "${IDLE_POLL:-1}" = 1 ]; then
    if [ -w /dev/cpu_dma_latency ]; then
        exec 9>/dev/cpu_dma_latency
        # Four bytes: the kernel reads them as a binary s32 (any other length as hex text).
        printf '\x00\x00\x00\x00' >&9
    else
        echo "note: /dev/cpu_dma_latency is not writable; idle CPUs halt (open-loop tails include wake-ups)" >&2
    fi
fi
RESULTS=$OUT/results.tsv
OPEN_RESULTS=$OUT/open-loop.tsv
MEMORY=$OUT/memory.tsv
: >"$RESULTS"
: >"$OPEN_RESULTS"
: >"$MEMORY"
: >"$OUT/sequences.tsv"

echo "==> building ($PROFILE)"
cargo build --profile "$PROFILE" --bin portcullis --example minimal_proxy --example loadgen --example tokens --example grpc_bench

# Scenarios S and S-NEW: one certificate (ECDSA P-256) for both proxies; HAProxy wants the
# certificate and key in one file.
"$BIN/portcullis" demo-cert "$OUT/tls" >/dev/null
cat "$OUT/tls/demo.pem" "$OUT/tls/demo.key" >"$OUT/tls/haproxy.pem"

# The listener of each scenario: TLS (S: keep-alive, S-NEW: a new connection and handshake
# per request), HTTP/2 without TLS (H2), else plain HTTP/1.1.
portcullis_listen() {
    case $1 in
        S | S-NEW) echo "[ { addr: \"127.0.0.1:$PORT\", tls: { certificates: [ { cert: $OUT/tls/demo.pem, key: $OUT/tls/demo.key } ], alpn: [http/1.1] } } ]" ;;
        H2) echo "[ { addr: \"127.0.0.1:$PORT\", h2c: true } ]" ;;
        *) echo "[\"127.0.0.1:$PORT\"]" ;;
    esac
}
haproxy_bind() {
    case $1 in
        S | S-NEW) echo " ssl crt $OUT/tls/haproxy.pem alpn http/1.1" ;;
        H2) echo " proto h2" ;;
    esac
}
scheme_of() {
    case $1 in
        S | S-NEW) echo https ;;
        *) echo http ;;
    esac
}

UPSTREAM_PID=""
PROXY_PID=""
cleanup() {
    if [ -n "$PROXY_PID" ]; then kill -KILL "$PROXY_PID" 2>/dev/null || true; fi
    if [ -n "$UPSTREAM_PID" ]; then kill "$UPSTREAM_PID" 2>/dev/null || true; fi
    if [ -n "${GRPC_PID:-}" ]; then kill "$GRPC_PID" 2>/dev/null || true; fi
    wait 2>/dev/null || true
}
trap cleanup EXIT

wait_port() {
    local deadline=$((SECONDS + 60))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then
            echo "port $1 did not open" >&2
            return 1
        fi
        sleep 0.1
    done
}

wait_port_free() {
    local deadline=$((SECONDS + 20))
    while (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.1
    done
}

# The process and its children (nginx workers).
family() {
    echo "$1"
    pgrep -P "$1" 2>/dev/null || true
}

# CPU ticks (user + system) of a process family.
cpu_ticks() {
    local total=0 pid t
    for pid in $(family "$1"); do
        t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo "$total"
}

# Peak resident memory (KiB) of a process family.
peak_rss_kb() {
    local total=0 pid k
    for pid in $(family "$1"); do
        k=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${k:-0}))
    done
    echo "$total"
}

# What Portcullis' resident memory holds right after its measured runs, from
# /proc/PID/smaps, in MiB. MEMORY columns: scenario threads rss code read-only-data data
# shared-libraries brk-heap anonymous other. The binary's mappings by permission (read-only
# data includes RELRO; its .bss is anonymous); brk heap is glibc's main arena only (OpenSSL's
# allocations on other threads land in glibc's mmap'd arenas, which count as anonymous, as do
# mimalloc's pages, thread stacks and connection buffers).
memory_breakdown() {
    local scenario=$1 threads=$2 pid=$3 binary
    binary=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 0
    binary=${binary% (deleted)}
    [ -r "/proc/$pid/smaps" ] || return 0
    awk -v s="$scenario" -v t="$threads" -v bin="$binary" '
        /^[0-9a-f]+-[0-9a-f]+ / {
            perms = $2
            # The path is the rest of the line after five fields (it may hold spaces).
            path = $0
            sub(/^[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ */, "", path)
            sub(/ +$/, "", path)
            sub(/ \(deleted\)$/, "", path)
            if (path == bin) kind = (perms ~ /x/) ? "code" : (perms ~ /w/) ? "data" : "rodata"
            else if (path ~ /\.so($|\.)/) kind = "shlib"
            else if (path == "[heap]") kind = "heap"
            else if (path == "" || path == "[stack]" || path ~ /^\[anon/) kind = "anon"
            else kind = "other"
            next
        }
        /^Rss:/ { kb[kind] += $2; total += $2 }
        END {
            printf "%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\n", s, t, total / 1024,
                kb["code"] / 1024, kb["rodata"] / 1024, kb["data"] / 1024, kb["shlib"] / 1024,
                kb["heap"] / 1024, kb["anon"] / 1024, kb["other"] / 1024
        }' "/proc/$pid/smaps" >>"$MEMORY" 2>/dev/null || true
}

# The 1 KiB JSON document of scenarios A1K and T: a user with a password and card numbers
# (which T's transform denies), an address and a list of orders.
doc_1k() {
    local orders="" i
    for ((i = 0; i < 9; i++)); do
        orders+="{\"id\":$i,\"sku\":\"SKU-00000$i\",\"qty\":$((i % 7 + 1)),\"card\":\"4111-1111-1111-000$i\"},"
    done
    printf '{"id":42,"name":"Ann Example","email":"ann@example.com","password":"hunter2","address":{"street":"1 Main St","city":"Oslo","zip":"0150"},"orders":[%s]}' "${orders%,}"
}

# ---- upstreams: one nginx, two ports, fixed JSON, pinned to core 1 ----
start_upstreams() {
    cat >"$OUT/upstream.conf" <<CONF
worker_processes 1;
worker_cpu_affinity 10;
pid $OUT/upstream.pid;
error_log $OUT/upstream.err;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$U1;
        listen 127.0.0.1:$U2;
        default_type application/json;
        location / { return 200 '{"id":42,"name":"benchmark","items":[1,2,3],"ok":true}'; }
        location /doc { return 200 '$(doc_1k)'; }
    }
    server {
        listen 127.0.0.1:$U3;
        default_type application/json;
        location / { return 500 '{"error":"down"}'; }
    }
}
CONF
    nginx -c "$OUT/upstream.conf" -g 'daemon off;' &
    UPSTREAM_PID=$!
    wait_port "$U1"
    wait_port "$U2"
    taskset -c 1 "$BIN/examples/grpc_bench" serve "127.0.0.1:$UG" &
    GRPC_PID=$!
    wait_port "$UG"
}

# ---- request files (one request per line: PATH|Header: value|...) ----
make_requests() {
    local scenario=$1 file=$OUT/requests-$1.txt
    case $scenario in
        A | E | E-OFF | S | H2 | CACHE) : >"$file" ;;
        S-NEW) echo "/|Connection: close" >"$file" ;;
        A1K | T) echo "/doc" >"$file" ;;
        G) echo "/g/42" >"$file" ;;
        P) echo "/v1/orders/42" >"$file" ;;
        B) "$BIN/examples/tokens" HS256 1 "$SECRET" "$OUT/tokens-B" ;;
        C-RS256-1) "$BIN/examples/tokens" RS256 1 "$FIXTURES/rsa_private.pem" "$OUT/tokens-$scenario" ;;
        C-RS256-10k) "$BIN/examples/tokens" RS256 10000 "$FIXTURES/rsa_private.pem" "$OUT/tokens-$scenario" ;;
        C-ES256-1) "$BIN/examples/tokens" ES256 1 "$FIXTURES/ec_private.pem" "$OUT/tokens-$scenario" ;;
        C-ES256-10k) "$BIN/examples/tokens" ES256 10000 "$FIXTURES/ec_private.pem" "$OUT/tokens-$scenario" ;;
        D) awk 'BEGIN { for (i = 0; i < 10000; i++) printf "/r%d/item|x-user: user-%d\n", i % 1000, i }' >"$file" ;;
        # K: wrk.lua makes the keys itself (KEYS_K distinct x-user values, round robin).
        K) : >"$file" ;;
    esac
    if [ -f "$OUT/tokens-$scenario" ]; then
        sed 's/^/\/item|Authorization: Bearer /' "$OUT/tokens-$scenario" >"$file"
    fi
}

# The public key file of an asymmetric algorithm (both Portcullis and HAProxy verify with it).
public_key_of() {
    case $1 in
        RS256) echo "$FIXTURES/rsa_public.pem" ;;
        ES256) echo "$FIXTURES/ec_public.pem" ;;
    esac
}

alg_of() {
    case $1 in
        B) echo HS256 ;;
        C-RS256*) echo RS256 ;;
        C-ES256*) echo ES256 ;;
    esac
}

# ---- Portcullis ----
portcullis_conf() {
    local scenario=$1 threads=$2 alg key i
    cat <<CONF
server:
  listen: $(portcullis_listen "$scenario")
  admin: "127.0.0.1:$ADMIN"
  threads: $threads
  pid_file: $OUT/portcullis.pid
  upgrade_sock: $OUT/portcullis.sock
  access_log: false
upstreams:
CONF
    case $scenario in
        # One of two targets answers 500 (its TCP health check passes): with passive health
        # (the default outlier settings) and without it.
        E) printf '  app:\n    targets: ["127.0.0.1:%s", "127.0.0.1:%s"]\n' "$U1" "$U3" ;;
        E-OFF) printf '  app:\n    targets: ["127.0.0.1:%s", "127.0.0.1:%s"]\n    outlier: { consecutive_5xx: 0, consecutive_gateway_errors: 0 }\n' "$U1" "$U3" ;;
        *) printf '  app:\n    targets: ["127.0.0.1:%s", "127.0.0.1:%s"]\n    health_check: { type: tcp, interval: 1s }\n' "$U1" "$U2" ;;
    esac
    [ "$scenario" = P ] && printf '  orders-grpc: { targets: ["127.0.0.1:%s"], protocol: h2c }\n' "$UG"
    case $scenario in
        A | A1K | E | E-OFF | S | S-NEW | H2)
            printf 'routes:\n  - { name: bench, match: { path_prefix: / }, upstream: app }\n' ;;
        # Every request after the first is answered from the store (the upstream sends no
        # Cache-Control: the route's ttl applies).
        CACHE)
            printf 'routes:\n  - { name: bench, match: { path_prefix: / }, upstream: app, cache: { ttl: 600s } }\n' ;;
        T)
            cat <<CONF
routes:
  - name: bench
    match: { path_prefix: / }
    upstream: app
    transform:
      response:
        deny: [password, "orders[].card"]
        rename: { id: user_id, "address.city": city }
        set: { "meta.source": bench }
CONF
            ;;
        G)
            # Three parts, each answered by the fixed nginx upstream.
            cat <<CONF
routes:
  - name: bench
    match: { path_prefix: /g }
    aggregate:
      parts:
        - { name: user, upstream: app, path: "/users/{path.2}" }
        - { name: orders, upstream: app, path: "/orders?customer={path.2}" }
        - { name: prefs, upstream: app, path: "/prefs/{path.2}" }
CONF
            ;;
        B | C-*)
            alg=$(alg_of "$scenario")
            key="public_key_file: $(public_key_of "$alg")"
            [ "$alg" = HS256 ] && key="secret_env: BENCH_SECRET"
            cat <<CONF
auth:
  jwt:
    type: jwt
    issuers: ["https://bench.example.com"]
    algorithms: [$alg]
    $key
rate_limits:
  per-consumer:
    key: consumer
    limits: [{ requests: 1000000000, per: 1s }]
    expected_keys: 10000
routes:
  - { name: bench, match: { path_prefix: / }, upstream: app, auth: [jwt], rate_limit: [per-consumer] }
CONF
            ;;
        P)
            # GET /v1/orders/42 transcoded to the unary GetOrder call (conf/protos/orders.proto).
            printf 'routes:\n  - { name: bench, match: { path_prefix: /v1 }, grpc: { upstream: orders-grpc, protos: ["%s/conf/protos/orders.proto"], services: [shop.orders.v1.OrderService] } }\n' "$ROOT"
            ;;
        K)
            # The default max_keys (1,000,000): every key of the run fits.
            printf 'rate_limits:\n  per-key:\n    key: header:x-user\n    limits: [{ requests: 1000000000, per: 1s }]\n    expected_keys: 10000\nroutes:\n  - { name: bench, match: { path_prefix: / }, upstream: app, rate_limit: [per-key] }\n'
            ;;
        D)
            printf 'rate_limits:\n  per-user:\n    key: header:x-user\n    limits: [{ requests: 1000000000, per: 1s }]\n    expected_keys: 10000\nroutes:\n'
            for ((i = 0; i < 1000; i++)); do
                printf '  - { name: r%d, match: { path_prefix: /r%d }, upstream: app, rate_limit: [per-user] }\n' "$i" "$i"
            done
            ;;
    esac
}

# ---- HAProxy ----
haproxy_conf() {
    local scenario=$1 threads=$2 alg key
    cat <<CONF
global
    nbthread $threads
    cpu-map auto:1/1-$threads 0-$((threads - 1))
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
backend per_consumer
    stick-table type string len 64 size 100k expire 60s store http_req_rate(1s)
backend per_key
    stick-table type string len 64 size 1100k expire 60s store http_req_rate(1s)
backend app
    balance roundrobin
    server s1 127.0.0.1:$U1 check inter 1s
    server s2 127.0.0.1:$U2 check inter 1s
frontend fe
    bind 127.0.0.1:$PORT$(haproxy_bind "$scenario")
CONF
    case $scenario in
        A | S | S-NEW | H2) ;;
        B | C-*)
            alg=$(alg_of "$scenario")
            key="\"$(public_key_of "$alg")\""
            [ "$alg" = HS256 ] && key="\"$SECRET\""
            cat <<CONF
    http-request set-var(txn.bearer) http_auth_bearer
    http-request deny deny_status 401 unless { var(txn.bearer) -m found }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_header_query('\$.alg') -m str $alg }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify("$alg",$key) -m int 1 }
    http-request set-var(txn.now) date()
    http-request deny deny_status 401 if { var(txn.bearer),jwt_payload_query('\$.exp','int'),sub(txn.now) -m int lt 0 }
    http-request track-sc0 var(txn.bearer),jwt_payload_query('\$.sub') table per_consumer
    http-request deny deny_status 429 if { sc_http_req_rate(0,per_consumer) gt 1000000000 }
CONF
            ;;
        D)
            awk 'BEGIN { for (i = 0; i < 1000; i++) printf "/r%d app\n", i }' >"$OUT/routes.map"
            cat <<CONF
    http-request set-var(txn.route) path,map_beg($OUT/routes.map)
    http-request deny deny_status 404 unless { var(txn.route) -m found }
    http-request track-sc0 req.hdr(x-user) table per_consumer
    http-request deny deny_status 429 if { sc_http_req_rate(0,per_consumer) gt 1000000000 }
CONF
            ;;
        K)
            cat <<CONF
    http-request track-sc0 req.hdr(x-user) table per_key
    http-request deny deny_status 429 if { sc_http_req_rate(0,per_key) gt 1000000000 }
CONF
            ;;
    esac
    echo "    default_backend app"
}

# ---- nginx (OSS: no JWT, passive health checks only) ----
nginx_conf() {
    local scenario=$1 threads=$2 affinity=01 i
    [ "$threads" = 2 ] && affinity="01 10"
    cat <<CONF
worker_processes $threads;
worker_cpu_affinity $affinity;
pid $OUT/nginx-proxy.pid;
error_log $OUT/nginx-proxy.err;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 1000000;
    limit_req_zone \$http_x_user zone=per_user:10m rate=100000000r/s;
    limit_req_zone \$http_authorization zone=per_token:10m rate=100000000r/s;
    proxy_cache_path $OUT/nginx-cache levels=1:2 keys_zone=bench:10m max_size=256m inactive=10m use_temp_path=off;
    upstream app {
        server 127.0.0.1:$U1;
        server 127.0.0.1:$U2;
        keepalive 128;
    }
    server {
        listen 127.0.0.1:$PORT;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
CONF
    case $scenario in
        A) echo "        location / { proxy_pass http://app; }" ;;
        CACHE) echo "        location / { proxy_cache bench; proxy_cache_valid 200 10m; proxy_cache_lock on; proxy_pass http://app; }" ;;
        B | C-*) echo "        location / { limit_req zone=per_token burst=1000000 nodelay; proxy_pass http://app; }" ;;
        D)
            for ((i = 0; i < 1000; i++)); do
                echo "        location /r$i/ { limit_req zone=per_user burst=1000000 nodelay; proxy_pass http://app; }"
            done
            ;;
    esac
    echo "    }"
    echo "}"
}

start_proxy() {
    local kind=$1 scenario=$2 threads=$3 cpus=0
    [ "$threads" = 2 ] && cpus=0,1
    wait_port_free "$PORT"
    case $kind in
        portcullis | portcullis-before)
            local bin=$BIN/portcullis wrap=()
            [ "$kind" = portcullis-before ] && bin=$BEFORE_BIN
            [ "$CALLGRIND" = 1 ] && wrap=(valgrind --tool=callgrind "--callgrind-out-file=$OUT/callgrind.$kind.$scenario")
            portcullis_conf "$scenario" "$threads" >"$OUT/portcullis.yaml"
            # As under systemd: no SSL_CERT_FILE/SSL_CERT_DIR from a login shell (src/tls/trust.rs).
            env -u SSL_CERT_FILE -u SSL_CERT_DIR BENCH_SECRET=$SECRET RUST_LOG=warn taskset -c "$cpus" "${wrap[@]}" "$bin" run -c "$OUT/portcullis.yaml" \
                >"$OUT/portcullis.log" 2>&1 &
            ;;
        haproxy)
            haproxy_conf "$scenario" "$threads" >"$OUT/haproxy.cfg"
            haproxy -db -f "$OUT/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
            ;;
        nginx)
            nginx_conf "$scenario" "$threads" >"$OUT/nginx-proxy.conf"
            nginx -c "$OUT/nginx-proxy.conf" -g 'daemon off;' &
            ;;
        minimal)
            local wrap=()
            [ "$CALLGRIND" = 1 ] && wrap=(valgrind --tool=callgrind "--callgrind-out-file=$OUT/callgrind.$kind.$scenario")
            # The edge scenarios' floor: the same TLS certificate (S, S-NEW) or h2c (H2).
            local edge=()
            case $scenario in
                S | S-NEW) edge=("TLS_CERT=$OUT/tls/demo.pem" "TLS_KEY=$OUT/tls/demo.key") ;;
                H2) edge=(H2C=true) ;;
            esac
            env -u TLS_CERT -u TLS_KEY -u H2C "${edge[@]}" "WORK_STEALING=${MINIMAL_WORK_STEALING:-false}" RUST_LOG=warn taskset -c "$cpus" "${wrap[@]}" "$BIN/examples/minimal_proxy" "127.0.0.1:$PORT" "$threads" \
                "127.0.0.1:$U1" "127.0.0.1:$U2" >"$OUT/minimal.log" 2>&1 &
            ;;
    esac
    PROXY_PID=$!
    wait_port "$PORT"
    sleep 1.5 # first health-check round
}

# SIGINT: a fast stop for all four (SIGTERM makes Pingora drain for its grace period).
stop_proxy() {
    local deadline=$((SECONDS + 10))
    kill -INT "$PROXY_PID" 2>/dev/null || true
    while kill -0 "$PROXY_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -KILL "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=""
}

# One closed-loop wrk run on core 1; prints "reqs_per_s errors non2xx p50 p99 p999 cpu_ticks".
wrk_run() {
    local scenario=$1 seconds=$2 before after line
    if [ "$scenario" = H2 ]; then
        h2_run "$seconds"
        return
    fi
    before=$(cpu_ticks "$PROXY_PID")
    line=$(REQUESTS="$OUT/requests-$scenario.txt" KEYS="$([ "$scenario" = K ] && echo "$KEYS_K")" taskset -c 1 wrk -t1 -c"$CONNS" -d"${seconds}s" \
        -s "$ROOT/benches/load/wrk.lua" "$(scheme_of "$scenario")://127.0.0.1:$PORT/" | grep '^RESULT')
    after=$(cpu_ticks "$PROXY_PID")
    echo "$line" | awk -v ticks=$((after - before)) '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%.0f %d %d %d %d %d %d %d\n", v["requests"] / (v["duration_us"] / 1e6), v["errors"], v["non2xx"],
            v["p50_us"], v["p99_us"], v["p999_us"], ticks, v["requests"] }'
}

# Scenario H2: h2load (HTTP/2 prior knowledge), $CONNS connections with 10 streams each, on
# core 1. h2load reports the mean request time, not percentiles: the p50 column holds the
# mean and p99/p99.9 are 0.
h2_run() {
    local seconds=$1 before after out
    before=$(cpu_ticks "$PROXY_PID")
    out=$(taskset -c 1 h2load -c"$CONNS" -m10 -t1 -D"$seconds" "http://127.0.0.1:$PORT/" 2>&1)
    after=$(cpu_ticks "$PROXY_PID")
    echo "$out" | awk -v ticks=$((after - before)) -v secs="$seconds" '
        /^requests:/ { done = $6; failed = $10; errored = $12 }
        /^status codes:/ { ok = $3 }
        /^time for request:/ { mean = $6; unit = mean; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", mean);
            us = (unit == "ms") ? mean * 1000 : (unit == "s") ? mean * 1e6 : mean }
        END { printf "%.0f %d %d %d 0 0 %d %d\n", done / secs, failed + errored, done - ok, us, ticks, done }'
}

# The median (by req/s) of REPS runs, with CPU seconds per 100k requests and peak RSS.
# RESULTS columns: scenario threads proxy req/s p50 p99 p99.9 errors non2xx cpu_s_per_100k rss_mib
closed_loop() {
    local scenario=$1 threads=$2 label=$3 rep runs=()
    # K's warm-up sends every key once before anything is measured.
    wrk_run "$scenario" "$([ "$scenario" = K ] && echo "$WARMUP_K" || echo "$WARMUP")" >/dev/null
    for ((rep = 0; rep < REPS; rep++)); do
        runs+=("$(wrk_run "$scenario" "$DURATION")")
    done
    profile "$scenario" "$threads" "$label"
    printf '%s\n' "${runs[@]}" | sort -n -k1 | sed -n "$(((REPS + 1) / 2))p" |
        awk -v s="$scenario" -v t="$threads" -v p="$label" -v rss="$(peak_rss_kb "$PROXY_PID")" \
            -v hz="$(getconf CLK_TCK)" 'BEGIN { OFS = "\t" } {
            cpu = ($8 > 0) ? ($7 / hz) / $8 * 100000 : 0
            print s, t, p, $1, $4, $5, $6, $2, $3, sprintf("%.2f", cpu), sprintf("%.1f", rss / 1024)
        }' >>"$RESULTS"
}

# With PERF=1, one more wrk run of a Rust proxy under `perf record` (after the measured runs, so
# the sampling overhead does not touch the table).
profile() {
    local scenario=$1 threads=$2 label=$3
    case $label in portcullis | minimal-pingora) ;; *) return 0 ;; esac
    [ "$PERF" = 1 ] || return 0
    ensure_packages linux-perf
    perf record -F 999 -g -p "$PROXY_PID" -o "$OUT/perf-$label-$scenario-$threads.data" \
        -- sleep "$DURATION" >/dev/null 2>&1 &
    local perf_pid=$!
    wrk_run "$scenario" "$DURATION" | awk -v f="$OUT/perf-$label-$scenario-$threads.data" \
        '{ print "    profiled run: " $1 " req/s -> " f }'
    wait "$perf_pid" || true
}

# Each CPU's time from /proc/stat: `cpuN busy idle steal` (clock ticks; busy is user, nice,
# system, irq and softirq; idle includes iowait).
core_ticks() {
    awk '/^cpu[0-9]+ / { print $1, $2 + $3 + $4 + $7 + $8, $5 + $6, $9 }' /proc/stat
}

# Open loop at a fixed rate (from loadgen, latency from the scheduled send time); to the proxy,
# or to the address given sixth. Besides the latencies, where the time went: the rate achieved
# (requests over the time until the last answer), how late loadgen's pacer handed requests
# over (late means the generator's core, not the server, was saturated), and how busy core 0
# (the proxy's) and core 1 (loadgen's and the upstream's) were, with the VM's steal time.
open_loop() {
    local scenario=$1 threads=$2 label=$3 rate=$4 pct=$5 addr=${6:-127.0.0.1:$PORT} line before after
    before=$(core_ticks)
    line=$(taskset -c 1 "$BIN/examples/loadgen" "$addr" / "$rate" "$DURATION" 64 \
        "$OUT/requests-$scenario.txt")
    after=$(core_ticks)
    { echo "$before" | sed 's/^/before /'; echo "$after" | sed 's/^/after /'; echo "result $line"; } |
        awk -v s="$scenario" -v t="$threads" -v p="$label" -v r="$rate" -v pct="$pct" '
        $1 == "before" { busy[$2] -= $3; all[$2] -= $3 + $4 + $5; steal -= $5; total -= $3 + $4 + $5 }
        $1 == "after" { busy[$2] += $3; all[$2] += $3 + $4 + $5; steal += $5; total += $3 + $4 + $5 }
        $1 == "result" { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END {
            c0 = all["cpu0"] > 0 ? 100 * busy["cpu0"] / all["cpu0"] : 0
            c1 = all["cpu1"] > 0 ? 100 * busy["cpu1"] / all["cpu1"] : 0
            st = total > 0 ? 100 * steal / total : 0
            achieved = v["elapsed_s"] > 0 ? v["requests"] / v["elapsed_s"] : 0
            printf "%s\t%s\t%s\t%s%%\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t%.0f\n", s, t, p, pct, r, v["p50_us"], v["p99_us"], v["p999_us"], v["errors"], v["non2xx"], achieved, v["pacer_p99_us"], v["pacer_max_us"], c0, c1, st
        }' >>"$OPEN_RESULTS"
}

proxies_for() {
    if [ -n "$PROXIES" ]; then
        echo "$PROXIES"
        return
    fi
    case $1 in
        A) echo "haproxy nginx portcullis minimal" ;;
        # B's floor is the minimal proxy carrying B's own requests (the token and key headers
        # cost the kernel, wrk and the parser on both sides), not its run of A.
        B) echo "haproxy nginx portcullis minimal" ;;
        # The edge scenarios, each against HAProxy doing the same and the minimal Pingora proxy
        # speaking the same protocol (the framework's floor for that work).
        S | S-NEW | H2) echo "haproxy portcullis minimal" ;;
        # The transform's cost: the same 1 KiB document proxied untouched, then transformed.
        A1K) echo "portcullis minimal" ;;
        T | G | E | E-OFF | P) echo "portcullis" ;;
        # A cache hit: against nginx's proxy_cache answering the same from its cache.
        CACHE) echo "nginx portcullis" ;;
        # One million keys: HAProxy's stick table against the local store.
        K) echo "haproxy portcullis" ;;
        *) echo "haproxy nginx portcullis" ;;
    esac
}

label_for() {
    case "$1/$2" in
        nginx/B | nginx/C-*) echo "nginx (no JWT)" ;;
        minimal/*) echo "minimal-pingora" ;;
        *) echo "$1" ;;
    esac
}

# Scenario G as a client sees it: one aggregated request against the same three resources
# fetched by three sequential direct requests to the upstream, by three sequential requests
# through the minimal Pingora proxy (the same work without the gateway: the client fetches the
# parts through a proxy itself), and against scenario A's one proxied request, each as
# closed-loop sequences (loadgen --sequence) on core 1 in this run.
SEQUENCES=$OUT/sequences.tsv
# One connection shows latency (the slowest part plus overhead against the sum of three);
# $CONNS connections show capacity.
sequence_run() {
    local label=$1 addr=$2 file=$3 conns line
    for conns in 1 "$CONNS"; do
        taskset -c 1 "$BIN/examples/loadgen" --sequence "$addr" "$WARMUP" "$conns" "$file" >/dev/null
        line=$(taskset -c 1 "$BIN/examples/loadgen" --sequence "$addr" "$DURATION" "$conns" "$file")
        sequence_line "$label, $conns conn." "$line"
    done
}
sequence_line() {
    echo "$2" | awk -v l="$1" '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%s\t%d\t%d\t%d\t%d\t%d\n", l, v["per_s"], v["p50_us"], v["p99_us"], v["errors"], v["non2xx"]
    }' >>"$SEQUENCES"
    tail -1 "$SEQUENCES"
}
aggregation_comparison() {
    : >"$SEQUENCES"
    printf '/users/42\n/orders?customer=42\n/prefs/42\n' >"$OUT/requests-G-direct.txt"
    echo "/" >"$OUT/requests-A-sequence.txt"
    echo "==> scenario G as sequences: aggregated, three sequential direct requests, the same through the minimal proxy, scenario A"
    start_proxy portcullis G 1
    sequence_run "G: one aggregated request (3 parts)" "127.0.0.1:$PORT" "$OUT/requests-G.txt"
    stop_proxy
    sequence_run "three sequential direct requests" "127.0.0.1:$U1" "$OUT/requests-G-direct.txt"
    start_proxy minimal G 1
    sequence_run "three sequential requests through the minimal Pingora proxy" "127.0.0.1:$PORT" "$OUT/requests-G-direct.txt"
    stop_proxy
    start_proxy portcullis A 1
    sequence_run "A: one proxied request" "127.0.0.1:$PORT" "$OUT/requests-A-sequence.txt"
    stop_proxy
}

# Instructions per request of the running Portcullis (CALLGRIND=1); appends to $INSTRUCTIONS.
instructions_per_request() {
    local scenario=$1 label=$2 requests total dump
    wrk_run "$scenario" "$WARMUP" >/dev/null
    callgrind_control -z "$PROXY_PID" >/dev/null
    requests=$(wrk_run "$scenario" "$DURATION" | awk '{ print $8 }')
    callgrind_control -d "$PROXY_PID" >/dev/null
    sleep 1
    dump=$(ls -t "$OUT/callgrind.$label.$scenario"* | head -1)
    total=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
    printf '%s\t%s\t%s\t%s\t%s\n' "$scenario" "$label" "$requests" "$total" \
        "$(awk -v t="$total" -v r="$requests" 'BEGIN { printf "%.0f", (r > 0) ? t / r : 0 }')" >>"$INSTRUCTIONS"
    tail -1 "$INSTRUCTIONS"
}

# The minimal proxy is the floor of the scenarios whose work it can do (round robin, no features).
callgrind_floor() {
    case $1 in A | B | A1K | T | CACHE | S | S-NEW | H2) echo minimal ;; esac
}

start_upstreams
if [ "$CALLGRIND" = 1 ]; then
    INSTRUCTIONS=$OUT/instructions.tsv
    : >"$INSTRUCTIONS"
    rm -f "$OUT"/callgrind.*
    for scenario in $SCENARIOS; do
        make_requests "$scenario"
        for kind in portcullis ${BEFORE_BIN:+portcullis-before} $(callgrind_floor "$scenario"); do
            echo "==> scenario $scenario, instructions per request, $kind"
            start_proxy "$kind" "$scenario" 1
            instructions_per_request "$scenario" "$kind"
            stop_proxy
        done
    done
    echo
    echo "Instructions per request (callgrind, wrk -t1 -c$CONNS for ${DURATION}s after a ${WARMUP}s warm-up):"
    awk -F'\t' 'BEGIN { print "| scenario | binary | requests | instructions | per request |"; print "|---|---|---|---|---|" }
        { printf "| %s | %s | %d | %d | %d |\n", $1, $2, $3, $4, $5 }' "$INSTRUCTIONS"
    exit 0
fi
for scenario in $SCENARIOS; do
    make_requests "$scenario"
    for threads in $THREADS_LIST; do
        for kind in $(proxies_for "$scenario"); do
            label=$(label_for "$kind" "$scenario")
            echo "==> scenario $scenario, $threads thread(s), $label"
            start_proxy "$kind" "$scenario" "$threads"
            closed_loop "$scenario" "$threads" "$label"
            tail -1 "$RESULTS"
            [ "$label" = portcullis ] && memory_breakdown "$scenario" "$threads" "$PROXY_PID"
            # Each proxy at 50% and 90% of its own closed-loop maximum: the same relative load.
            # loadgen speaks plain HTTP/1.1: not K (its own key warm-up), H2, or TLS (S, S-NEW).
            own_max=$(tail -1 "$RESULTS" | cut -f4)
            if [ "$OPEN_LOOP" = 1 ] && [ -n "$own_max" ] && [ "$scenario" != K ] && [ "$scenario" != H2 ] &&
                [ "$scenario" != S ] && [ "$scenario" != S-NEW ]; then
                for pct in 50 90; do
                    open_loop "$scenario" "$threads" "$label" $((${own_max%.*} * pct / 100)) "$pct"
                done
            fi
            stop_proxy
            # The machine's own floor for the open loop: no proxy, the upstream asked directly
            # at the rates Portcullis was offered (scenario A).
            if [ "$OPEN_LOOP" = 1 ] && [ "$scenario" = A ] && [ "$label" = portcullis ] && [ -n "$own_max" ]; then
                for pct in 50 90; do
                    open_loop "$scenario" "$threads" "upstream directly (Portcullis' rate)" \
                        $((${own_max%.*} * pct / 100)) "$pct" "127.0.0.1:$U1"
                done
            fi
        done
    done
done

case " $SCENARIOS " in
    *" G "*) aggregation_comparison ;;
esac

# Scenario P's baseline: the same unary call made directly with a gRPC client (grpc_bench
# load, 4 connections x 12 streams in flight, on core 1 like wrk), median of REPS runs.
direct_grpc() {
    local rep runs=()
    echo "==> scenario P, direct gRPC calls (no gateway)"
    taskset -c 1 "$BIN/examples/grpc_bench" load "127.0.0.1:$UG" "$WARMUP" 4 12 >/dev/null
    for ((rep = 0; rep < REPS; rep++)); do
        runs+=("$(taskset -c 1 "$BIN/examples/grpc_bench" load "127.0.0.1:$UG" "$DURATION" 4 12 | awk '{
            for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            printf "%.0f %d %d %d %d\n", v["requests"] / (v["duration_us"] / 1e6), v["errors"], v["p50_us"], v["p99_us"], v["p999_us"] }')")
    done
    printf '%s\n' "${runs[@]}" | sort -n -k1 | sed -n "$(((REPS + 1) / 2))p" |
        awk 'BEGIN { OFS = "\t" } { print "P", 1, "direct gRPC (grpc_bench)", $1, $3, $4, $5, $2, 0, "0.00", "0.0" }' >>"$RESULTS"
    tail -1 "$RESULTS"
}
case " $SCENARIOS " in
    *" P "*) direct_grpc ;;
esac

echo
echo "Closed loop (wrk -t1 -c$CONNS, median of $REPS x ${DURATION}s; latency in ms):"
awk -F'\t' -f "$ROOT/benches/load/table.awk" "$RESULTS"
if [ -s "$SEQUENCES" ]; then
    echo
    echo "Scenario G as sequences (loadgen --sequence, 1 and $CONNS connections, ${DURATION}s, 1 thread; latency of a whole sequence in ms):"
    awk -F'\t' 'BEGIN { print "| sequence | per s | p50 | p99 | errors | non-2xx |"; print "|---|---|---|---|---|---|" }
        { printf "| %s | %d | %.2f | %.2f | %d | %d |\n", $1, $2, $3 / 1000, $4 / 1000, $5, $6 }' "$SEQUENCES"
fi
if [ -s "$MEMORY" ]; then
    echo
    echo "Portcullis' resident memory after its measured runs (/proc/PID/smaps, MiB; peak RSS is in the table above):"
    awk -F'\t' 'BEGIN { print "| scenario | threads | resident | code | read-only data | data | shared libraries | brk heap | anonymous | other |"; print "|---|---|---|---|---|---|---|---|---|---|" }
        { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }' "$MEMORY"
fi
if [ "$OPEN_LOOP" = 1 ]; then
    echo
    echo "Open loop (loadgen, 64 connections, fixed rate = % of that proxy's own closed-loop max; latency from the scheduled send time, ms;"
    echo "achieved: requests over the time to the last answer; pacer: how late loadgen handed requests over, ms; core busy and steal, %):"
    awk -F'\t' 'BEGIN { print "| scenario | threads | proxy | rate | req/s offered | p50 | p99 | p99.9 | errors | non-2xx | req/s achieved | pacer p99 | pacer max | core 0 busy | core 1 busy | steal |"; print "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" }
        { printf "| %s | %s | %s | %s | %d | %.2f | %.2f | %.2f | %d | %d | %d | %.2f | %.2f | %d | %d | %d |\n", $1, $2, $3, $4, $5, $6 / 1000, $7 / 1000, $8 / 1000, $9, $10, $11, $12 / 1000, $13 / 1000, $14, $15, $16 }' "$OPEN_RESULTS"
fi
