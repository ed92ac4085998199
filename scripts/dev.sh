#!/usr/bin/env bash
# Starts Herald locally in workerd (wrangler dev) on 127.0.0.1:8787, then prints a dev
# token, the publish key and a copy-paste example. Safe to run again: secrets are made once
# and kept.
#
# Environment:
#   HERALD_PORT     port to serve on (default 8787).
#   HERALD_DEV_DIR  directory for this script's local files (default: the checkout): the
#                   secrets in .dev.vars and wrangler's .wrangler/ (state in .wrangler/state,
#                   build scratch in .wrangler/tmp). Tests point it at a temporary directory
#                   so that they never write into the checkout.
#   HERALD_STATE    the state directory alone (default $HERALD_DEV_DIR/.wrangler/state).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# Physical paths: wrangler joins paths from the config's directory, realpath resolves links.
dev_dir="${HERALD_DEV_DIR:-$root}"
mkdir -p "$dev_dir"
dev_dir="$(cd "$dev_dir" && pwd -P)"
cd "$root"
bash scripts/setup.sh

port="${HERALD_PORT:-8787}"
base="http://127.0.0.1:$port"
vars="$dev_dir/.dev.vars"
state="${HERALD_STATE:-$dev_dir/.wrangler/state}"

origins_env=""
cleanup() {
  if [ -n "${wrangler_pid:-}" ]; then
    kill "$wrangler_pid" 2>/dev/null || true
    wait "$wrangler_pid" 2>/dev/null || true
  fi
  if [ -n "$origins_env" ]; then rm -f "$origins_env"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Local secrets, made once per dev directory and kept out of git (the checkout's is ignored).
if [ ! -f "$vars" ]; then
  (umask 077 && cat > "$vars" <<VARS
JWT_SECRET=$(node -e 'console.log(require("crypto").randomBytes(32).toString("hex"))')
PUBLISH_KEY=$(node -e 'console.log(require("crypto").randomBytes(24).toString("hex"))')
ADMIN_KEY=$(node -e 'console.log(require("crypto").randomBytes(24).toString("hex"))')
DEV_MODE=true
ALLOWED_ORIGINS=$base,http://localhost:$port
VARS
  )
fi
# Checkouts whose .dev.vars predates GET /v1/stats get an admin key too.
if ! grep -q '^ADMIN_KEY=' "$vars"; then
  echo "ADMIN_KEY=$(node -e 'console.log(require("crypto").randomBytes(24).toString("hex"))')" >> "$vars"
fi
publish_key=$(sed -n 's/^PUBLISH_KEY=//p' "$vars")
env_files=(--env-file "$vars")

# The origins this run serves must be allowed even when a kept .dev.vars was written for
# another port. The file is the user's and stays as it is: a second env file, which wrangler
# reads after it, lists its ALLOWED_ORIGINS (or wrangler.toml's, when it has none) plus the
# served ones, for this run only.
origins=$(node -e '
  const { readFileSync } = require("node:fs");
  const { parseEnv } = require("node:util");
  const [vars, config, ...served] = process.argv.slice(1);
  const configured = readFileSync(config, "utf8").match(/^ALLOWED_ORIGINS\s*=\s*"(.*)"\s*$/m)?.[1];
  const listed = (parseEnv(readFileSync(vars, "utf8")).ALLOWED_ORIGINS ?? configured ?? "")
    .split(",").map((o) => o.trim()).filter(Boolean);
  const missing = served.filter((o) => !listed.includes(o));
  if (missing.length > 0) console.log([...listed, ...missing].join(","));
' "$vars" wrangler.toml "$base" "http://localhost:$port")
if [ -n "$origins" ]; then
  origins_env=$(mktemp "${TMPDIR:-/tmp}/herald-dev-origins.XXXXXX")
  printf 'ALLOWED_ORIGINS="%s"\n' "$origins" > "$origins_env"
  env_files+=(--env-file "$origins_env")
  echo "ALLOWED_ORIGINS in $vars does not list $base; this run allows it too (the file is unchanged)"
fi

# wrangler keeps its scratch files in .wrangler/ beside the configuration file, whatever
# --persist-to says, so a dev directory outside the checkout gets a copy of wrangler.toml
# whose paths still point into the checkout (main absolute, the build run from here, the
# watched sources relative to the copy, since wrangler joins watch_dir to its directory).
config="$root/wrangler.toml"
if [ "$dev_dir" != "$(pwd -P)" ]; then
  config="$dev_dir/wrangler.toml"
  watch=$(realpath --relative-to="$dev_dir" "$root/src")
  sed -e "s|^main = \"\(.*\)\"\$|main = \"$root/\1\"|" \
    -e "s|^\[build\]\$|[build]\ncwd = \"$root\"\nwatch_dir = \"$watch\"|" \
    wrangler.toml > "$config"
  if ! grep -q "^main = \"$root/" "$config" || ! grep -q '^watch_dir = ' "$config"; then
    echo "could not point $config at the checkout (main or [build] changed shape in wrangler.toml)" >&2
    exit 1
  fi
fi

wrangler dev --config "$config" "${env_files[@]}" --local --ip 127.0.0.1 --port "$port" \
  --persist-to "$state" --show-interactive-dev-session=false &
wrangler_pid=$!

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

Counters (the admin key stays in $vars):
  curl -H "Authorization: Bearer \$(sed -n 's/^ADMIN_KEY=//p' '$vars')" $base/v1/stats

API description: $base/openapi.json

Press Ctrl-C to stop.
INFO
wait "$wrangler_pid"
