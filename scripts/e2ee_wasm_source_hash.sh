#!/usr/bin/env bash
# The hash of what crates/server/web/e2ee/ is built from (see
# scripts/build_e2ee_wasm.sh): the sources and manifests of huddle-e2ee,
# huddle-e2ee-web and huddle-proto, tests left out.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
find crates/e2ee crates/e2ee-web crates/proto \
    \( -name '*.rs' -o -name Cargo.toml \) -not -path '*/tests/*' -not -name tests.rs |
    LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1
