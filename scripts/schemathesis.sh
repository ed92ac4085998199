#!/usr/bin/env bash
# Checks the running Worker against its own description: starts the built Herald in
# workerd (the end-to-end harness, on a free 127.0.0.1 port, state in a temporary
# directory, dev mode on so the dev routes answer too), then lets Schemathesis generate
# requests for every operation in GET /openapi.json, valid and invalid, and fails on any
# 5xx answer or any answer that does not match the documented schema.
#
# Usage: bash scripts/schemathesis.sh            # full run (make schemathesis)
#        bash scripts/schemathesis.sh --quick    # the short form scripts/test.sh runs
# SCHEMATHESIS_SEED replays a run; SCHEMATHESIS_CHECKS picks other checks (e.g. `all`).
#
# Installs Schemathesis (pinned, with every dependency, in scripts/requirements-schemathesis.txt)
# into .venv/schemathesis once; later runs only check it. Needs build/ (scripts/build.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"

# The full run draws a new seed each time (printed, for a replay with SCHEMATHESIS_SEED);
# the quick one is the same every time, so `make test` is repeatable.
examples=100
seed="${SCHEMATHESIS_SEED:-$RANDOM}"
if [ "${1:-}" = "--quick" ]; then
  examples=20
  seed="${SCHEMATHESIS_SEED:-1}"
fi

step() { printf '==> %s\n' "$*"; }

venv=.venv/schemathesis
requirements=scripts/requirements-schemathesis.txt
if ! cmp -s "$requirements" "$venv/.herald-requirements" 2>/dev/null; then
  step "pip install Schemathesis into $venv"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 ships venv separately.
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q python3 python3-venv
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$requirements"
  "$venv/bin/pip" check --disable-pip-version-check
  cp "$requirements" "$venv/.herald-requirements"
fi

if [ ! -f build/index.js ] || [ ! -f build/index_bg.wasm ]; then
  bash scripts/build.sh
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
base="http://127.0.0.1:$port"
log=$(mktemp)
# Schemathesis keeps crash files under ./.schemathesis and replays them on the next run;
# it runs in a scratch directory instead, so that every run starts from the same state.
scratch=$(mktemp -d)
node bench/peers/herald-server.mjs --port "$port" --binding DEV_MODE=true >"$log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$log" "$scratch"
}
trap cleanup EXIT INT TERM

for _ in $(seq 1 300); do
  if curl -fsS "$base/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then
    cat "$log" >&2
    echo "Herald did not start" >&2
    exit 1
  fi
  sleep 0.1
done

# Credentials for the security schemes (scripts/schemathesis.toml): the harness's test
# keys, and a user token that may also publish and that every room grants.
eval "$(node --input-type=module -e '
import { ADMIN_KEY, PUBLISH_KEY, tokenFor } from "./miniflare-tests/harness.mjs";
const token = tokenFor("schemathesis", { ttlS: 3600, claims: { scope: ["publish", "rooms:write"], rooms: ["*"] } });
console.log(`export HERALD_USER_TOKEN=${token} HERALD_PUBLISH_KEY=${PUBLISH_KEY} HERALD_ADMIN_KEY=${ADMIN_KEY}`);
')"

# Something in the token user's inbox, so that listing, reading and deleting (reached by
# the document's link from the list) work on real items, not only on 404s.
for i in $(seq 1 10); do
  curl -fsS -o /dev/null -X POST "$base/v1/publish" \
    -H "Authorization: Bearer $HERALD_PUBLISH_KEY" -H 'Content-Type: application/json' \
    -d "{\"to\":{\"users\":[\"schemathesis\"]},\"event\":\"seed.item\",\"title\":\"seed $i\"}"
done

step "schemathesis against $base/openapi.json (at most $examples examples per operation)"
(cd "$scratch" && "$root/$venv/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml" \
  run "$base/openapi.json" \
  --checks "${SCHEMATHESIS_CHECKS:-not_a_server_error,response_schema_conformance}" \
  --max-examples "$examples" \
  --generation-database none \
  --request-timeout 30 \
  --seed "$seed" \
  --no-color)
