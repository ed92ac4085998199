// Hibernation: the hub is evicted while its sockets stay open, and wakes with them when a
// publish arrives. Heartbeat pings are answered by the runtime without waking it.
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { test } from "node:test";
import { ofType, startHerald, tokenFor } from "./harness.mjs";

// workerd evicts an idle Durable Object after about 10 s. Idling is the condition under
// test here, not a timing assertion, so this is the one deliberate wait in the suite.
const IDLE_MS = 15_000;

test("a socket idle past eviction still receives a notification published afterwards", async (t) => {
  const herald = await startHerald();
  t.after(() => herald.stop());
  const wakes = () => herald.logs.filter((l) => l.event === "hub_wake");

  const client = await herald.connect("/v1/connect", {
    headers: { Authorization: `Bearer ${tokenFor("sleepy")}` },
  });
  await client.next(ofType("welcome"));
  assert.equal(wakes().length, 1);

  await sleep(IDLE_MS);
  // Answered by the auto-response: no wake-up for a heartbeat.
  client.send("ping");
  await client.next((f) => f === "pong");
  assert.equal(wakes().length, 1, "a ping must not wake the hub");

  const res = await herald.publish({ to: { users: ["sleepy"] }, event: "wake.up" });
  assert.equal(res.status, 202);
  const n = await client.next(ofType("notification"));
  assert.equal(n.event, "wake.up");

  // The hub was rebuilt from storage and found the hibernated socket.
  const wake = await herald.waitForLog((l) => l.event === "hub_wake" && l.sockets === 1);
  assert.equal(wake.sockets, 1);
  assert.equal(wakes().length, 2, "the hub was evicted while idle and woke once");
  await client.close();
});
