#!/usr/bin/env bash
# Every check, in order; the first failure fails the run. Ends with node's test summary.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"
bash scripts/setup.sh

step() { printf '\n==> %s\n' "$*"; }
# No check may write into the checkout (outside ignored build output): `make dev` after
# `make test` must find the checkout's .dev.vars, or its absence, as it was.
checkout() {
  if [ -e .dev.vars ]; then sha256sum .dev.vars; else echo ".dev.vars absent"; fi
  git status --porcelain --untracked-files=all 2>/dev/null || true
}
checkout_before="$(checkout)"
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
step "Miniflare suite (workerd, real sockets); then the checkout is checked unchanged"
suite=0
node --test --test-concurrency=4 --test-timeout=120000 "miniflare-tests/*.test.mjs" || suite=$?
if [ "$(checkout)" != "$checkout_before" ]; then
  echo "the checks changed the checkout (.dev.vars or files git sees):" >&2
  diff <(echo "$checkout_before") <(checkout) >&2 || true
  exit 1
fi
exit "$suite"
