// The resume cursor: since=, dedupe, reset and storage.

import assert from "node:assert/strict";
import test from "node:test";

import { accept, collect, item, jwtFor, live, memoryStorage, settle, start } from "./fakes.mjs";

const seqs = (items) => items.map((i) => i.seq);
const ALICE = jwtFor("alice");
/** Where alice's cursor for the test server is kept. */
const KEY = "herald:seq:wss://herald.test:alice";

async function reconnect({ net, clock }) {
  net.last.serverClose(1006);
  clock.advance(clock.pending()[0]);
  await settle();
  return net.last;
}

test("the first connect sends no since; a reconnect sends the last delivered seq", async () => {
  const ctx = await start();
  assert.equal(ctx.net.last.since, null);
  accept(ctx.net.last, 41);
  ctx.net.last.deliver(live(42), live(43));
  assert.equal((await reconnect(ctx)).since, "43");
});

test("with nothing delivered yet, the reconnect resumes from the welcome's seq", async () => {
  const ctx = await start();
  accept(ctx.net.last, 41);
  assert.equal((await reconnect(ctx)).since, "41");
});

test("an overlapping replay delivers only what is new, in seq order", async () => {
  const ctx = await start();
  const notifications = collect(ctx.herald, "notification");
  const batches = collect(ctx.herald, "batch");
  accept(ctx.net.last);
  ctx.net.last.deliver(live(1), live(2), live(3));

  const socket = await reconnect(ctx);
  assert.equal(socket.since, "3");
  accept(socket, 5);
  socket.deliver(
    { type: "batch", reason: "replay", items: [item(2), item(3), item(5), item(4)] },
    { type: "synced", seq: 5 },
    live(5),
    live(3),
    live(6),
  );

  assert.deepEqual(batches.length, 1);
  assert.equal(batches[0].reason, "replay");
  assert.deepEqual(seqs(batches[0].items), [4, 5]);
  assert.deepEqual(seqs(notifications), [1, 2, 3, 6]);
  assert.equal(notifications[0].type, undefined, "payloads carry no frame tag");
  assert.equal((await reconnect(ctx)).since, "6");
});

test("a batch made only of duplicates emits nothing", async () => {
  const ctx = await start();
  const batches = collect(ctx.herald, "batch");
  accept(ctx.net.last);
  ctx.net.last.deliver(live(1), { type: "batch", reason: "replay", items: [item(1)] });
  assert.deepEqual(batches, []);
});

test("held items with lower seqs than an urgent one are still delivered", async () => {
  const ctx = await start();
  const batches = collect(ctx.herald, "batch");
  accept(ctx.net.last, 7);
  ctx.net.last.deliver(live(10, { priority: "urgent" }));
  ctx.net.last.deliver({ type: "batch", reason: "window", items: [item(8), item(9)] });
  ctx.net.last.deliver({ type: "batch", reason: "window", items: [item(8), item(9), item(10)] });
  assert.deepEqual(batches.map((b) => seqs(b.items)), [[8, 9]]);
});

test("reset refetches the newest page, emits it, and moves the cursor", async () => {
  const ctx = await start({ token: ALICE, storage: memoryStorage({ [KEY]: "12" }) });
  const resets = collect(ctx.herald, "reset");
  const notifications = collect(ctx.herald, "notification");
  const socket = ctx.net.last;
  assert.equal(socket.since, "12");
  accept(socket, 300);
  socket.deliver({ type: "reset", oldest_seq: 200, latest_seq: 300 }, { type: "synced", seq: 300 });

  const [fetch] = socket.frames;
  assert.equal(fetch.type, "fetch");
  assert.equal(fetch.limit, 50);
  assert.equal(typeof fetch.ref, "string");
  const page = { items: [item(300), item(299)], unread_count: 2, latest_seq: 300, next_before: 299 };
  socket.deliver({ type: "page", ref: fetch.ref, ...page });
  await settle();

  assert.deepEqual(resets, [page]);
  socket.deliver(live(299), live(301));
  assert.deepEqual(seqs(notifications), [301], "items in the refetched page are not repeated");
  assert.equal((await reconnect(ctx)).since, "301");
});

test("the last seq is stored and resumed from after a reload", async () => {
  const storage = memoryStorage();
  const first = await start({ token: ALICE, storage });
  accept(first.net.last);
  first.net.last.deliver(live(1), { type: "batch", reason: "window", items: [item(2), item(3)] });
  assert.equal(storage.getItem(KEY), "3");
  first.herald.close();

  const second = await start({ token: ALICE, storage });
  const notifications = collect(second.herald, "notification");
  assert.equal(second.net.last.since, "3");
  accept(second.net.last, 4);
  second.net.last.deliver(live(3), live(4));
  assert.deepEqual(seqs(notifications), [4]);
  assert.equal(storage.getItem(KEY), "4");
});

test("a stored seq of 0 is sent; a corrupt one is ignored", async () => {
  assert.equal((await start({ token: ALICE, storage: memoryStorage({ [KEY]: "0" }) })).net.last.since, "0");
  assert.equal((await start({ token: ALICE, storage: memoryStorage({ [KEY]: "soon" }) })).net.last.since, null);
});

test("each user of a shared browser resumes from their own cursor, per server", async () => {
  const storage = memoryStorage({ [KEY]: "40", "herald:seq:wss://other.test:bob": "99" });
  const bob = await start({ token: jwtFor("bob"), storage });
  assert.equal(bob.net.last.since, null, "alice's cursor (and bob's on another server) is not bob's here");
  accept(bob.net.last, 2);
  bob.net.last.deliver(live(1), live(2));
  assert.equal(storage.getItem("herald:seq:wss://herald.test:bob"), "2");
  assert.equal(storage.getItem(KEY), "40", "alice's cursor is untouched");
  bob.herald.close();
  assert.equal((await start({ token: ALICE, storage })).net.last.since, "40");
});

test("a token for another user mid-session switches to that user's cursor", async () => {
  const tokens = [ALICE, jwtFor("bob")];
  const ctx = await start({ token: undefined, getToken: async () => tokens[0], storage: null });
  accept(ctx.net.last, 5);
  ctx.net.last.deliver(live(5));
  assert.equal((await reconnect(ctx)).since, "5");
  tokens.shift();
  assert.equal((await reconnect(ctx)).since, null, "bob never resumes from alice's seq");
});
