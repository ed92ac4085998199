// Attention-aware delivery and liveness in workerd: batch windows, focus mode with urgent
// bypass and a digest at the end, the idle sweep, token expiry, preferences that survive
// a restart, and a hub that hibernates between alarm-driven events.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ofType, startHerald, tokenFor } from "./harness.mjs";

const IDLE_TIMEOUT_MS = 3000;
let herald;
before(async () => {
  herald = await startHerald({ bindings: { IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS) } });
});
after(() => herald.stop());

const auth = (user, options) => ({ Authorization: `Bearer ${tokenFor(user, options)}` });

/** A device that answers the heartbeat like the SDK does, so the sweep leaves it alone. */
async function device(on, user) {
  const client = await on.connect("/v1/connect", { headers: auth(user) });
  await client.next(ofType("welcome"));
  const heartbeat = setInterval(() => client.ws.readyState === 1 && client.send("ping"), 1000);
  client.ws.once("close", () => clearInterval(heartbeat));
  return client;
}

function putPreferences(on, user, body) {
  return on.request("/v1/preferences", {
    method: "PUT",
    headers: { ...auth(user), "Content-Type": "application/json" },
    body,
  });
}

function publish(on, user, extra = {}) {
  return on.publish({ to: { users: [user] }, event: "task.updated", ...extra });
}

const notifications = (client) => client.frames.filter(ofType("notification"));

describe("attention", { concurrency: true }, () => {
  test("five notifications within the batch window arrive as one batch", async () => {
    const user = "batcher";
    const res = await putPreferences(herald, user, { batch_window_ms: 1500 });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const client = await device(herald, user);
    const seqs = [];
    for (let i = 0; i < 5; i++) seqs.push((await publish(herald, user)).body.recipients[0].seq);
    const batch = await client.next(ofType("batch"));
    assert.equal(batch.reason, "window");
    assert.deepEqual(batch.items.map((n) => n.seq), seqs);
    assert.equal(notifications(client).length, 0, "nothing was pushed one by one");
    await client.close();
  });

  test("a device resuming while items are held gets them in its replay, and not again when the window closes", async () => {
    const user = "resumer";
    assert.equal((await putPreferences(herald, user, { batch_window_ms: 1500 })).status, 200);
    const live = await device(herald, user);
    const before = [];
    for (let i = 0; i < 2; i++) before.push((await publish(herald, user)).body.recipients[0].seq);
    const resumed = await herald.connect("/v1/connect?since=0", { headers: auth(user) });
    const replay = await resumed.next((f) => f.type === "batch" && f.reason === "replay");
    assert.deepEqual(replay.items.map((n) => n.seq), before);
    await resumed.next(ofType("synced"));
    const later = (await publish(herald, user)).body.recipients[0].seq;
    const whole = await live.next(ofType("batch"));
    assert.deepEqual(whole.items.map((n) => n.seq), [...before, later]);
    const rest = await resumed.next((f) => f.type === "batch" && f.reason === "window");
    assert.deepEqual(rest.items.map((n) => n.seq), [later]);
    await Promise.all([live.close(), resumed.close()]);
  });

  test("during focus a normal item waits, an urgent one goes through, and the digest holds exactly the held items once", async () => {
    const user = "focused";
    const client = await device(herald, user);
    client.send({ type: "focus", on: true, duration_ms: 2500 });
    const prefs = await client.next(ofType("preferences"));
    assert.ok(prefs.focus_until > Date.now());
    const held = [];
    for (let i = 0; i < 3; i++) held.push((await publish(herald, user, { priority: "normal" })).body.id);
    const urgent = (await publish(herald, user, { priority: "urgent", event: "deploy.failed" })).body;
    const pushed = await client.next(ofType("notification"));
    assert.equal(pushed.id, urgent.id);
    const digest = await client.next(ofType("batch"), { timeoutMs: 20_000 });
    assert.equal(digest.reason, "focus_end");
    assert.deepEqual(digest.items.map((n) => n.id), held);
    assert.ok(digest.items.every((n) => n.priority === "normal"));
    assert.equal(notifications(client).length, 1, "only the urgent item was pushed live");
    // Exactly once: a later publish arrives alone, and no second digest came before it.
    await publish(herald, user, { event: "after.focus" });
    await client.next((f) => f.type === "notification" && f.event === "after.focus");
    assert.equal(client.frames.filter(ofType("batch")).length, 1);
    await client.close();
  });

  test("muted events and items below the minimum priority are stored but never pushed", async () => {
    const user = "picky";
    await putPreferences(herald, user, { muted_events: ["task.commented"], min_priority: "high" });
    const client = await device(herald, user);
    await publish(herald, user, { event: "task.commented", priority: "urgent" });
    await publish(herald, user, { priority: "normal" });
    await publish(herald, user, { event: "marker", priority: "high" });
    await client.next((f) => f.type === "notification" && f.event === "marker");
    assert.equal(notifications(client).length, 1);
    const inbox = await herald.request("/v1/notifications", { headers: auth(user) });
    assert.equal(inbox.body.items.length, 3, "all three are stored");
    assert.equal(inbox.body.unread_count, 3);
    await client.close();
  });

  test("the sweep closes a silent socket; a pinging one survives", async () => {
    const silent = await herald.connect("/v1/connect", { headers: auth("silent-sam") });
    await silent.next(ofType("welcome"));
    const pinging = await device(herald, "pinging-pam");
    const closed = await silent.closed;
    assert.equal(closed.code, 1001);
    // Well past the timeout, the pinging socket is still served.
    await new Promise((r) => setTimeout(r, IDLE_TIMEOUT_MS));
    assert.equal(pinging.ws.readyState, 1);
    await publish(herald, "pinging-pam", { event: "still.here" });
    await pinging.next((f) => f.type === "notification" && f.event === "still.here");
    await pinging.close();
  });

  test("a socket whose token expires is closed with 4001", async () => {
    // Accepted thanks to the 60 s leeway, which runs out two seconds from now.
    const client = await herald.connect("/v1/connect", { headers: auth("expiring", { ttlS: -58 }) });
    await client.next(ofType("welcome"));
    const heartbeat = setInterval(() => client.ws.readyState === 1 && client.send("ping"), 500);
    const closed = await client.closed;
    clearInterval(heartbeat);
    assert.equal(closed.code, 4001);
    assert.equal(client.frames.find(ofType("error"))?.code, "closing");
  });

  test("bad preference bodies get 400 naming the field and change nothing", async () => {
    const user = "careful";
    const good = { batch_window_ms: 250, quiet_hours: { start: "22:00", end: "07:00", time_zone: "Europe/Berlin" } };
    assert.equal((await putPreferences(herald, user, good)).status, 200);
    const bad = [
      [{ batch_window_ms: 60001 }, /batch_window_ms/],
      [{ quiet_hours: { start: "22:00", end: "07:00", time_zone: "Mars/Olympus" } }, /quiet_hours\.time_zone/],
      [{ quiet_hours: { start: "7:00", end: "07:00", time_zone: "UTC" } }, /quiet_hours\.start/],
      [{ muted_events: ["not ok!"] }, /muted_events\[0\]/],
      [{ focus_until: "soon" }, /focus_until/],
      [{ focus_until: Date.now() + 8 * 24 * 3_600_000 }, /focus_until/],
      [{ colour: "blue" }, /colour/],
      ["{", /JSON/],
    ];
    for (const [body, field] of bad) {
      const res = await putPreferences(herald, user, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.match(res.body.error.message, field);
    }
    const now = await herald.request("/v1/preferences", { headers: auth(user) });
    assert.deepEqual(
      [now.body.batch_window_ms, now.body.quiet_hours],
      [good.batch_window_ms, good.quiet_hours],
    );
  });
});

test("preferences survive a restart of the runtime", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herald-prefs-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const first = await startHerald({ persistDir: dir });
  const body = { batch_window_ms: 1200, muted_events: ["task.commented"], min_priority: "normal" };
  assert.equal((await putPreferences(first, "durable-dora", body)).status, 200);
  await first.stop();
  const second = await startHerald({ persistDir: dir });
  t.after(() => second.stop());
  const res = await second.request("/v1/preferences", { headers: auth("durable-dora") });
  assert.equal(res.status, 200);
  assert.deepEqual(
    [res.body.batch_window_ms, res.body.muted_events, res.body.min_priority],
    [1200, ["task.commented"], "normal"],
  );
});

test("the hub hibernates during focus and its alarm wakes it to send the digest; the socket stays open", async (t) => {
  const own = await startHerald();
  t.after(() => own.stop());
  const user = "hibernating-hal";
  const client = await own.connect("/v1/connect", { headers: auth(user) });
  await client.next(ofType("welcome"));
  // Long enough for workerd to evict the idle object (about 10 s) before focus ends.
  client.send({ type: "focus", on: true, duration_ms: 16_000 });
  await client.next(ofType("preferences"));
  const held = (await publish(own, user)).body.id;
  const wakesBefore = own.logs.filter((l) => l.event === "hub_wake").length;

  const digest = await client.next(ofType("batch"), { timeoutMs: 40_000 });
  assert.deepEqual(digest.items.map((n) => n.id), [held]);
  const wakes = own.logs.filter((l) => l.event === "hub_wake");
  assert.equal(wakes.length, wakesBefore + 1, "the constructor ran again: the object had been evicted");
  assert.equal(wakes.at(-1).sockets, 1, "and found the hibernated socket");
  assert.equal(client.ws.readyState, 1);
  await client.close();
});
