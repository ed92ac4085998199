// Runs the built Herald Worker (build/index.js, from `make bench` / `make build`) in
// workerd through the end-to-end harness, on 127.0.0.1:PORT, with the harness's test
// secrets (JWT secret, publish key, issuer, audience: see miniflare-tests/harness.mjs).
// Prints "ready" when listening; runs until SIGTERM / SIGINT. Every `--binding KEY=VALUE`
// sets a Worker variable over wrangler.toml's (the resume benchmark raises INBOX_MAX_ITEMS).
// `--inspector-port N` opens workerd's DevTools inspector there (bench/profile.mjs).
// Usage: node bench/peers/herald-server.mjs --port PORT [--binding KEY=VALUE]...
//                                            [--inspector-port N]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startHerald } from "../../miniflare-tests/harness.mjs";
import { bindingArgs, exitOnSignal, inspectorPortArg, portArg } from "./args.mjs";

const port = portArg();
const bindings = bindingArgs();
const inspectorPort = inspectorPortArg();
// The harness names build/index.js relative to the working directory (Miniflare's default
// modulesRoot), so run from the repo root whatever the caller's directory.
process.chdir(fileURLToPath(new URL("../..", import.meta.url)));
// Miniflare's own SIGTERM hook kills workerd and exits synchronously, before an async
// stop() could remove the harness's temporary storage, so own the directory and remove
// it on exit, whichever way the process ends.
const dir = mkdtempSync(join(tmpdir(), "herald-bench-"));
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
let herald;
exitOnSignal(() => herald?.stop());
herald = await startHerald({ port, persistDir: dir, bindings, inspectorPort });
console.log("ready");
