// Runs a JavaScript Durable Object peer in workerd through Miniflare 4 (the repo root's
// node_modules/miniflare) on 127.0.0.1:PORT: the broadcaster (jsdo/worker.mjs), or with
// `--inbox` the per-user inbox (jsdo-inbox/worker.mjs), whose SQLite state goes to a
// temporary directory on disk like Herald's, removed on exit. Prints "ready" when
// listening and runs until SIGTERM / SIGINT, then disposes Miniflare (and workerd).
// `--inspector-port N` opens workerd's DevTools inspector there (bench/profile.mjs).
// Usage: node bench/peers/jsdo-server.mjs --port PORT [--inbox] [--inspector-port N]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { exitOnSignal, inspectorPortArg, portArg } from "./args.mjs";

const port = portArg();
const inspectorPort = inspectorPortArg();
const inbox = process.argv.includes("--inbox");
const peer = inbox
  ? { folder: "jsdo-inbox", binding: "INBOX", className: "Inbox" }
  : { folder: "jsdo", binding: "BENCH", className: "Broadcaster" };
let persist = false;
if (inbox) {
  persist = mkdtempSync(join(tmpdir(), "herald-bench-jsdo-inbox-"));
  process.on("exit", () => rmSync(persist, { recursive: true, force: true }));
}
const dir = fileURLToPath(new URL(`./${peer.folder}/`, import.meta.url));
const mf = new Miniflare({
  modules: true,
  scriptPath: `${dir}worker.mjs`,
  modulesRoot: dir, // module names are relative to it, so any working directory works
  compatibilityDate: "2026-07-28",
  durableObjects: { [peer.binding]: { className: peer.className, useSQLite: true } },
  durableObjectsPersist: persist,
  host: "127.0.0.1",
  port,
  inspectorPort,
});
exitOnSignal(() => mf.dispose());
await mf.ready;
console.log("ready");
