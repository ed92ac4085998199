// Project rooms in workerd: grants, presence, room publishes and resume, team inbox
// filing, client events with and without `rooms:write`, floods, and shard objects.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ofType, PUBLISH_KEY, startHerald, tokenFor } from "./harness.mjs";

let herald;
before(async () => {
  herald = await startHerald({ bindings: { ROOM_PRESENCE_GRACE_MS: "300" } });
});
after(() => herald.stop());

const token = (user, { rooms = ["project:*"], scope } = {}) =>
  tokenFor(user, { claims: { rooms, ...(scope ? { scope } : {}) } });

async function join(on, room, user, options = {}, query = "") {
  const client = await on.connect(`/v1/rooms/${room}/connect${query}`, {
    headers: { Authorization: `Bearer ${token(user, options)}` },
  });
  await client.next(ofType("welcome"));
  return client;
}

const presence = (action, user) => (f) => f.type === "presence" && f.action === action && f.user === user;

describe("rooms", { concurrency: true }, () => {
  test("a token that does not grant the room gets 403 before any upgrade; a bad name 400", async () => {
    for (const rooms of [[], ["projects:*"], ["project:4"]]) {
      const refused = await herald
        .connect("/v1/rooms/project:42/connect", { headers: { Authorization: `Bearer ${token("eve", { rooms })}` } })
        .catch((e) => e);
      assert.equal(refused.status, 403, JSON.stringify(rooms));
      assert.equal(refused.body.error.code, "room_not_granted");
    }
    const bad = await herald
      .connect("/v1/rooms/bad%2Fname/connect", { headers: { Authorization: `Bearer ${token("eve")}` } })
      .catch((e) => e);
    assert.equal(bad.status, 400);
  });

  test("two users see each other's presence, a room publish reaches both, and leaving is announced once", async () => {
    const room = "project:42";
    const ann = await join(herald, room, "ann");
    const bob = await join(herald, room, "bob");
    await ann.next(presence("joined", "bob"));
    const online = await bob.next((f) => f.type === "presence" && f.action === "online");
    assert.deepEqual(online.users, ["ann", "bob"]);
    const rest = await herald.request(`/v1/rooms/${room}/presence`, {
      headers: { Authorization: `Bearer ${token("ann")}` },
    });
    assert.deepEqual(rest.body.users, ["ann", "bob"]);

    const res = await herald.publish({ to: { room }, event: "task.updated", actor: "carol", title: "T7" });
    assert.equal(res.status, 202);
    for (const socket of [ann, bob]) {
      const n = await socket.next(ofType("notification"));
      assert.deepEqual([n.room, n.actor, n.seq], [room, "carol", res.body.seq]);
    }

    // A quick reconnect does not flap; a real departure is announced once.
    await bob.close();
    const again = await join(herald, room, "bob");
    await bob.closed;
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(ann.frames.filter(presence("left", "bob")).length, 0, "no flap on a quick reconnect");
    await again.close();
    await ann.next(presence("left", "bob"));
    assert.equal(ann.frames.filter(presence("joined", "bob")).length, 1);
    await ann.close();
  });

  test("a socket resuming with since gets the missed room events once, in order", async () => {
    const room = "project:resume";
    const first = await join(herald, room, "ria");
    const seqs = [];
    for (let i = 0; i < 5; i++) seqs.push((await herald.publish({ to: { room }, event: "e" })).body.seq);
    await first.nth(ofType("notification"), 5);
    const seen = first.frames.filter(ofType("notification")).map((n) => n.seq).slice(0, 2);
    await first.close();
    for (let i = 0; i < 3; i++) seqs.push((await herald.publish({ to: { room }, event: "e" })).body.seq);
    const back = await join(herald, room, "ria", {}, `?since=${seen.at(-1)}`);
    await back.next(ofType("synced"));
    const replayed = back.frames.filter(ofType("batch")).flatMap((b) => b.items.map((n) => n.seq));
    assert.deepEqual(replayed, seqs.slice(2));
    await back.close();
  });

  test("inbox:true files the notification in every member's inbox, once even on retry, offline members included", async () => {
    const room = "project:team";
    const put = await herald.request(`/v1/rooms/${room}/members`, {
      method: "PUT",
      headers: { Authorization: `Bearer ${PUBLISH_KEY}`, "Content-Type": "application/json" },
      body: { members: ["tia", "offline-otto"] },
    });
    assert.deepEqual([put.status, put.body.members], [200, ["offline-otto", "tia"]]);
    const forbidden = await herald.request(`/v1/rooms/${room}/members`, {
      headers: { Authorization: `Bearer ${token("tia")}` },
    });
    assert.equal(forbidden.status, 403, "members need the producer key (or the publish scope)");

    const tia = await herald.connect("/v1/connect", { headers: { Authorization: `Bearer ${tokenFor("tia")}` } });
    await tia.next(ofType("welcome"));
    const body = { to: { room }, event: "milestone.created", title: "M1", inbox: true, idempotency_key: "m1" };
    const first = await herald.publish(body);
    const retry = await herald.publish(body);
    assert.equal(first.status, 202);
    assert.deepEqual(first.body.inbox, { members: 2 });
    assert.deepEqual([retry.body.id, retry.body.duplicate], [first.body.id, true]);
    const live = await tia.next(ofType("notification"));
    assert.deepEqual([live.id, live.room], [first.body.id, room]);

    const otto = await herald.connect("/v1/connect?since=0", {
      headers: { Authorization: `Bearer ${tokenFor("offline-otto")}` },
    });
    await otto.next(ofType("synced"));
    const filed = otto.frames.filter(ofType("batch")).flatMap((b) => b.items);
    assert.deepEqual(filed.map((n) => [n.id, n.room]), [[first.body.id, room]]);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(tia.frames.filter(ofType("notification")).length, 1, "filed once");
    await Promise.all([tia.close(), otto.close()]);
  });

  test("client publish needs rooms:write; typing is relayed but not stored; a flood gets 4008", async () => {
    const room = "project:chat";
    const writer = await join(herald, room, "wes", { scope: "rooms:write" });
    const reader = await join(herald, room, "rae");
    reader.send({ type: "publish", event: "chat.message", body: "let me in" });
    assert.equal((await reader.next(ofType("error"))).code, "forbidden");
    writer.send({ type: "typing" });
    assert.equal((await reader.next(ofType("typing"))).user, "wes");
    writer.send({ type: "publish", event: "chat.message", body: "hello" });
    const message = await reader.next(ofType("message"));
    assert.deepEqual([message.actor, message.body, message.room], ["wes", "hello", room]);
    await writer.next(ofType("message"));
    assert.equal(reader.frames.filter(ofType("message")).length, 1, "the forbidden publish was not relayed");

    // History holds the message but not the typing.
    const late = await join(herald, room, "lou", {}, "?since=0");
    await late.next(ofType("synced"));
    const history = late.frames.filter(ofType("batch")).flatMap((b) => b.items);
    assert.deepEqual(history.map((n) => n.body), ["hello"]);

    const flooder = await join(herald, room, "flo", { scope: "rooms:write" });
    for (let i = 0; i < 60; i++) flooder.send({ type: "typing" });
    assert.equal((await flooder.closed).code, 4008);
    await Promise.all([writer.close(), reader.close(), late.close()]);
  });
});

test("with ROOM_SHARD_SIZE=3, ten sockets across shards each get every publish once, presence lists all, resume works on a shard", async (t) => {
  const sharded = await startHerald({ bindings: { ROOM_SHARD_SIZE: "3" } });
  t.after(() => sharded.stop());
  const room = "project:big";
  const users = Array.from({ length: 10 }, (_, i) => `u${i}`);
  const sockets = [];
  for (const user of users) sockets.push(await join(sharded, room, user, { scope: "rooms:write" }));

  const rest = await sharded.request(`/v1/rooms/${room}/presence`, {
    headers: { Authorization: `Bearer ${token("u0")}` },
  });
  assert.deepEqual(rest.body.users, [...users].sort());
  const online = await sockets[9].next((f) => f.type === "presence" && f.action === "online");
  assert.deepEqual(online.users, [...users].sort());
  // Joins on shards are announced to the root's sockets like any other.
  await sockets[0].next(presence("joined", "u9"));

  const published = await sharded.publish({ to: { room }, event: "task.created" });
  // A client event from a socket on a shard goes through the root to everyone.
  sockets[8].send({ type: "publish", event: "chat.message", body: "from a shard" });
  await Promise.all(sockets.map((s) => s.next(ofType("message"))));
  await new Promise((r) => setTimeout(r, 200));
  for (const socket of sockets) {
    const got = socket.frames.filter((f) => f.type === "notification" || f.type === "message");
    assert.deepEqual(got.map((f) => f.seq), [published.body.seq, published.body.seq + 1]);
  }

  const late = await join(sharded, room, "late", {}, "?since=0");
  await late.next(ofType("synced"));
  const replayed = late.frames.filter(ofType("batch")).flatMap((b) => b.items.map((n) => n.seq));
  assert.deepEqual(replayed, [1, 2]);
  const after = await sharded.publish({ to: { room }, event: "after" });
  assert.equal((await late.next(ofType("notification"))).seq, after.body.seq);
  await Promise.all([...sockets, late].map((s) => s.close()));
});
