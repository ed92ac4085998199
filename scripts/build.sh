#!/usr/bin/env bash
# Builds the Worker into build/ (index.js + index_bg.wasm) with the pinned local tools.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"
worker-build --release
