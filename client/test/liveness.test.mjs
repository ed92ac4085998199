// Heartbeat and browser online/offline events.

import assert from "node:assert/strict";
import test from "node:test";

import { accept, settle, start } from "./fakes.mjs";

const pings = (socket) => socket.sent.filter((data) => data === "ping").length;

test("pings every 25 s while open; answered pings keep the socket", async () => {
  const { net, clock, herald } = await start();
  accept(net.last);
  for (let i = 1; i <= 4; i++) {
    clock.advance(25_000);
    assert.equal(pings(net.last), i);
    net.last.deliver("pong");
  }
  clock.advance(20_000);
  assert.equal(herald.status, "open");
  assert.equal(net.last.closeCode, undefined);
});

test("no pong within 10 s: the socket is closed and a reconnect scheduled", async () => {
  const { net, clock, herald } = await start();
  accept(net.last);
  clock.advance(25_000);
  assert.equal(pings(net.last), 1);
  clock.advance(9_999);
  assert.equal(herald.status, "open");
  clock.advance(1);
  assert.notEqual(net.last.closeCode, undefined, "dead socket closed");
  assert.equal(herald.status, "reconnecting");
  assert.equal(clock.pending().length, 1, "only the retry timer is left");
  clock.advance(clock.pending()[0]);
  await settle();
  assert.equal(net.sockets.length, 2);
});

test("a handshake that never completes counts as a dead connection", async () => {
  const { net, clock, herald } = await start();
  clock.advance(10_000);
  assert.equal(net.last.closeCode, 1005);
  assert.equal(herald.status, "reconnecting");
  clock.advance(clock.pending()[0]);
  await settle();
  assert.equal(net.sockets.length, 2);
});

test("any frame counts as a sign of life", async () => {
  const { net, clock, herald } = await start();
  accept(net.last);
  clock.advance(30_000);
  net.last.deliver({ type: "unread_count", unread_count: 1 });
  clock.advance(10_000);
  assert.equal(herald.status, "open");
});

test("offline closes the socket and waits; online reconnects at once", async () => {
  const { net, clock, events, herald, statuses } = await start();
  accept(net.last);
  events.dispatchEvent(new Event("offline"));
  assert.equal(herald.status, "offline");
  assert.notEqual(net.last.closeCode, undefined);
  assert.deepEqual(clock.pending(), []);

  events.dispatchEvent(new Event("online"));
  await settle();
  assert.equal(net.sockets.length, 2);
  accept(net.last);
  assert.deepEqual(statuses, ["connecting", "open", "offline", "reconnecting", "open"]);
});

test("online cuts a backoff wait short, and is ignored while connected", async () => {
  const { net, clock, events } = await start({ pingIntervalMs: 3_600_000 });
  net.last.serverClose(1006);
  assert.equal(clock.pending().length, 1);
  events.dispatchEvent(new Event("online"));
  await settle();
  assert.equal(net.sockets.length, 2);
  assert.deepEqual(clock.pending(), [10_000], "no backoff wait left, only the handshake deadline");

  accept(net.last);
  events.dispatchEvent(new Event("online"));
  await settle();
  assert.equal(net.sockets.length, 2);
});

test("after close() online/offline events are ignored", async () => {
  const { net, events, herald } = await start();
  herald.close();
  events.dispatchEvent(new Event("online"));
  await settle();
  assert.equal(net.sockets.length, 1);
  assert.equal(herald.status, "closed");
});
