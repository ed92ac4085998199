// Room handles: their own socket and cursor, publish, typing and presence.

import assert from "node:assert/strict";
import test from "node:test";

import { accept, collect, item, settle, start } from "./fakes.mjs";

async function join(ctx, room = "project:42", options) {
  const handle = ctx.herald.joinRoom(room, options);
  await settle();
  return { handle, socket: ctx.net.last };
}

const roomWelcome = (seq) => ({ type: "welcome", user: "ann", room: "project:42", session: "s", seq, unread_count: 0, heartbeat_ms: 25000 });

test("a room opens its own socket with the same token", async () => {
  const ctx = await start();
  const { handle, socket } = await join(ctx);
  assert.equal(socket.url, "wss://herald.test/v1/rooms/project:42/connect");
  assert.deepEqual(socket.protocols, ["herald.v1", "bearer.tok"]);
  assert.equal(ctx.net.sockets.length, 2);
  assert.equal(handle.status, "connecting");
  assert.throws(() => ctx.herald.joinRoom("bad room"), /room name/);
});

test("publish and typing frames; typing is throttled and never queued", async () => {
  const ctx = await start();
  const { handle, socket } = await join(ctx);
  handle.typing(); // not open yet: dropped
  socket.open();
  handle.publish("chat.message", { body: "hi", data: { n: 1 } });
  handle.typing();
  handle.typing();
  ctx.clock.advance(2000);
  handle.typing();
  assert.deepEqual(socket.frames, [
    { type: "publish", event: "chat.message", body: "hi", data: { n: 1 } },
    { type: "typing" },
    { type: "typing" },
  ]);
});

test("presence is tracked from online, joined and left frames", async () => {
  const ctx = await start();
  const { handle, socket } = await join(ctx);
  const presence = collect(handle, "presence");
  const typing = collect(handle, "typing");
  socket.open();
  socket.deliver(
    roomWelcome(0),
    { type: "presence", action: "online", users: ["bob", "ann"] },
    { type: "presence", action: "joined", user: "carol" },
    { type: "presence", action: "left", user: "ann" },
    { type: "typing", user: "bob" },
  );
  assert.deepEqual(handle.presence(), ["bob", "carol"]);
  assert.equal(presence.length, 3);
  assert.deepEqual(presence[1], { action: "joined", user: "carol" });
  assert.deepEqual(typing, [{ user: "bob" }]);
});

test("joined and left frames may name several users at once", async () => {
  const ctx = await start();
  const { handle, socket } = await join(ctx);
  socket.open();
  socket.deliver(
    roomWelcome(0),
    { type: "presence", action: "online", users: ["ann"] },
    { type: "presence", action: "joined", users: ["bob", "carol", "dan"] },
    { type: "presence", action: "left", users: ["ann", "carol"] },
  );
  assert.deepEqual(handle.presence(), ["bob", "dan"]);
});

test("a room resumes from its own seq and drops duplicates", async () => {
  const ctx = await start({ pingIntervalMs: 3_600_000 });
  accept(ctx.net.sockets[0], 900);
  const { handle, socket } = await join(ctx, "project:42", { since: 5 });
  const messages = collect(handle, "message");
  const notifications = collect(handle, "notification");
  const batches = collect(handle, "batch");
  assert.equal(socket.since, "5");
  socket.open();
  socket.deliver(
    roomWelcome(8),
    { type: "batch", reason: "replay", items: [item(6), item(7)] },
    { type: "synced", seq: 7 },
    { type: "message", ...item(7) },
    { type: "message", ...item(8, { actor: "bob" }) },
    { type: "notification", ...item(9) },
  );
  assert.deepEqual(batches[0].items.map((i) => i.seq), [6, 7]);
  assert.deepEqual(messages.map((m) => m.seq), [8]);
  assert.deepEqual(notifications.map((n) => n.seq), [9]);

  socket.serverClose(1006);
  ctx.clock.advance(ctx.clock.pending()[0]);
  await settle();
  assert.equal(ctx.net.last.since, "9", "the room's seq, not the user's 900");
});

test("a room reset is reported so the app knows history was cut", async () => {
  const ctx = await start();
  const { handle, socket } = await join(ctx, "project:42", { since: 1 });
  const resets = collect(handle, "reset");
  socket.open();
  socket.deliver(roomWelcome(900), { type: "reset", oldest_seq: 400, latest_seq: 900 });
  assert.deepEqual(resets, [{ oldest_seq: 400, latest_seq: 900 }]);
});

test("leave() closes the room only; herald.close() leaves every room", async () => {
  const ctx = await start();
  accept(ctx.net.sockets[0]);
  const a = await join(ctx, "project:1");
  const b = await join(ctx, "project:2");
  a.socket.open();
  b.socket.open();
  a.handle.leave();
  assert.equal(a.socket.closeCode, 1000);
  assert.equal(a.handle.status, "closed");
  assert.equal(ctx.herald.status, "open");
  ctx.herald.close();
  assert.equal(b.socket.closeCode, 1000);
  assert.equal(b.handle.status, "closed");
});

test("rooms share the backoff and heartbeat machinery", async () => {
  const ctx = await start();
  const { handle, socket } = await join(ctx);
  const statuses = collect(handle, "status");
  socket.open();
  ctx.clock.advance(35_000); // main socket never opened; the room's ping goes unanswered
  assert.equal(socket.sent.filter((d) => d === "ping").length, 1);
  assert.notEqual(socket.closeCode, undefined);
  assert.deepEqual(statuses, ["open", "reconnecting"]);
});
