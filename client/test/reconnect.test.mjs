// Backoff, jitter, close codes and token refresh.

import assert from "node:assert/strict";
import test from "node:test";

import { accept, settle, start } from "./fakes.mjs";

// Pings would need pongs; these tests are about closes, so heartbeats stay out of the way.
const quiet = { pingIntervalMs: 3_600_000 };

/** Fails the current socket and returns the wait before the next try, in whole seconds. */
async function failAndWait({ clock, net }, code = 1006) {
  net.last.serverClose(code);
  const [wait] = clock.pending();
  clock.advance(wait);
  await settle();
  return Math.round(wait / 1000);
}

test("backoff doubles per failed try and stops at the cap", async () => {
  const ctx = await start(quiet);
  const waits = [];
  for (let i = 0; i < 7; i++) waits.push(await failAndWait(ctx));
  assert.deepEqual(waits, [1, 2, 4, 8, 16, 30, 30]);
  assert.equal(ctx.net.sockets.length, 8);
  assert.deepEqual(ctx.statuses, ["connecting", "reconnecting"]);
});

test("full jitter: the wait is random() times the ceiling", async () => {
  const zero = await start({ ...quiet, random: () => 0 });
  zero.net.last.serverClose(1006);
  assert.deepEqual(zero.clock.pending(), [0]);

  const half = await start({ ...quiet, random: () => 0.5 });
  const waits = [];
  for (let i = 0; i < 3; i++) {
    half.net.last.serverClose(1011);
    waits.push(half.clock.pending()[0]);
    half.clock.advance(waits.at(-1));
    await settle();
  }
  assert.deepEqual(waits, [500, 1000, 2000]);
});

test("a connection open for a minute resets the backoff; a shorter one does not", async () => {
  const ctx = await start({ ...quiet, random: () => 0.5 });
  await failAndWait(ctx); // 0.5 s
  await failAndWait(ctx); // 1 s

  accept(ctx.net.last);
  ctx.clock.advance(59_000);
  ctx.net.last.serverClose(1006);
  assert.equal(ctx.clock.pending()[0], 2000, "third failure: ceiling 4 s");
  ctx.clock.advance(2000);
  await settle();

  accept(ctx.net.last);
  ctx.clock.advance(60_000);
  ctx.net.last.serverClose(1006);
  assert.equal(ctx.clock.pending()[0], 500, "after a stable minute: back to 1 s");
});

test("4003 and other 40xx codes stop for good, with an error", async () => {
  for (const code of [4003, 4008, 4009]) {
    const { clock, net, herald, errors } = await start(quiet);
    accept(net.last);
    net.last.serverClose(code);
    assert.equal(herald.status, "closed");
    assert.deepEqual(clock.pending(), []);
    assert.equal(errors[0].code, "closed");
    assert.equal(errors[0].closeCode, code);
    clock.advance(600_000);
    await settle();
    assert.equal(net.sockets.length, 1);
  }
});

test("4001 gets a fresh token from getToken and reconnects at once", async () => {
  const tokens = ["first", "second"];
  const { clock, net, herald } = await start({ ...quiet, token: undefined, getToken: async () => tokens.shift() });
  assert.deepEqual(net.last.protocols, ["herald.v1", "bearer.first"]);
  accept(net.last);
  net.last.serverClose(4001);
  await settle();
  assert.equal(net.sockets.length, 2, "no backoff wait");
  assert.deepEqual(net.last.protocols, ["herald.v1", "bearer.second"]);
  assert.deepEqual(clock.pending(), [10_000], "only the handshake deadline, no backoff timer");
  accept(net.last);
  assert.equal(herald.status, "open");
});

test("4001 without getToken stops with a token_expired error", async () => {
  const { net, herald, errors, clock } = await start(quiet);
  accept(net.last);
  net.last.serverClose(4001);
  assert.equal(herald.status, "closed");
  assert.equal(errors[0].code, "token_expired");
  assert.deepEqual(clock.pending(), []);
});

test("getToken is called before every connect; a failing one is retried with backoff", async () => {
  let calls = 0;
  const getToken = async () => {
    calls += 1;
    if (calls === 2) throw new Error("auth server down");
    return `t${calls}`;
  };
  const { net, clock, errors } = await start({ ...quiet, token: undefined, getToken });
  net.last.serverClose(1006);
  clock.advance(clock.pending()[0]);
  await settle();
  assert.equal(errors[0].code, "token_unavailable");
  assert.equal(net.sockets.length, 1);
  clock.advance(clock.pending()[0]);
  await settle();
  assert.deepEqual(net.last.protocols, ["herald.v1", "bearer.t3"]);
});

test("server-side 1000, 1001, 1011 and 41xx reconnect with backoff", async () => {
  for (const code of [1000, 1001, 1011, 4100]) {
    const { net, clock, herald } = await start(quiet);
    accept(net.last);
    net.last.serverClose(code);
    assert.equal(herald.status, "reconnecting");
    assert.equal(clock.pending().length, 1);
  }
});

test("close() closes with 1000 and never reconnects", async () => {
  const { net, clock, herald, statuses } = await start();
  accept(net.last);
  herald.close();
  assert.equal(net.last.closeCode, 1000);
  assert.equal(herald.status, "closed");
  assert.deepEqual(clock.pending(), []);
  net.last.serverClose(1000); // the close handshake finishing: ignored
  clock.advance(600_000);
  await settle();
  assert.equal(net.sockets.length, 1);
  assert.deepEqual(statuses, ["connecting", "open", "closed"]);
});

test("close() while waiting for a token abandons that connect", async () => {
  let release;
  const getToken = () => new Promise((resolve) => (release = resolve));
  const { net, herald } = await start({ token: undefined, getToken });
  herald.close();
  release("late");
  await settle();
  assert.equal(net.sockets.length, 0);
});

test("an error without a close event still reconnects with backoff, once", async () => {
  const ctx = await start(quiet);
  const failed = ctx.net.last;
  failed.fail();
  failed.serverClose(1006); // a browser's close after the error: already handled
  assert.deepEqual(ctx.clock.pending().length, 1);
  ctx.clock.advance(ctx.clock.pending()[0]);
  await settle();
  assert.equal(ctx.net.sockets.length, 2);
  assert.deepEqual(ctx.statuses, ["connecting", "reconnecting"]);
});
