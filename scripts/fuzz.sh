#!/usr/bin/env bash
# Fuzzes the parsers of untrusted input with libFuzzer (cargo-fuzz): client WebSocket
# frames, publish bodies and bearer tokens (targets in fuzz/fuzz_targets/). Each target runs
# for FUZZ_SECONDS (default 60) starting from its seeds in fuzz/corpus/<target>; a panic, a
# failed assertion or an input slower than FUZZ_TIMEOUT seconds fails the run, and the input
# is left under fuzz/artifacts/<target>/. FUZZ_TARGETS="frame token" runs only those.
#
# Works on stable Rust, which is all a clean machine has: `--sanitizer none` needs no
# sanitizer runtime, RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass the few `-Z` flags it still
# uses, and libfuzzer-sys compiles libFuzzer itself with the system C++ compiler.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$root"

cargo_fuzz_version=0.13.2
if [[ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $cargo_fuzz_version" ]]; then
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi

export RUSTC_BOOTSTRAP=1
seconds="${FUZZ_SECONDS:-60}"
read -r -a targets <<<"${FUZZ_TARGETS:-frame publish token}"
# Inputs are capped well above anything realistic for each parser, and below the point
# where every run is spent on size: frames and tokens are small, publish bodies are not.
declare -A max_len=([frame]=8192 [publish]=16384 [token]=4096)
# Debug assertions turn integer overflow into a crash, as it is in `cargo test`.
flags=(--sanitizer none --debug-assertions)

cargo fuzz build "${flags[@]}"
failed=()
for target in "${targets[@]}"; do
  printf '\n==> fuzz %s for %ss\n' "$target" "$seconds"
  # New inputs go to a working corpus under fuzz/target (kept between runs, not committed);
  # the committed seeds are only read.
  work="$root/fuzz/target/corpus/$target"
  mkdir -p "$work"
  if ! cargo fuzz run "${flags[@]}" "$target" "$work" "$root/fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -max_len="${max_len[$target]:-4096}" \
    -timeout="${FUZZ_TIMEOUT:-10}" -print_final_stats=1; then
    failed+=("$target")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: failing inputs in ${failed[*]}; see fuzz/artifacts/" >&2
  exit 1
fi
echo "fuzz: ${targets[*]} ran ${seconds}s each without a crash"
