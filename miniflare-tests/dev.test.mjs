// `make dev` as a new user runs it: the script starts wrangler dev (workerd, on-disk state),
// prints a dev token and a publish key, and the printed example works. A .dev.vars kept
// from a run on another port keeps its secrets and still lets the served origin in, and
// the demo page it prints works in Chromium after a first run on another port.
// HERALD_DEV_DIR points dev.sh at a temporary directory; each test checks afterwards that
// the checkout's own .dev.vars and .wrangler/ are as they were.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { connect, freePort, launchChromium, ofType } from "./harness.mjs";

const root = new URL("..", import.meta.url).pathname;

/** Path, size and mtime of each entry of the checkout's .dev.vars and .wrangler/. */
function checkoutDevFiles() {
  const entries = [];
  for (const name of [".dev.vars", ".wrangler"]) {
    if (!existsSync(join(root, name))) continue;
    const inside = lstatSync(join(root, name)).isDirectory()
      ? readdirSync(join(root, name), { recursive: true }).map((p) => join(name, p))
      : [];
    for (const path of [name, ...inside]) {
      const stat = lstatSync(join(root, path));
      entries.push(`${path} ${stat.size} ${stat.mtimeMs}`);
    }
  }
  return entries.sort();
}
const before = checkoutDevFiles();

/**
 * Runs scripts/dev.sh on a free port with its files in a fresh temporary directory (`dir`,
 * which `prepare` may fill first; or the `dir` of an earlier run) until it prints its
 * example. `stop()` ends the script and waits for it; the directory goes when the test ends.
 */
async function startDev(t, prepare = () => {}, { dir = mkdtempSync(join(tmpdir(), "herald-dev-")), port } = {}) {
  port ??= await freePort();
  prepare(dir);
  const dev = spawn("bash", ["scripts/dev.sh"], {
    cwd: root,
    env: { ...process.env, HERALD_PORT: String(port), HERALD_DEV_DIR: dir },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise((resolve) => dev.once("exit", resolve));
  const stop = async () => {
    if (dev.exitCode === null && dev.signalCode === null) {
      try {
        process.kill(-dev.pid, "SIGTERM");
      } catch {}
    }
    const kill = setTimeout(() => {
      try {
        process.kill(-dev.pid, "SIGKILL");
      } catch {}
    }, 15_000);
    await exited;
    clearTimeout(kill);
  };
  t.after(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });

  let output = "";
  dev.stderr.on("data", (chunk) => (output += chunk));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dev.sh did not get ready:\n${output}`)), 240_000);
    dev.stdout.on("data", (chunk) => {
      output += chunk;
      if (output.includes("Press Ctrl-C to stop.")) {
        clearTimeout(timer);
        resolve();
      }
    });
    dev.on("exit", (code) => reject(new Error(`dev.sh exited with ${code}:\n${output}`)));
  });
  return { port, dir, output, stop };
}

/** The status of GET /healthz sent with `Origin: origin`. */
async function healthzFrom(port, origin) {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`, { headers: { Origin: origin } });
  await res.arrayBuffer();
  return res.status;
}

test("scripts/dev.sh serves Herald and prints a working token and publish key", async (t) => {
  const { port, dir, output, stop } = await startDev(t);
  const token = output.match(/dev token for alice \(24 h\):\s+(\S+)/)[1];
  const key = output.match(/publish key:\s+(\S+)/)[1];
  assert.ok(output.includes(`ws://127.0.0.1:${port}/v1/connect?token=${token}`));

  const client = await connect(`ws://127.0.0.1:${port}/v1/connect?token=${token}`);
  assert.equal((await client.next(ofType("welcome"))).user, "alice");
  const res = await fetch(`http://127.0.0.1:${port}/v1/publish`, {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify({ to: { users: ["alice"] }, event: "task.updated", title: "Task 7 is done" }),
  });
  assert.equal(res.status, 202);
  assert.equal((await client.next(ofType("notification"))).title, "Task 7 is done");
  await client.close();

  await stop();
  assert.ok(existsSync(join(dir, ".dev.vars")), "the secrets went to HERALD_DEV_DIR");
  assert.ok(existsSync(join(dir, ".wrangler", "state")), "the state went to HERALD_DEV_DIR");
  assert.deepEqual(checkoutDevFiles(), before, "dev.sh wrote into the checkout's .dev.vars or .wrangler/");
});

test("a kept .dev.vars written for another port keeps its secrets and lets the served origin in", async (t) => {
  const kept = [
    "JWT_SECRET=kept-jwt-secret-0123456789abcdef0123456789abcdef",
    "PUBLISH_KEY=kept-publish-key-0123456789",
    "ADMIN_KEY=kept-admin-key-0123456789",
    "DEV_MODE=true",
    "ALLOWED_ORIGINS=http://127.0.0.1:1,http://localhost:1",
    "",
  ].join("\n");
  const { port, dir, output, stop } = await startDev(t, (dir) => writeFileSync(join(dir, ".dev.vars"), kept));
  assert.match(output, /publish key:\s+kept-publish-key-0123456789\s/);

  assert.equal(await healthzFrom(port, `http://127.0.0.1:${port}`), 200);
  assert.equal(await healthzFrom(port, `http://localhost:${port}`), 200);
  assert.equal(await healthzFrom(port, "http://127.0.0.1:1"), 200, "the file's own origins stay allowed");
  assert.equal(await healthzFrom(port, "https://elsewhere.example"), 403);
  const res = await fetch(`http://127.0.0.1:${port}/v1/publish`, {
    method: "POST",
    headers: { Authorization: "Bearer kept-publish-key-0123456789", "Content-Type": "application/json" },
    body: JSON.stringify({ to: { users: ["alice"] }, event: "task.updated", title: "Kept key" }),
  });
  assert.equal(res.status, 202, "the Worker runs with the kept publish key");

  await stop();
  assert.equal(readFileSync(join(dir, ".dev.vars"), "utf8"), kept, "the kept .dev.vars is unchanged");
  assert.deepEqual(checkoutDevFiles(), before, "dev.sh wrote into the checkout's .dev.vars or .wrangler/");
});

test("run once on one port and again on another, the printed demo address turns green and shows a toast", async (t) => {
  const first = await startDev(t);
  await first.stop();
  let port = await freePort();
  while (port === first.port) port = await freePort();
  const { dir, output } = await startDev(t, () => {}, { dir: first.dir, port });
  const demo = output.match(/demo notification center:\s+(\S+)/)[1];
  const key = output.match(/publish key:\s+(\S+)/)[1];

  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browser.newPage();
  // Anything the page asks for and is refused (a 403 for the SDK, a 404 favicon) is a failure.
  const refused = [];
  page.on("response", (res) => res.status() >= 400 && refused.push(`${res.status()} ${res.url()}`));
  page.on("console", (msg) => msg.type() === "error" && refused.push(msg.text()));
  await page.goto(demo);
  await page.waitForSelector('#dot[data-status="open"]', { timeout: 30_000 });
  const res = await fetch(`http://127.0.0.1:${port}/v1/publish`, {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify({ to: { users: ["alice"] }, event: "task.updated", title: "Hello from the second run" }),
  });
  assert.equal(res.status, 202);
  await page.waitForSelector(".toast >> text=Hello from the second run");
  assert.deepEqual(refused, []);
  assert.ok(existsSync(join(dir, ".dev.vars")));
  assert.deepEqual(checkoutDevFiles(), before, "dev.sh wrote into the checkout's .dev.vars or .wrangler/");
});
