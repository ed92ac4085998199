// Runs the JavaScript Durable Object peer (jsdo/worker.mjs) in workerd through Miniflare 4
// (the repo root's node_modules/miniflare) on 127.0.0.1:PORT. Prints "ready" when
// listening and runs until SIGTERM / SIGINT, then disposes Miniflare (and workerd).
// Usage: node bench/peers/jsdo-server.mjs --port PORT
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { exitOnSignal, portArg } from "./args.mjs";

const port = portArg();
const dir = fileURLToPath(new URL("./jsdo/", import.meta.url));
const mf = new Miniflare({
  modules: true,
  scriptPath: `${dir}worker.mjs`,
  modulesRoot: dir, // module names are relative to it, so any working directory works
  compatibilityDate: "2026-07-28",
  durableObjects: { BENCH: { className: "Broadcaster", useSQLite: true } },
  host: "127.0.0.1",
  port,
});
exitOnSignal(() => mf.dispose());
await mf.ready;
console.log("ready");
