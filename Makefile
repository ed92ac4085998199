# The two commands a new machine needs; both install what is missing first.
.PHONY: dev test build bench fuzz schemathesis soak

dev:  ## Run Herald locally on 127.0.0.1:8787 and print a dev token and example
	bash scripts/dev.sh

test:  ## Every check: fmt, clippy (native + wasm32), cargo test, wasm build, Miniflare suite
	bash scripts/test.sh

build:  ## Release build of the Worker into build/
	bash scripts/setup.sh && bash scripts/build.sh

bench:  ## Benchmarks: Herald and its peers side by side (report in bench/results/), plus replay, alarm and shard figures
	bash scripts/bench.sh

fuzz:  ## Fuzz the frame, publish-body and token parsers for FUZZ_SECONDS (60) each
	bash scripts/fuzz.sh

schemathesis:  ## Generated requests (valid and invalid) against a local Worker: no 5xx, every answer as docs/openapi.json says
	bash scripts/setup.sh && bash scripts/build.sh && bash scripts/schemathesis.sh

soak:  ## SOAK_MINUTES (10) of connect/publish/disconnect churn: nothing lost, workerd RSS trend (report in bench/results/soak-<date>.md)
	bash scripts/setup.sh && bash scripts/build.sh && bash -c 'source scripts/env.sh && node bench/soak.mjs --minutes $${SOAK_MINUTES:-10}'
