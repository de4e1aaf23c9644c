#!/usr/bin/env bash
# Shared by run.sh and test.sh: install the Debian packages that are missing (apt-get, as root
# or through sudo). Usage: ensure_packages PKG...
ensure_packages() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    echo "==> installing ${missing[*]}"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

require_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found; install Rust first (https://rustup.rs)" >&2
        exit 1
    fi
}

# Native build dependencies of pingora: cmake and a C compiler (zlib-ng), OpenSSL headers.
# shellcheck disable=SC2034  # used by the scripts that source this file
BUILD_PACKAGES=(cmake pkg-config libssl-dev build-essential)
