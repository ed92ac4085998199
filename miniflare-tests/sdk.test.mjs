// The client SDK (client/dist/herald.js) from Node 22 against the Worker in workerd: it
// survives a restart of the runtime by itself and delivers every missed notification
// exactly once.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Herald } from "../client/dist/herald.js";
import { freePort, startHerald, tokenFor } from "./harness.mjs";

/** Resolves once `check()` is true, re-checking whenever `herald` emits one of `events`. */
function until(herald, events, check, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    if (check()) return resolve();
    const offs = [].concat(events).map((event) => herald.on(event, () => check() && done()));
    const timer = setTimeout(() => {
      offs.forEach((off) => off());
      reject(new Error(`timed out waiting on ${events}`));
    }, timeoutMs);
    function done() {
      clearTimeout(timer);
      offs.forEach((off) => off());
      resolve();
    }
  });
}

test("the SDK reconnects after a runtime restart and delivers each missed notification once", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herald-sdk-"));
  const port = await freePort();
  const start = () => startHerald({ persistDir: dir, port });
  let herald = await start();
  t.after(async () => {
    await herald.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const sdk = new Herald({
    url: `http://127.0.0.1:${port}`,
    token: tokenFor("sdk-sam"),
    storage: null,
    backoff: { baseMs: 200, capMs: 1000 },
  });
  const delivered = [];
  const statuses = [];
  sdk.on("notification", (n) => delivered.push(n.seq));
  sdk.on("batch", ({ items }) => delivered.push(...items.map((n) => n.seq)));
  sdk.on("status", (s) => statuses.push(s));
  t.after(() => sdk.close());
  sdk.connect();
  await until(sdk, "status", () => sdk.status === "open");

  for (let i = 0; i < 2; i++) await herald.publish({ to: { users: ["sdk-sam"] }, event: "before" });
  await until(sdk, "notification", () => delivered.length === 2);

  await herald.stop();
  await until(sdk, "status", () => sdk.status === "reconnecting");
  herald = await start();
  for (let i = 0; i < 3; i++) await herald.publish({ to: { users: ["sdk-sam"] }, event: "missed" });

  const seen = () => new Set(delivered).size === 5;
  await until(sdk, ["batch", "notification"], seen);
  // Give any duplicate a moment to show up before judging.
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(delivered, [1, 2, 3, 4, 5], "each notification exactly once, in order");
  assert.equal(sdk.status, "open");
  assert.ok(statuses.includes("reconnecting"));
});

test("new Herald({ broadcast: true }) emits each broadcast once, beside the inbox", async (t) => {
  const herald = await startHerald();
  t.after(() => herald.stop());
  const sdk = new Herald({ url: herald.url, token: tokenFor("sdk-bea"), storage: null, broadcast: true });
  const broadcasts = [];
  const inbox = [];
  sdk.on("broadcast", (n) => broadcasts.push(n));
  sdk.on("notification", (n) => inbox.push(n));
  t.after(() => sdk.close());
  sdk.connect();
  await until(sdk, "status", () => sdk.status === "open");
  // The broadcast socket opens on its own: publish until it is listening.
  const deadline = Date.now() + 30_000;
  while (broadcasts.length === 0) {
    assert.ok(Date.now() < deadline, "no broadcast arrived");
    await herald.publish({ to: { broadcast: true }, event: "system.notice", title: "Maintenance" });
    await until(sdk, "broadcast", () => broadcasts.length > 0, 1_000).catch(() => {});
  }
  const release = () => broadcasts.filter((n) => n.event === "system.release");
  const sent = await herald.publish({ to: { broadcast: true }, event: "system.release" });
  await herald.publish({ to: { users: ["sdk-bea"] }, event: "personal" });
  await until(sdk, ["broadcast", "notification"], () => release().length > 0 && inbox.length === 1);
  assert.deepEqual(release().map((n) => [n.id, n.room]), [[sent.body.id, "broadcast"]]);
  assert.deepEqual(inbox.map((n) => n.event), ["personal"]);
});
