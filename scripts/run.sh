#!/usr/bin/env bash
# Build Portcullis and run it on the example configuration (conf/portcullis.yaml).
# On a fresh Debian machine the build dependencies are installed first.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

require_cargo
ensure_packages "${BUILD_PACKAGES[@]}"

echo "==> cargo build --release"
cargo build --release

echo "==> portcullis check -c conf/portcullis.yaml"
./target/release/portcullis check -c conf/portcullis.yaml

echo "==> portcullis run -c conf/portcullis.yaml"
exec ./target/release/portcullis run -c conf/portcullis.yaml
