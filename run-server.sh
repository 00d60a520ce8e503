#!/usr/bin/env bash
# Build and run the huddle server on a Debian/Ubuntu machine.
#
#   ./run-server.sh                      # signaling on 127.0.0.1:7880, media on udp 127.0.0.1:7882
#   ./run-server.sh --http 0.0.0.0:7880  # any `huddle-server serve` flag (see docs/operations.md)
#
# Installs what the build needs (cmake, pkg-config, libopus-dev) when missing,
# with sudo unless run as root, then `cargo run --release -p huddle-rtc-server -- serve`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust first (https://rustup.rs), then run $0 again" >&2
    exit 1
fi

packages=(cmake pkg-config libopus-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "please install ${missing[*]} with your package manager (no apt-get here)" >&2
        exit 1
    fi
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
    echo "installing ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

exec cargo run --release -p huddle-rtc-server -- serve "$@"
