#!/usr/bin/env bash
# Run the whole Portcullis test suite (unit and integration tests, release profile so the
# gateway binary the integration tests launch is fast). Installs missing dependencies first.
set -euo pipefail
cd "$(dirname "$0")/.."

# Native build dependencies of pingora, plus redis-server (used by later test suites).
install_test_deps() {
    if command -v cmake >/dev/null 2>&1 \
        && command -v pkg-config >/dev/null 2>&1 \
        && command -v cc >/dev/null 2>&1 \
        && command -v redis-server >/dev/null 2>&1 \
        && dpkg -s libssl-dev >/dev/null 2>&1; then
        return
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    echo "==> installing test dependencies (cmake pkg-config libssl-dev build-essential redis-server)"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        cmake pkg-config libssl-dev build-essential redis-server
}

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo not found; install Rust first (https://rustup.rs)" >&2
    exit 1
fi

echo "==> checking dependencies"
install_test_deps

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
