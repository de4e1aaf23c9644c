#!/usr/bin/env bash
# Build Portcullis and run it on the example configuration (conf/portcullis.yaml), with small
# demo services behind it so every example route answers. Installs build dependencies on a
# fresh Debian machine first. Ctrl-C stops the gateway and the demo services.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

require_cargo
ensure_packages "${BUILD_PACKAGES[@]}" curl

echo "==> cargo build --release"
cargo build --release
bin=./target/release/portcullis

echo "==> portcullis demo-cert conf/tls (the HTTPS listener's certificate)"
"$bin" demo-cert conf/tls

echo "==> portcullis check -c conf/portcullis.yaml"
"$bin" check -c conf/portcullis.yaml

echo "==> demo upstreams on 127.0.0.1:9001-9004, and a gRPC service on 9005"
"$bin" demo-upstreams 9001 9002 9003 9004 &
demo=$!
trap 'kill "$demo" 2>/dev/null || true' EXIT INT TERM

cat <<'TRY'

==> try it (in another terminal):
  curl -i localhost:8080/users/42                          # round robin over 9001 and 9002 (weight 3)
  curl -i --cacert conf/tls/demo-ca.pem https://localhost:8443/users/42
                                                           # the same over HTTPS and HTTP/2 (ALPN)
  curl -i localhost:8080/api/orders/7                      # 401: the orders route needs an API key
  curl -i -H 'x-api-key: demo-key-not-secret' -H 'x-user-id: alice' localhost:8080/api/orders/7
                                                           # authenticated, rate limited (RateLimit headers),
                                                           # sticky hash; upstream sees /orders/7 + X-Consumer-Id
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code} ' -H 'x-api-key: demo-key-not-secret' localhost:8080/api/orders/7; done; echo
                                                           # 200 x5, then 429 (5 requests per 10 s)
  curl -i -H 'x-tenant: acme' -H 'Host: eu.example.com' localhost:8080/users/1   # host + header route
  curl -i localhost:8080/v1/catalog/3                      # API version 1: Deprecation, Sunset, Link
  curl -i -H 'x-canary: on' localhost:8080/catalog/3       # version 2 (default), forced onto the canary
  curl -i localhost:8080/v9/catalog/3                      # 404 listing the supported versions
  curl -si localhost:8080/catalog/3 | grep -i x-cache      # twice: MISS, then HIT (cached 30 s)
  curl -i 'localhost:8080/profile/42?limit=5'              # aggregation: three services in one answer
  curl -i localhost:8080/profile/42                        # without ?limit the orders part fails: its fallback and "errors"
  curl -i localhost:8080/shop/v1/orders/7                  # REST/JSON -> gRPC: GetOrder, answered as JSON
  curl -i 'localhost:8080/shop/v1/orders?page_size=2'      # ListOrders, the query bound to its fields
  curl -i localhost:8080/shop/v1/orders/missing            # the gRPC NOT_FOUND as 404 problem+json
  curl -i -X DELETE localhost:8080/users/42                # 405 with Allow, problem+json
  curl -i localhost:8080/nothing-here                      # 404 problem+json
  curl -i --path-as-is 'localhost:8080/users/..%2fadmin'   # 400: encoded '/' refused
  curl -s localhost:9090/metrics | grep '^portcullis_'     # Prometheus metrics
  curl -s localhost:9090/readyz                            # readiness
  # edit conf/portcullis.yaml, then apply it live:
  ./target/release/portcullis reload -c conf/portcullis.yaml

==> portcullis run -c conf/portcullis.yaml (Ctrl-C to stop)
TRY
"$bin" run -c conf/portcullis.yaml
