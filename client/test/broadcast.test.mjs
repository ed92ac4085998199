// The broadcast option: a second, read-only socket whose notices arrive as `broadcast`
// events, deduplicated and resumed from a cursor of their own.

import assert from "node:assert/strict";
import test from "node:test";

import { accept, collect, item, jwtFor, memoryStorage, settle, start } from "./fakes.mjs";

const broadcastWelcome = (seq) => ({ type: "welcome", user: "alice", room: "broadcast", session: "s", seq, unread_count: 0, heartbeat_ms: 25000 });
const notice = (seq) => ({ type: "notification", ...item(seq, { room: "broadcast", event: "system.notice" }) });

test("without the option there is one socket; with it a second one to /v1/broadcast/connect", async () => {
  assert.equal((await start()).net.sockets.length, 1);
  const ctx = await start({ broadcast: true });
  assert.deepEqual(
    ctx.net.sockets.map((s) => new URL(s.url).pathname),
    ["/v1/connect", "/v1/broadcast/connect"],
  );
  assert.deepEqual(ctx.net.sockets[1].protocols, ["herald.v1", "bearer.tok"]);
  ctx.herald.close();
  assert.deepEqual(ctx.net.sockets.map((s) => s.closeCode), [1000, 1000]);
});

test("broadcast notices are emitted as broadcast, once each, never as inbox notifications", async () => {
  const ctx = await start({ broadcast: true });
  const broadcasts = collect(ctx.herald, "broadcast");
  const inbox = collect(ctx.herald, "notification");
  const socket = ctx.net.sockets[1];
  socket.open();
  socket.deliver(
    broadcastWelcome(4),
    notice(5),
    { type: "batch", reason: "replay", items: [item(5), item(6)] },
    notice(6),
  );
  assert.deepEqual(broadcasts.map((n) => n.seq), [5, 6]);
  assert.equal(inbox.length, 0);
});

test("the broadcast cursor is kept per server and user, apart from the inbox's", async () => {
  const storage = memoryStorage({ "herald:seq:wss://herald.test:alice": "40" });
  const ctx = await start({ broadcast: true, token: jwtFor("alice"), storage });
  const [inbox, broadcast] = ctx.net.sockets;
  assert.equal(inbox.since, "40");
  assert.equal(broadcast.since, null, "the inbox's seq means nothing to the broadcast room");
  accept(inbox, 40);
  broadcast.open();
  broadcast.deliver(broadcastWelcome(2), notice(3));
  assert.equal(storage.getItem("herald:seq:wss://herald.test#broadcast:alice"), "3");
  assert.equal(storage.getItem("herald:seq:wss://herald.test:alice"), "40");
  // A reconnect resumes the broadcast socket from its own seq.
  broadcast.serverClose(1006);
  ctx.clock.advance(ctx.clock.pending()[0]);
  await settle();
  assert.equal(ctx.net.last.since, "3");
  assert.equal(new URL(ctx.net.last.url).pathname, "/v1/broadcast/connect");
});
