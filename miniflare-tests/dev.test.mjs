// `make dev` as a new user runs it: the script starts wrangler dev (workerd, on-disk state),
// prints a dev token and a publish key, and the printed example works.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { connect, freePort, ofType } from "./harness.mjs";

const root = new URL("..", import.meta.url).pathname;


test("scripts/dev.sh serves Herald and prints a working token and publish key", async (t) => {
  const port = await freePort();
  const state = mkdtempSync(join(tmpdir(), "herald-dev-"));
  const dev = spawn("bash", ["scripts/dev.sh"], {
    cwd: root,
    env: { ...process.env, HERALD_PORT: String(port), HERALD_STATE: state },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  t.after(() => {
    try {
      process.kill(-dev.pid, "SIGTERM");
    } catch {}
    rmSync(state, { recursive: true, force: true });
  });

  let output = "";
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
});
