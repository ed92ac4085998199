// The broadcast room in workerd: a producer's `to: {"broadcast": true}` reaches every
// listener of /v1/broadcast/connect once, resumes with `since`, shards like a large room,
// shows nobody's presence, relays nothing a listener sends, and only the producer key
// may broadcast.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ADMIN_KEY, ofType, PUBLISH_KEY, startHerald, tokenFor } from "./harness.mjs";

const bearer = (user, claims = {}) => ({ Authorization: `Bearer ${tokenFor(user, { claims })}` });

async function listen(on, user, query = "") {
  const client = await on.connect(`/v1/broadcast/connect${query}`, { headers: bearer(user) });
  await client.next(ofType("welcome"));
  return client;
}

async function broadcast(on, event, extra = {}) {
  const res = await on.publish({ to: { broadcast: true }, event, ...extra });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body;
}

let herald;
before(async () => {
  herald = await startHerald({ bindings: { STATS_REPORT_MS: "100" } });
});
after(() => herald?.stop());

describe("broadcast", { concurrency: true }, () => {
  test("three users each get a broadcast once, with no grant needed and no presence shown", async () => {
    const users = ["bc-ann", "bc-bob", "bc-cat"];
    const sockets = [];
    for (const user of users) sockets.push(await listen(herald, user));
    const sent = await broadcast(herald, "system.maintenance", { title: "Down at 02:00", priority: "high" });
    assert.equal(sent.room, "broadcast");
    // The other tests here broadcast too, concurrently: count only this one's.
    const mine = (f) => f.type === "notification" && f.event === "system.maintenance";
    for (const socket of sockets) {
      const n = await socket.next(mine);
      assert.deepEqual([n.id, n.seq, n.event, n.room], [sent.id, sent.seq, "system.maintenance", "broadcast"]);
    }
    for (const socket of sockets) {
      // A pong comes after anything sent before it.
      socket.send({ type: "ping" });
      await socket.next(ofType("pong"));
      assert.equal(socket.frames.filter(mine).length, 1);
      assert.equal(socket.frames.filter(ofType("presence")).length, 0, "nobody is shown who listens");
    }
    await Promise.all(sockets.map((s) => s.close()));
  });

  test("a listener resuming with since gets what it missed, once, in order", async () => {
    const first = await listen(herald, "bc-resume");
    const before = await broadcast(herald, "release.shipped");
    await first.next((f) => f.type === "notification" && f.seq === before.seq);
    await first.close();
    const missed = [];
    for (let i = 0; i < 3; i++) missed.push((await broadcast(herald, "release.shipped")).seq);
    const again = await herald.connect(`/v1/broadcast/connect?since=${before.seq}`, { headers: bearer("bc-resume") });
    await again.next(ofType("synced"));
    const replayed = again.frames
      .flatMap((f) => (f.type === "batch" ? f.items : f.type === "notification" ? [f] : []))
      .map((n) => n.seq)
      .filter((seq) => seq > before.seq);
    // Other tests broadcast too: what this one sent is there once each, in order.
    assert.deepEqual(replayed.filter((seq) => missed.includes(seq)), missed);
    assert.equal(new Set(replayed).size, replayed.length, "nothing twice");
    await again.close();
  });

  test("a client publish or typing gets an error frame and nothing is relayed or stored", async () => {
    const writer = await listen(herald, "bc-writer");
    const reader = await listen(herald, "bc-reader");
    const { seq: latest } = writer.frames.find(ofType("welcome"));
    writer.send({ type: "publish", event: "chat.message", body: "hello everyone" });
    const refusal = await writer.next(ofType("error"));
    assert.equal(refusal.code, "forbidden");
    writer.send({ type: "typing" });
    await writer.nth(ofType("error"), 2);
    writer.send({ type: "ping" });
    await writer.next(ofType("pong"));
    reader.send({ type: "ping" });
    await reader.next(ofType("pong"));
    assert.equal(reader.frames.filter((f) => f.type === "message" || f.type === "typing").length, 0);
    // Nothing was stored: a resume from the welcome's seq holds only producers' broadcasts.
    const check = await herald.connect(`/v1/broadcast/connect?since=${latest}`, { headers: bearer("bc-writer") });
    await check.next(ofType("synced"));
    const items = check.frames.flatMap((f) => (f.type === "batch" ? f.items : f.type === "notification" ? [f] : []));
    assert.equal(items.filter((n) => n.actor === "bc-writer").length, 0);
    await Promise.all([writer.close(), reader.close(), check.close()]);
  });

  test("the broadcast room is not a room: no presence route, no room connect, no grant, no members", async () => {
    const everything = bearer("bc-eve", { rooms: ["*", "broadcast"], scope: "publish members rooms:write" });
    const presence = await herald.request("/v1/rooms/broadcast/presence", { headers: everything });
    assert.equal(presence.status, 400, JSON.stringify(presence.body));
    assert.match(presence.body.error.message, /reserved/);
    const connect = await herald.connect("/v1/rooms/broadcast/connect", { headers: everything }).catch((e) => e);
    assert.equal(connect.status, 400);
    const members = await herald.request("/v1/rooms/broadcast/members", {
      method: "PUT",
      headers: { Authorization: `Bearer ${PUBLISH_KEY}`, "Content-Type": "application/json" },
      body: JSON.stringify({ members: ["bc-eve"] }),
    });
    assert.equal(members.status, 400);
    const asRoom = await herald.publish({ to: { room: "broadcast" }, event: "e" });
    assert.equal(asRoom.status, 400);
    assert.match(asRoom.body.error.message, /^to\.room: .*reserved/);
    const filed = await herald.publish({ to: { broadcast: true }, event: "e", inbox: true });
    assert.equal(filed.status, 400);
  });

  test("a user token with the publish scope cannot broadcast, and stores nothing trying", async () => {
    const listener = await listen(herald, "bc-watch");
    const res = await herald.request("/v1/publish", {
      method: "POST",
      headers: { ...bearer("bc-publisher", { scope: "publish" }), "Content-Type": "application/json" },
      body: JSON.stringify({ messages: [{ to: { users: ["bc-watch"] }, event: "ok" }, { to: { broadcast: true }, event: "no" }] }),
    });
    assert.equal(res.status, 403, JSON.stringify(res.body));
    assert.equal(res.body.error.code, "forbidden");
    assert.match(res.body.error.message, /producer key/);
    listener.send({ type: "ping" });
    await listener.next(ofType("pong"));
    assert.equal(listener.frames.filter((f) => f.type === "notification" && f.event === "no").length, 0);
    await listener.close();
  });

  test("broadcast listeners and deliveries count in /v1/stats, apart from rooms", async () => {
    const listener = await listen(herald, "bc-counted");
    await broadcast(herald, "counted");
    await listener.next((f) => f.type === "notification" && f.event === "counted");
    const deadline = Date.now() + 30_000;
    let body;
    for (;;) {
      body = (await herald.request("/v1/stats", { headers: { Authorization: `Bearer ${ADMIN_KEY}` } })).body;
      if (body.broadcast?.connections >= 1 && body.broadcast.delivered >= 1) break;
      assert.ok(Date.now() < deadline, `stats never counted the broadcast: ${JSON.stringify(body)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(body.broadcast.stored >= 1);
    await listener.close();
  });
});

test("with ROOM_SHARD_SIZE=3, ten broadcast sockets each get every broadcast once", async (t) => {
  const sharded = await startHerald({ bindings: { ROOM_SHARD_SIZE: "3" } });
  t.after(() => sharded.stop());
  const sockets = [];
  for (let i = 0; i < 10; i++) sockets.push(await listen(sharded, `shard-listener-${i}`));
  const sent = [];
  for (let i = 0; i < 3; i++) sent.push((await broadcast(sharded, "system.notice")).seq);
  for (const socket of sockets) {
    await socket.nth(ofType("notification"), 3);
    socket.send({ type: "ping" });
    await socket.next(ofType("pong"));
    const seqs = socket.frames.flatMap((f) => (f.type === "batch" ? f.items : f.type === "notification" ? [f] : [])).map((n) => n.seq);
    assert.deepEqual(seqs, sent);
    assert.equal(socket.frames.filter(ofType("presence")).length, 0);
  }
  await Promise.all(sockets.map((s) => s.close()));
});
