// Operations routes in workerd: GET /v1/stats (its figures after real connects and
// publishes, and who may read them) and GET /openapi.json.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { test } from "node:test";
import { ADMIN_KEY, ALLOWED_ORIGIN, PUBLISH_KEY, ofType, startHerald, tokenFor } from "./harness.mjs";

const admin = { Authorization: `Bearer ${ADMIN_KEY}` };
const auth = (user, claims) => ({ Authorization: `Bearer ${tokenFor(user, { claims })}` });

/**
 * Polls GET /v1/stats until `predicate` holds: objects report on their own schedule (at
 * once, then at most every STATS_REPORT_MS, the rest by their alarm), so the figures
 * converge rather than appear at a known moment.
 */
async function statsUntil(herald, predicate, { timeoutMs = 30_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    const res = await herald.request("/v1/stats", { headers: admin });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    last = res.body;
    if (predicate(last)) return last;
    if (Date.now() > deadline) {
      throw new Error(`stats did not converge; last answer ${JSON.stringify(last)}`);
    }
    await sleep(100);
  }
}

async function publish(herald, body) {
  const res = await herald.publish(body);
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body;
}

test("stats count connections, stored, delivered and dropped per kind of object", async (t) => {
  // A small inbox, so that retention drops something; reports a second apart at most, so
  // that the figures converge within the test.
  const herald = await startHerald({ bindings: { INBOX_MAX_ITEMS: "3", STATS_REPORT_MS: "1000" } });
  t.after(() => herald.stop());

  const before = await herald.request("/v1/stats", { headers: admin });
  assert.equal(before.status, 200);
  assert.deepEqual(before.body.user_hubs, { objects: 0, connections: 0, stored: 0, delivered: 0, dropped: 0 });
  assert.deepEqual(before.body.rooms, { objects: 0, connections: 0, stored: 0, delivered: 0, dropped: 0 });
  assert.ok(Math.abs(before.body.as_of - Date.now()) < 60_000);

  // alice on two devices, bob on one; two members in one room.
  const alice1 = await herald.connect("/v1/connect?device=a1", { headers: auth("alice") });
  const alice2 = await herald.connect("/v1/connect?device=a2", { headers: auth("alice") });
  const bob = await herald.connect("/v1/connect", { headers: auth("bob") });
  const roomToken = { rooms: ["ops:*"] };
  const ann = await herald.connect("/v1/rooms/ops:1/connect", { headers: auth("ann", roomToken) });
  const ben = await herald.connect("/v1/rooms/ops:1/connect", { headers: auth("ben", roomToken) });
  for (const c of [alice1, alice2, bob, ann, ben]) await c.next(ofType("welcome"));

  for (let i = 0; i < 3; i++) await publish(herald, { to: { users: ["alice"] }, event: "ops.a" });
  for (let i = 0; i < 2; i++) await publish(herald, { to: { users: ["bob"] }, event: "ops.b" });
  // carol is offline: stored, not delivered.
  await publish(herald, { to: { users: ["carol"] }, event: "ops.c" });
  // dave is offline and gets 5 with room for 3: the 2 oldest, unread, are dropped.
  for (let i = 0; i < 5; i++) await publish(herald, { to: { users: ["dave"] }, event: "ops.d" });
  // eve reads her 3 before 2 more push them out: retention of read items drops nothing.
  for (let i = 0; i < 3; i++) await publish(herald, { to: { users: ["eve"] }, event: "ops.e" });
  const read = await herald.request("/v1/notifications/read", {
    method: "POST",
    headers: { ...auth("eve"), "Content-Type": "application/json" },
    body: { all: true },
  });
  assert.equal(read.status, 200, JSON.stringify(read.body));
  for (let i = 0; i < 2; i++) await publish(herald, { to: { users: ["eve"] }, event: "ops.e" });
  for (let i = 0; i < 2; i++) await publish(herald, { to: { room: "ops:1" }, event: "ops.room" });

  // Every copy has arrived (a busy room may pack its two into one burst batch).
  const items = (f) => (f.type === "notification" ? 1 : f.type === "batch" ? f.items.length : 0);
  const received = async (client, n) => {
    const deadline = Date.now() + 15_000;
    while (client.frames.reduce((sum, f) => sum + items(f), 0) < n) {
      if (Date.now() > deadline) throw new Error(`expected ${n} items, have ${JSON.stringify(client.frames)}`);
      await sleep(20);
    }
  };
  await Promise.all([received(alice1, 3), received(alice2, 3), received(bob, 2), received(ann, 2), received(ben, 2)]);

  const expected = {
    // alice, bob, carol, dave, eve
    user_hubs: { objects: 5, connections: 3, stored: 3 + 2 + 1 + 5 + 5, delivered: 3 * 2 + 2, dropped: 2 },
    rooms: { objects: 1, connections: 2, stored: 2, delivered: 2 * 2, dropped: 0 },
  };
  const stats = await statsUntil(
    herald,
    (s) =>
      JSON.stringify(s.user_hubs) === JSON.stringify(expected.user_hubs) &&
      JSON.stringify(s.rooms) === JSON.stringify(expected.rooms),
  );
  assert.deepEqual({ user_hubs: stats.user_hubs, rooms: stats.rooms }, expected);

  // Sockets closing are counted down (the close event wakes the object and it reports).
  await alice2.close();
  await ben.close();
  const after = await statsUntil(herald, (s) => s.user_hubs.connections === 2 && s.rooms.connections === 1);
  // Cumulative figures do not move when sockets close.
  assert.equal(after.user_hubs.delivered, expected.user_hubs.delivered);
  assert.equal(after.rooms.stored, expected.rooms.stored);
  for (const c of [alice1, bob, ann]) await c.close();
  await statsUntil(herald, (s) => s.user_hubs.connections === 0 && s.rooms.connections === 0);
});

test("GET /v1/stats takes only the admin key", async (t) => {
  const herald = await startHerald();
  t.after(() => herald.stop());
  const stats = (headers) => herald.request("/v1/stats", { headers });

  const missing = await stats({});
  assert.equal(missing.status, 401);
  assert.equal(missing.body.error.code, "missing_token");

  const wrong = await stats({ Authorization: `Bearer ${ADMIN_KEY}x` });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.body.error.code, "invalid_key");

  // Real credentials of other kinds are forbidden, not unauthenticated.
  const producer = await stats({ Authorization: `Bearer ${PUBLISH_KEY}` });
  assert.equal(producer.status, 403);
  assert.equal(producer.body.error.code, "forbidden");
  const user = await stats(auth("mallory", { scope: ["publish"] }));
  assert.equal(user.status, 403);
  assert.equal(user.body.error.code, "forbidden");

  const ok = await stats({ ...admin, Origin: ALLOWED_ORIGIN });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("access-control-allow-origin"), ALLOWED_ORIGIN);
  assert.deepEqual(Object.keys(ok.body).sort(), ["as_of", "broadcast", "rooms", "user_hubs"]);
  // The key never shows up in what the runtime logged.
  assert.ok(!herald.logs.some((l) => JSON.stringify(l).includes(ADMIN_KEY)));
});

test("without ADMIN_KEY, GET /v1/stats does not exist", async (t) => {
  const herald = await startHerald({ bindings: { ADMIN_KEY: "" } });
  t.after(() => herald.stop());
  const res = await herald.request("/v1/stats", { headers: admin });
  assert.equal(res.status, 404);
  assert.equal(res.body.error.code, "not_found");
  assert.match(res.body.error.message, /ADMIN_KEY/);
});

test("GET /openapi.json serves docs/openapi.json, publicly and with CORS", async (t) => {
  const herald = await startHerald();
  t.after(() => herald.stop());
  const res = await herald.request("/openapi.json", { headers: { Origin: ALLOWED_ORIGIN } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^application\/json/);
  assert.equal(res.headers.get("access-control-allow-origin"), ALLOWED_ORIGIN);
  const onDisk = JSON.parse(readFileSync(new URL("../docs/openapi.json", import.meta.url), "utf8"));
  assert.deepEqual(res.body, onDisk);
  assert.match(res.body.openapi, /^3\.1\./);
  assert.ok(res.body.paths["/v1/stats"].get);
});

// What Schemathesis found (scripts/schemathesis.sh), kept here as plain regressions.
test("regressions found by fuzzing the documented API", async (t) => {
  const herald = await startHerald();
  t.after(() => herald.stop());
  const user = "fuzzed";
  const json = { ...auth(user), "Content-Type": "application/json" };

  await t.test("an answer passed through from a hub carries CORS headers", async () => {
    const res = await herald.request("/v1/preferences", { headers: { ...auth(user), Origin: ALLOWED_ORIGIN } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.headers.get("access-control-allow-origin"), ALLOWED_ORIGIN);
  });

  await t.test("405 names the allowed methods; methods without a name are not GET", async () => {
    const trace = await herald.request("/healthz", { method: "DELETE" });
    assert.equal(trace.status, 405);
    assert.equal(trace.headers.get("allow"), "GET, HEAD, OPTIONS");
    const query = await herald.request("/healthz", { method: "QUERY" });
    assert.equal(query.status, 405);
    assert.equal(query.body.error.code, "method_not_allowed");
  });

  await t.test("a read of 100 ids is one statement within SQLite's 100 parameters", async () => {
    const ids = Array.from({ length: 100 }, (_, i) => `ntf_missing_${i}`);
    const res = await herald.request("/v1/notifications/read", { method: "POST", headers: json, body: { ids } });
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.equal(res.body.error.code, "unknown_id");
  });

  await t.test("a focus digest of more than 100 held items is released", async () => {
    const until = Date.now() + 3_600_000;
    const put = await herald.request("/v1/preferences", { method: "PUT", headers: json, body: { focus_until: until } });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const message = { to: { users: [user] }, event: "held.item" };
    for (let i = 0; i < 2; i++) await publish(herald, { messages: Array(75).fill(message) });
    const client = await herald.connect("/v1/connect", { headers: auth(user) });
    await client.next(ofType("welcome"));
    const off = await herald.request("/v1/preferences", { method: "PUT", headers: json, body: {} });
    assert.equal(off.status, 200, JSON.stringify(off.body));
    // Released one slice of the inbox (100 items) at a time, so in two batch frames.
    const digests = await client.nth((f) => f.type === "batch" && f.reason === "focus_end", 2);
    const seqs = digests.flatMap((d) => d.items.map((n) => n.seq));
    assert.deepEqual(seqs, Array.from({ length: 150 }, (_, i) => seqs[0] + i));
    await client.close();
  });
});
