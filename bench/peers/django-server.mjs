// Runs the Django Channels peer (django/peer.py) under uvicorn from .venv-bench/ (which
// scripts/bench.sh installs from django/requirements.txt), with its channel layer on a
// Debian redis-server of its own on a free port (no persistence), both on 127.0.0.1.
// Prints "ready" once a publish is answered; on SIGTERM / SIGINT stops both.
// Usage: node bench/peers/django-server.mjs --port PORT
import { spawn } from "node:child_process";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import { freePort } from "../../miniflare-tests/harness.mjs";
import { exitOnSignal, portArg } from "./args.mjs";

const port = portArg();
const root = fileURLToPath(new URL("../..", import.meta.url));
const redisPort = await freePort();
const children = [];
const start = (cmd, args, env = {}) => {
  const child = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "inherit", "inherit"] });
  child.once("exit", (code, signal) => {
    console.error(`${cmd} exited (${code ?? signal})`);
    process.exit(1);
  });
  children.push(child);
};
exitOnSignal(async () => {
  for (const child of children) {
    child.removeAllListeners("exit");
    child.kill("SIGTERM");
  }
});

/** Resolves once `check()` does, trying every 100 ms for up to 30 s. */
async function until(check) {
  for (let i = 0; i < 300; i++) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("the Django peer did not come up");
}

start("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"]);
await until(
  () =>
    new Promise((resolve, reject) => {
      const socket = connect(redisPort, "127.0.0.1", () => (socket.end(), resolve(true)));
      socket.once("error", reject);
    }),
);
start(
  `${root}.venv-bench/bin/python`,
  ["-m", "uvicorn", "peer:application", "--app-dir", "bench/peers/django", "--host", "127.0.0.1",
   "--port", String(port), "--ws", "websockets", "--no-access-log", "--log-level", "warning"],
  { REDIS_URL: `redis://127.0.0.1:${redisPort}` },
);
await until(async () => (await fetch(`http://127.0.0.1:${port}/publish`, { method: "POST", body: "{}" })).status === 202);
console.log("ready");
