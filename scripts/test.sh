#!/usr/bin/env bash
# Run the whole Portcullis test suite (unit and integration tests, release profile so the
# gateway binary the integration tests launch is fast). Installs missing dependencies first.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

require_cargo
# redis-server is used by the rate-limit suites, curl (HTTP/2, TLS) and openssl by the edge
# suites, Python by the gRPC suite; installed here so one command sets up everything.
ensure_packages "${BUILD_PACKAGES[@]}" redis-server curl openssl python3 python3-venv

# Test tools from PyPI in a virtualenv under target/, which the tests find
# (tests/support/mod.rs: python()): real gRPC and WebSocket servers and clients (grpcio, and
# grpcio-tools to generate the transcoding test service's messages from its .proto), a raw
# HTTP/2 client (h2), and the Kubernetes manifest validator.
if ! target/test-venv/bin/python3 -c "import grpc, grpc_tools, websockets, h2, kubernetes_validate" >/dev/null 2>&1; then
    echo "==> installing grpcio, grpcio-tools, websockets, h2 and kubernetes-validate into target/test-venv"
    /usr/bin/python3 -m venv target/test-venv 2>/dev/null || python3 -m venv target/test-venv
    target/test-venv/bin/python3 -m pip install -q --disable-pip-version-check "grpcio>=1.60,<2" "grpcio-tools>=1.60,<2" "websockets>=12,<16" "h2>=4,<5" "kubernetes-validate>=1.28,<2"
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy --release --all-targets -- -D warnings"
cargo clippy --release --all-targets -- -D warnings

echo "==> cargo build --release --bins"
cargo build --release --bins

echo "==> cargo test --release --all-targets"
status=0
cargo test --release --all-targets 2>&1 || status=$?

if [ "$status" -eq 0 ]; then
    echo "==> tests passed"
else
    echo "==> tests FAILED (cargo exit status $status)"
fi
exit "$status"
