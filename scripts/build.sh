#!/usr/bin/env bash
# Builds the Worker into build/ (index.js + index_bg.wasm) with the pinned local tools.
# Skips the build when build/ is newer than every Rust source, so `wrangler dev` (which
# runs this as its build command) starts at once after `make test` and never rewrites
# build/ under a running test.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"
if [ -f build/index.js ] && [ -f build/index_bg.wasm ] \
  && [ -z "$(find src Cargo.toml Cargo.lock wrangler.toml -newer build/index_bg.wasm -print -quit)" ]; then
  echo "build/ is up to date"
  exit 0
fi
worker-build --release
