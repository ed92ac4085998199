#!/usr/bin/env bash
# Every check, in order; the first failure fails the run. Ends with node's test summary.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"
bash scripts/setup.sh

step() { printf '\n==> %s\n' "$*"; }
step "client SDK: type check, bundle, unit tests"
bash client/build.sh
node --test "client/test/*.test.mjs"
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (native)"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo clippy (wasm32)"
cargo clippy --target wasm32-unknown-unknown --locked -- -D warnings
step "fuzz targets compile (make fuzz runs them)"
cargo check --manifest-path fuzz/Cargo.toml --bins --locked
step "cargo test"
cargo test --workspace --locked
step "release wasm build"
bash scripts/build.sh
step "Schemathesis: the built Worker against docs/openapi.json (short form; make schemathesis runs more)"
bash scripts/schemathesis.sh --quick
step "Miniflare suite (workerd, real sockets)"
node --test --test-concurrency=4 --test-timeout=120000 "miniflare-tests/*.test.mjs"
