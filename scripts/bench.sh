#!/usr/bin/env bash
# The benchmark command (never part of `make test`): builds what it needs, runs Herald and
# the peers side by side (bench/run.mjs; `--profile full` for the long profile; it ends with
# bench/profile.mjs's profile of one publish in Herald and the JS DO inbox, under a
# minute), then the replay, alarm-lateness and room-shard measurements. Loopback only.
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
# The Django Channels peer: Debian's redis-server, and its Python packages (pinned in
# bench/peers/django/requirements.txt) in a virtual environment of its own.
if ! command -v redis-server >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y --no-install-recommends redis-server
fi
requirements=bench/peers/django/requirements.txt
if ! cmp -s "$requirements" .venv-bench/.herald-requirements 2>/dev/null; then
  rm -rf .venv-bench
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" .venv-bench/.herald-requirements
fi
node bench/run.mjs "$@"
node bench/replay.mjs
node bench/alarms.mjs
node bench/fanout.mjs
