#!/usr/bin/env bash
# The benchmark command (never part of `make test`): builds what it needs, runs Herald and
# the peers side by side (bench/run.mjs; `--profile full` for the long profile), then the
# replay, alarm-lateness and room-shard measurements. Loopback only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"
bash scripts/setup.sh
bash scripts/build.sh
cargo build --release --locked -p herald-loadgen
if ! cmp -s bench/peers/package-lock.json bench/peers/node_modules/.herald-lock 2>/dev/null; then
  npm ci --prefix bench/peers --no-audit --no-fund
  cp bench/peers/package-lock.json bench/peers/node_modules/.herald-lock
fi
node bench/run.mjs "$@"
node bench/replay.mjs
node bench/alarms.mjs
node bench/fanout.mjs
