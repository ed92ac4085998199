#!/usr/bin/env bash
# Installs what building and testing Herald needs, idempotently: a second run only checks.
# Everything comes from crates.io and the npm registry; versions are pinned here and in
# Cargo.lock / package-lock.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"

WORKER_BUILD_VERSION=0.8.7
MIN_RUST=1.91

step() { printf '==> %s\n' "$*"; }

# The machine has one Rust toolchain and cannot fetch another, so check it rather than pin
# a channel in rust-toolchain.toml that rustup would try to download.
rust=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$MIN_RUST" "$rust" | sort -V | head -n1)" != "$MIN_RUST" ]; then
  echo "Rust $MIN_RUST or newer is needed (worker 0.8.7); found $rust" >&2
  exit 1
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

if [ "$("$tools/worker-build" --version 2>/dev/null | awk "{print \$NF}")" != "$WORKER_BUILD_VERSION" ]; then
  step "cargo install worker-build $WORKER_BUILD_VERSION"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked
fi

# wasm-bindgen-cli must be exactly the wasm-bindgen in Cargo.lock. It is installed without
# --locked: its own lock file names a dependency version the registry no longer serves.
bindgen=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print }' Cargo.lock)
if [ "$("$tools/wasm-bindgen" --version 2>/dev/null | awk '{print $2}')" != "$bindgen" ]; then
  step "cargo install wasm-bindgen-cli $bindgen"
  cargo install wasm-bindgen-cli --version "$bindgen" --force
fi

# The browser end-to-end tests drive Debian's Chromium (a browser download from a test
# tool's own host is not reachable here).
if ! command -v chromium >/dev/null; then
  step "apt-get install chromium"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium
fi

# npm ci again only when package-lock.json changed since the last install.
if ! cmp -s package-lock.json node_modules/.herald-lock 2>/dev/null; then
  step "npm ci"
  npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.herald-lock
fi
