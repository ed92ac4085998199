#!/usr/bin/env bash
# Starts Herald locally in workerd (wrangler dev) on 127.0.0.1:8787 with state under
# .wrangler/state, then prints a dev token, the publish key and a copy-paste example.
# HERALD_PORT and HERALD_STATE override the port and state directory.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"
bash scripts/setup.sh

port="${HERALD_PORT:-8787}"
state="${HERALD_STATE:-.wrangler/state}"
base="http://127.0.0.1:$port"

# Local secrets, made once per checkout and kept out of git.
if [ ! -f .dev.vars ]; then
  cat > .dev.vars <<VARS
JWT_SECRET=$(node -e 'console.log(require("crypto").randomBytes(32).toString("hex"))')
PUBLISH_KEY=$(node -e 'console.log(require("crypto").randomBytes(24).toString("hex"))')
ADMIN_KEY=$(node -e 'console.log(require("crypto").randomBytes(24).toString("hex"))')
DEV_MODE=true
ALLOWED_ORIGINS=http://127.0.0.1:$port,http://localhost:$port
VARS
fi
# Checkouts whose .dev.vars predates GET /v1/stats get an admin key too.
if ! grep -q '^ADMIN_KEY=' .dev.vars; then
  echo "ADMIN_KEY=$(node -e 'console.log(require("crypto").randomBytes(24).toString("hex"))')" >> .dev.vars
fi
publish_key=$(sed -n 's/^PUBLISH_KEY=//p' .dev.vars)

wrangler dev --local --ip 127.0.0.1 --port "$port" --persist-to "$state" --show-interactive-dev-session=false &
wrangler_pid=$!
trap 'kill "$wrangler_pid" 2>/dev/null || true' EXIT INT TERM

# Wait for the Worker to answer (the first start includes a release build).
for _ in $(seq 1 600); do
  if curl -fsS "$base/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$wrangler_pid" 2>/dev/null; then echo "wrangler dev exited" >&2; exit 1; fi
  sleep 1
done
token=$(curl -fsS "$base/dev/token?user=alice" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).token))')

cat <<INFO

Herald is running at $base (state in $state)

  demo notification center:    $base/demo?user=alice
  dev token for alice (24 h):  $token
  publish key:                 $publish_key
  more tokens:                 curl '$base/dev/token?user=bob'

Connect alice (in another terminal):
  npx wscat -c 'ws://127.0.0.1:$port/v1/connect?token=$token'

Publish to alice:
  curl -X POST $base/v1/publish \\
    -H 'Authorization: Bearer $publish_key' -H 'Content-Type: application/json' \\
    -d '{"to":{"users":["alice"]},"event":"task.updated","title":"Task 7 is done"}'

Counters (the admin key stays in .dev.vars):
  curl -H "Authorization: Bearer \$(sed -n 's/^ADMIN_KEY=//p' .dev.vars)" $base/v1/stats

API description: $base/openapi.json

Press Ctrl-C to stop.
INFO
wait "$wrangler_pid"
