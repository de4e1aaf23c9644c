#!/usr/bin/env bash
# Build Portcullis and run it on the example configuration (conf/portcullis.yaml).
# On a fresh Debian/Ubuntu machine the build dependencies are installed first.
set -euo pipefail
cd "$(dirname "$0")/.."

# Install the native build dependencies of pingora (cmake, a C compiler, OpenSSL headers) if missing.
install_build_deps() {
    if command -v cmake >/dev/null 2>&1 \
        && command -v pkg-config >/dev/null 2>&1 \
        && command -v cc >/dev/null 2>&1 \
        && dpkg -s libssl-dev >/dev/null 2>&1; then
        return
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    echo "==> installing build dependencies (cmake pkg-config libssl-dev build-essential)"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        cmake pkg-config libssl-dev build-essential
}

if ! command -v cargo >/dev/null 2>&1; then
    echo "run.sh: cargo not found; install Rust first (https://rustup.rs)" >&2
    exit 1
fi

install_build_deps

echo "==> cargo build --release"
cargo build --release

echo "==> portcullis check -c conf/portcullis.yaml"
./target/release/portcullis check -c conf/portcullis.yaml

echo "==> portcullis run -c conf/portcullis.yaml"
exec ./target/release/portcullis run -c conf/portcullis.yaml
