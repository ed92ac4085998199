// Options, URLs, client frames, pages and the unread count.

import assert from "node:assert/strict";
import test from "node:test";

import { Herald } from "../dist/herald.js";
import { accept, collect, fakeSockets, settle, start } from "./fakes.mjs";

test("the socket URL is derived from the http(s) base, keeping a path prefix", async () => {
  const plain = await start({ url: "http://localhost:8787" });
  assert.equal(plain.net.last.url, "ws://localhost:8787/v1/connect");
  const prefixed = await start({ url: "https://example.com/herald/", device: "laptop" });
  assert.equal(prefixed.net.last.url, "wss://example.com/herald/v1/connect?device=laptop");
  assert.deepEqual(prefixed.net.last.protocols, ["herald.v1", "bearer.tok"]);
});

test("the constructor refuses missing tokens and bad URLs", () => {
  const { FakeSocket } = fakeSockets();
  assert.throws(() => new Herald({ url: "https://x.test", WebSocket: FakeSocket }), /token/);
  assert.throws(() => new Herald({ url: "ftp://x.test", token: "t", WebSocket: FakeSocket }), /http/);
});

test("status goes connecting → open, and nothing happens before connect()", async () => {
  const { FakeSocket, sockets } = fakeSockets();
  const herald = new Herald({ url: "https://x.test", token: "t", WebSocket: FakeSocket, storage: null, events: null });
  await settle();
  assert.equal(herald.status, "closed");
  assert.equal(sockets.length, 0);
  herald.connect();
  assert.equal(herald.status, "connecting");
  await settle();
  accept(sockets[0]);
  assert.equal(herald.status, "open");
  herald.close();
});

test("read, ack and focus frames", async () => {
  const { net, herald } = await start();
  accept(net.last);
  const ids = Array.from({ length: 250 }, (_, i) => `ntf_${i}`);
  assert.equal(herald.markRead(ids), true);
  herald.markAllRead();
  herald.ack(12);
  herald.setFocus(1795498326894);
  herald.setFocus(null);
  const frames = net.last.frames;
  assert.deepEqual(frames.slice(0, 3).map((f) => f.ids.length), [100, 100, 50]);
  assert.deepEqual(frames.slice(3), [
    { type: "read", all: true },
    { type: "ack", seq: 12 },
    { type: "focus", on: true, until: 1795498326894 },
    { type: "focus", on: false },
  ]);
});

test("frames sent while disconnected wait for the next socket (bounded)", async () => {
  const { net, clock, herald } = await start();
  accept(net.last);
  net.last.serverClose(1006);
  assert.equal(herald.markRead(["ntf_1"]), true);
  for (let i = 0; i < 19; i++) herald.ack(i);
  assert.equal(herald.ack(99), false, "the outbox is full");
  clock.advance(clock.pending()[0]);
  await settle();
  net.last.open();
  assert.deepEqual(net.last.frames[0], { type: "read", ids: ["ntf_1"] });
  assert.equal(net.last.frames.length, 20);
});

test("fetchOlder sends a fetch with a unique ref and resolves with the matching page", async () => {
  const { net, herald } = await start();
  accept(net.last, 42, 3);
  const older = herald.fetchOlder({ before: 23, limit: 10 });
  const unread = herald.fetchOlder({ unread: true });
  const [first, second] = net.last.frames;
  assert.notEqual(first.ref, second.ref);
  assert.deepEqual({ ...first, ref: undefined }, { type: "fetch", before: 23, limit: 10, ref: undefined });
  assert.equal(second.unread, true);

  net.last.deliver({ type: "page", ref: second.ref, items: [], unread_count: 3, latest_seq: 42 });
  net.last.deliver({ type: "page", ref: "someone-else", items: [], unread_count: 3, latest_seq: 42 });
  net.last.deliver({ type: "page", ref: first.ref, items: [], unread_count: 3, latest_seq: 42, next_before: 13 });
  assert.deepEqual(await unread, { items: [], unread_count: 3, latest_seq: 42 });
  assert.deepEqual(await older, { items: [], unread_count: 3, latest_seq: 42, next_before: 13 });
});

test("fetchOlder rejects when the socket closes first, or when not connected", async () => {
  const { net, herald } = await start();
  await assert.rejects(herald.fetchOlder(), /not connected/);
  accept(net.last);
  const page = herald.fetchOlder();
  net.last.serverClose(1006);
  await assert.rejects(page, /closed/);
});

test("unread count follows welcome, unread_count, read and deleted frames", async () => {
  const { net, herald } = await start();
  const unread = collect(herald, "unread");
  const reads = collect(herald, "read");
  const deletions = collect(herald, "deleted");
  accept(net.last, 10, 3);
  net.last.deliver(
    { type: "unread_count", unread_count: 4 },
    { type: "unread_count", unread_count: 4 },
    { type: "read", ids: ["ntf_1", "ntf_2"], unread_count: 2 },
    { type: "deleted", id: "ntf_3", seq: 3, unread_count: 1 },
  );
  assert.deepEqual(unread, [3, 4, 2, 1], "emitted on change only");
  assert.equal(herald.unreadCount, 1);
  assert.deepEqual(reads, [{ ids: ["ntf_1", "ntf_2"], unread_count: 2 }]);
  assert.deepEqual(deletions, [{ id: "ntf_3", seq: 3, unread_count: 1 }]);
});

test("welcome, preferences and error frames reach their events without the type tag", async () => {
  const { net, herald, errors } = await start();
  const welcomes = collect(herald, "welcome");
  const preferences = collect(herald, "preferences");
  accept(net.last, 5);
  const prefs = { batch_window_ms: 0, focus_until: null, quiet_hours: null, muted_events: [], min_priority: "low" };
  net.last.deliver({ type: "preferences", ...prefs }, { type: "error", code: "unknown_id", message: "no ntf_9" });
  assert.equal(welcomes[0].seq, 5);
  assert.equal(welcomes[0].type, undefined);
  assert.deepEqual(preferences, [prefs]);
  assert.deepEqual(errors, [{ code: "unknown_id", message: "no ntf_9" }]);
});

test("on() returns an unsubscribe function; junk frames are ignored", async () => {
  const { net, herald } = await start();
  const seen = [];
  const off = herald.on("notification", (n) => seen.push(n.seq));
  accept(net.last);
  net.last.deliver("not json", "[1]", { type: "notification", id: "a", seq: 1, event: "e", created_at: 0 });
  off();
  net.last.deliver({ type: "notification", id: "b", seq: 2, event: "e", created_at: 0 });
  assert.deepEqual(seen, [1]);
});
