#!/usr/bin/env bash
# Builds the client SDK (client/dist/, which the Worker embeds for the dev-mode demo page)
# and the Worker into build/ (index.js + index_bg.wasm) with the pinned local tools.
# Skips the Worker build when build/ is newer than every source, so `wrangler dev` (which
# runs this as its build command) starts at once after `make test` and never rewrites
# build/ under a running test.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"
sources="src docs/openapi.json demo client/src client/build.sh Cargo.toml Cargo.lock wrangler.toml"
if [ -f build/index.js ] && [ -f build/index_bg.wasm ] && [ -f client/dist/herald.js ] \
  && [ -z "$(find $sources -newer build/index_bg.wasm -print -quit)" ]; then
  echo "build/ is up to date"
  exit 0
fi
bash client/build.sh
worker-build --release
