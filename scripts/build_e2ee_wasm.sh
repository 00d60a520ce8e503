#!/usr/bin/env bash
# Build the web client's end-to-end encryption (crates/e2ee-web) as
# WebAssembly into crates/server/web/e2ee/, which the server embeds and
# serves at /e2ee/. The output is committed: the server builds without a
# WebAssembly toolchain. Run this after changing crates/e2ee or
# crates/e2ee-web; CI checks the recorded source hash
# (crates/server/web/e2ee/SOURCE) against the sources.
#
# Needs the wasm32-unknown-unknown target and wasm-bindgen-cli of the
# version crates/e2ee-web pins (both installed here if missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=$(sed -n 's/^wasm-bindgen = "=\(.*\)"$/\1/p' crates/e2ee-web/Cargo.toml)
rustup target add wasm32-unknown-unknown >/dev/null
if [[ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $version" ]]; then
    cargo install wasm-bindgen-cli --version "=$version"
fi
target="${CARGO_TARGET_DIR:-$HOME/.cache/huddle-target}"
cargo build --locked -p huddle-e2ee-web --target wasm32-unknown-unknown --profile wasm
out=crates/server/web/e2ee
rm -rf "$out"
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir "$out" \
    "$target/wasm32-unknown-unknown/wasm/huddle_e2ee_web.wasm"
bash scripts/e2ee_wasm_source_hash.sh > "$out/SOURCE"
ls -l "$out"
