// Room sockets held to the rules user sockets already follow, and the room's own rules:
// token expiry and idleness, MAX_DEVICES per user per room, the typing throttle, shards
// reused after churn, presence reconciled after a restart, `source` on history items, and
// refusals that leave nothing uncaught in the runtime's log. Each test runs its own Herald.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as joinPath } from "node:path";
import { test } from "node:test";
import { ofType, startHerald, tokenFor } from "./harness.mjs";

const roomToken = (user, { rooms = ["project:*"], scope, ttlS } = {}) =>
  tokenFor(user, { ...(ttlS === undefined ? {} : { ttlS }), claims: { rooms, ...(scope ? { scope } : {}) } });
const bearer = (token) => ({ Authorization: `Bearer ${token}` });

/** Rejects with `what` (and what the socket saw) unless `promise` settles within `ms`. */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Opens a room socket for `user` and waits for its welcome. */
async function join(on, room, user, options = {}, query = "") {
  const client = await openRoom(on, room, user, options, query);
  await client.next(ofType("welcome"), { timeoutMs: 10_000 });
  return client;
}

/** Opens a room socket without waiting for anything (it may be refused after the upgrade). */
function openRoom(on, room, user, options = {}, query = "") {
  return on.connect(`/v1/rooms/${room}/connect${query}`, { headers: bearer(roomToken(user, options)) });
}

/** Answers the heartbeat as the SDK does (the literal `ping`), so the idle sweep leaves it alone. */
function keepAlive(client, everyMs = 500) {
  const timer = setInterval(() => client.ws.readyState === 1 && client.send("ping"), everyMs);
  client.ws.once("close", () => clearInterval(timer));
  return client;
}

/**
 * One heartbeat, then silence: what a client whose network or tab went quiet looks like.
 * The one `ping` matters for the test only: workerd completes the close handshake of a
 * socket that never sent a frame (the client gets the close frame) but keeps its TCP
 * connection open until the client gives up, so `close` would fire 30 s late.
 */
function goSilent(client) {
  client.send("ping");
  return client;
}

/** Closes whatever is still open, ignoring sockets that are already gone. */
async function closeAll(clients) {
  await Promise.all(
    clients.map((c) => (c.ws.readyState === 1 ? within(c.close(), 5000, "close").catch(() => {}) : undefined)),
  );
}

/** Waits until a refused socket is closed; asserts it said `too_many_devices` and closed 4009. */
async function assertRefused(client, label) {
  const closed = await within(
    client.closed,
    8000,
    `${label}: expected a too_many_devices refusal and close 4009; frames ${JSON.stringify(client.frames)}`,
  );
  assert.equal(client.frames.find(ofType("welcome")), undefined, `${label}: a refused socket gets no welcome`);
  assert.equal(client.frames.find(ofType("error"))?.code, "too_many_devices", `${label}: ${JSON.stringify(client.frames)}`);
  assert.equal(closed.code, 4009, label);
}

/** Room items this socket got live: notifications and messages, alone or in a burst batch. */
const liveItems = (client) =>
  client.frames.flatMap((f) => {
    if (f?.type === "notification" || f?.type === "message") return [f];
    if (f?.type === "batch" && f.reason !== "replay") return f.items;
    return [];
  });

/** Reports what the runtime said went wrong (error lines, plain-text output) as diagnostics. */
function diagnose(t, herald) {
  if (!herald) return;
  const counts = {};
  for (const line of herald.logs) counts[line.event] = (counts[line.event] ?? 0) + 1;
  t.diagnostic(`log events: ${JSON.stringify(counts)}`);
  for (const line of herald.output) {
    const text = String(line);
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch {}
    if (!parsed || parsed.event === "error" || parsed.event === "close") t.diagnostic(`runtime: ${text.slice(0, 500)}`);
  }
}

async function presenceUsers(on, room, asUser = "observer") {
  const res = await on.request(`/v1/rooms/${room}/presence`, { headers: bearer(roomToken(asUser)) });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.users;
}

// Rule 1 (expiry): a room socket whose token's exp (plus the 60 s leeway) passes while it is
// open is closed with 4001, after an `error` frame `closing`, exactly as on /v1/connect.
test("rule 1: a room socket whose token expires is closed with 4001", async (t) => {
  const herald = await startHerald();
  try {
    // exp = now − 55 s: accepted thanks to the leeway, which runs out about 5 s from now.
    const client = await join(herald, "project:1", "expiring-eve", { ttlS: -55 });
    keepAlive(client);
    const closed = await within(client.closed, 15_000, `room socket not closed at token expiry; frames ${JSON.stringify(client.frames)}`);
    assert.equal(closed.code, 4001);
    assert.equal(client.frames.find(ofType("error"))?.code, "closing");
  } finally {
    diagnose(t, herald);
    await herald.stop();
  }
});

// Rule 1 (idleness, alone): with IDLE_TIMEOUT_MS=3000 the only socket of a room, which sends
// nothing at all, is closed with 1001 (`idle`).
test("rule 1: a lone silent room socket is closed with 1001 after IDLE_TIMEOUT_MS", async (t) => {
  const IDLE_MS = 3000;
  const herald = await startHerald({ bindings: { IDLE_TIMEOUT_MS: String(IDLE_MS) } });
  const sockets = [];
  try {
    const opened = Date.now();
    const silent = goSilent(await join(herald, "project:alone", "lonely-lee"));
    sockets.push(silent);
    const closed = await within(silent.closed, IDLE_MS + 9000, `silent room socket not closed; frames ${JSON.stringify(silent.frames)}`);
    assert.equal(closed.code, 1001);
    assert.ok(Date.now() - opened >= IDLE_MS - 100, "not closed before the idle timeout");
    t.diagnostic(`closed ${Date.now() - opened} ms after connecting`);
  } finally {
    diagnose(t, herald);
    await closeAll(sockets);
    await herald.stop();
  }
});

// Rule 1 (idleness): with IDLE_TIMEOUT_MS=3000 a room socket that sends nothing is closed
// with 1001, while one answering the heartbeat stays open and served.
test("rule 1: a silent room socket is closed with 1001 after IDLE_TIMEOUT_MS while a pinging one in the same room survives", async (t) => {
  const IDLE_MS = 3000;
  const herald = await startHerald({ bindings: { IDLE_TIMEOUT_MS: String(IDLE_MS) } });
  const sockets = [];
  try {
    const opened = Date.now();
    const silent = goSilent(await join(herald, "project:1", "silent-sid"));
    sockets.push(silent);
    const pinging = keepAlive(await join(herald, "project:1", "pinging-pia"));
    sockets.push(pinging);
    const closed = await within(silent.closed, IDLE_MS + 9000, `silent room socket not closed; frames ${JSON.stringify(silent.frames)}`);
    assert.equal(closed.code, 1001);
    assert.ok(Date.now() - opened >= IDLE_MS - 100, "not closed before the idle timeout");
    // Past the timeout again, the pinging socket is still open and still gets the room's events.
    await sleep(Math.max(0, opened + IDLE_MS + 1500 - Date.now()));
    assert.equal(pinging.ws.readyState, 1, "a socket answering the heartbeat is kept");
    const res = await herald.publish({ to: { room: "project:1" }, event: "still.here" });
    assert.equal(res.status, 202);
    await pinging.next((f) => f.type === "notification" && f.event === "still.here", { timeoutMs: 5000 });
  } finally {
    diagnose(t, herald);
    await closeAll(sockets);
    await herald.stop();
  }
});

// Rule 2: at most MAX_DEVICES sockets per user in one room; the next one gets an `error`
// `too_many_devices` and close 4009, while other users and the same user's other rooms are
// unaffected.
test("rule 2: the third socket of a user in a room with MAX_DEVICES=2 is refused with too_many_devices and 4009", async (t) => {
  const herald = await startHerald({ bindings: { MAX_DEVICES: "2" } });
  const sockets = [];
  try {
    sockets.push(await join(herald, "project:1", "alice"));
    sockets.push(await join(herald, "project:1", "alice"));
    const third = await openRoom(herald, "project:1", "alice");
    sockets.push(third);
    await assertRefused(third, "alice's third socket in project:1");
    // The two open sockets were not disturbed.
    assert.ok(sockets.slice(0, 2).every((s) => s.ws.readyState === 1));
    // Another user still joins the same room; the same user still joins another room.
    const bob = await join(herald, "project:1", "bob");
    sockets.push(bob);
    const elsewhere = await join(herald, "project:2", "alice");
    sockets.push(elsewhere);
    const res = await herald.publish({ to: { room: "project:1" }, event: "after.refusal" });
    assert.equal(res.status, 202);
    for (const s of [sockets[0], sockets[1], bob]) {
      await s.next((f) => f.type === "notification" && f.event === "after.refusal", { timeoutMs: 5000 });
    }
  } finally {
    diagnose(t, herald);
    await closeAll(sockets);
    await herald.stop();
  }
});

// Rule 3: typing notices are relayed to the other members at most once per user per 2 s; the
// rest are dropped silently (no error frame, the sender's socket stays open).
test("rule 3: five quick typing frames are relayed once; another is relayed after 2 s", async (t) => {
  const herald = await startHerald();
  const sockets = [];
  try {
    const room = "project:typing";
    const typist = await join(herald, room, "tara", { scope: "rooms:write" });
    const reader = await join(herald, room, "rex");
    sockets.push(typist, reader);
    const typing = (f) => f.type === "typing" && f.user === "tara";
    const sentAt = Date.now();
    for (let i = 0; i < 5; i++) typist.send({ type: "typing" });
    await reader.next(typing, { timeoutMs: 5000 });
    const firstRelayAt = Date.now();
    // Give any further relays of the five time to show up (still within the 2 s interval).
    await sleep(Math.max(0, sentAt + 1500 - Date.now()));
    assert.equal(reader.frames.filter(typing).length, 1, `relayed once: ${JSON.stringify(reader.frames)}`);
    assert.equal(typist.frames.filter(ofType("error")).length, 0, "dropped silently");
    assert.equal(typist.ws.readyState, 1, "the sender's socket stays open");

    // Two seconds after the first relay, a new typing frame is relayed again.
    await sleep(Math.max(0, firstRelayAt + 2100 - Date.now()));
    typist.send({ type: "typing" });
    await reader.nth(typing, 2, { timeoutMs: 5000 });
    await sleep(200);
    assert.equal(reader.frames.filter(typing).length, 2);
    assert.equal(typist.frames.filter(ofType("error")).length, 0);
  } finally {
    diagnose(t, herald);
    await closeAll(sockets);
    await herald.stop();
  }
});

// Rule 4: with ROOM_SHARD_SIZE=1 every socket past the first lives on a shard; after shards
// were filled and emptied (and retired, their numbers reused) four times, each open socket
// still gets every publish exactly once.
test("rule 4: after churn across shards, every open socket gets each publish exactly once", async (t) => {
  const herald = await startHerald({ bindings: { ROOM_SHARD_SIZE: "1", ROOM_PRESENCE_GRACE_MS: "100" } });
  const sockets = [];
  try {
    const room = "project:1";
    for (let round = 0; round < 4; round++) {
      const batch = [];
      for (let i = 0; i < 3; i++) batch.push(await join(herald, room, `r${round}u${i}`));
      sockets.push(...batch);
      await Promise.all(batch.map((s) => within(s.close(), 5000, `round ${round}: close`)));
      // The closes are processed once the room lists nobody any more.
      const deadline = Date.now() + 10_000;
      let users = await presenceUsers(herald, room);
      while (users.length > 0) {
        assert.ok(Date.now() < deadline, `round ${round}: still listed after closing: ${JSON.stringify(users)}`);
        await sleep(50);
        users = await presenceUsers(herald, room);
      }
    }
    const a = await join(herald, room, "fin-a");
    const b = await join(herald, room, "fin-b");
    sockets.push(a, b);
    const first = await herald.publish({ to: { room }, event: "x.y" });
    assert.equal(first.status, 202, JSON.stringify(first.body));
    const second = await herald.publish({ to: { room }, event: "x.y" });
    assert.equal(second.status, 202, JSON.stringify(second.body));
    const expected = [first.body.seq, second.body.seq];
    for (const [name, s] of [["fin-a", a], ["fin-b", b]]) {
      const deadline = Date.now() + 8000;
      while (!liveItems(s).some((n) => n.seq === second.body.seq)) {
        assert.ok(Date.now() < deadline, `${name} did not get seq ${second.body.seq}: ${JSON.stringify(s.frames)}`);
        await sleep(25);
      }
    }
    await sleep(300); // room for a doubled copy to show up
    for (const [name, s] of [["fin-a", a], ["fin-b", b]]) {
      assert.deepEqual(liveItems(s).map((n) => n.seq), expected, `${name}: each publish exactly once`);
    }
  } finally {
    diagnose(t, herald);
    await closeAll(sockets);
    await herald.stop();
  }
});

// Rule 5: presence is reconciled when sockets vanish without close events (a restart): a shard
// that stops confirming its sockets loses its users' presence within 2 × IDLE_TIMEOUT_MS, with
// `left` announced, and GET /v1/rooms/{room}/presence stops listing them.
test("rule 5: after a restart, a user whose shard socket died is no longer listed online", async (t) => {
  const IDLE_MS = 2000;
  const bindings = { ROOM_SHARD_SIZE: "1", IDLE_TIMEOUT_MS: String(IDLE_MS), ROOM_PRESENCE_GRACE_MS: "500" };
  const dir = mkdtempSync(joinPath(tmpdir(), "herald-room-rules-"));
  const room = "project:restart";
  let first;
  let stopped;
  let second;
  let carol;
  try {
    first = await startHerald({ persistDir: dir, bindings });
    const alice = keepAlive(await join(first, room, "alice"));
    const bob = keepAlive(await join(first, room, "bob"));
    await alice.next((f) => f.type === "presence" && f.action === "joined" && f.user === "bob", { timeoutMs: 5000 });
    assert.deepEqual(await presenceUsers(first, room), ["alice", "bob"]);
    const bobJoin = first.logs.find((l) => l.event === "room_join" && l.user === "bob");
    t.diagnostic(`bob's socket: ${JSON.stringify(bobJoin ?? "no room_join log line")}`);
    // Stopping the runtime kills the sockets; neither object sees a close event.
    stopped = first;
    first = undefined;
    await stopped.stop();
    await Promise.all([within(alice.closed, 5000, "alice's socket died"), within(bob.closed, 5000, "bob's socket died")]);

    second = await startHerald({ persistDir: dir, bindings });
    const joinedAt = Date.now();
    carol = keepAlive(await join(second, room, "carol"));
    const online = await carol.next((f) => f.type === "presence" && f.action === "online", { timeoutMs: 5000 });
    t.diagnostic(`carol's first online list after the restart: ${JSON.stringify(online.users)}`);
    const leftBob = (f) =>
      f.type === "presence" && f.action === "left" && (f.user === "bob" || (f.users ?? []).includes("bob"));
    if (online.users.includes("bob")) {
      await within(
        carol.next(leftBob, { timeoutMs: 2 * IDLE_MS + 8000 }),
        2 * IDLE_MS + 8000,
        `bob listed online after the restart and no left for him: ${JSON.stringify(carol.frames)}`,
      );
    }
    const deadline = joinedAt + 2 * IDLE_MS + 10_000;
    let users = await presenceUsers(second, room, "carol");
    while (users.includes("bob")) {
      assert.ok(Date.now() < deadline, `GET presence still lists bob: ${JSON.stringify(users)}`);
      await sleep(200);
      users = await presenceUsers(second, room, "carol");
    }
    assert.ok(users.includes("carol"), JSON.stringify(users));
    t.diagnostic(`bob unlisted ${Date.now() - joinedAt} ms after carol joined`);
  } finally {
    diagnose(t, first ?? stopped);
    diagnose(t, second);
    if (carol) await closeAll([carol]);
    if (first) await first.stop();
    if (second) await second.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

// Rule 6: room history items say who sent them: a producer's publish is `source:"producer"`
// (live `notification`), a member's client event `source:"member"` (live `message`), and a
// replay from `since=0` carries each item's `source`.
test("rule 6: room items carry source producer or member, live and in replay", async (t) => {
  const herald = await startHerald();
  const sockets = [];
  try {
    const room = "project:sources";
    const writer = await join(herald, room, "mia", { scope: "rooms:write" });
    const reader = await join(herald, room, "obi");
    sockets.push(writer, reader);

    const published = await herald.publish({ to: { room }, event: "task.updated", title: "T1" });
    assert.equal(published.status, 202, JSON.stringify(published.body));
    const notification = await reader.next(ofType("notification"));
    assert.equal(notification.seq, published.body.seq);
    assert.equal(notification.source, "producer", JSON.stringify(notification));

    writer.send({ type: "publish", event: "chat.message", body: "hi" });
    const message = await reader.next(ofType("message"));
    assert.deepEqual([message.actor, message.body], ["mia", "hi"]);
    assert.equal(message.source, "member", JSON.stringify(message));

    const late = await join(herald, room, "lou", {}, "?since=0");
    sockets.push(late);
    await late.next(ofType("synced"));
    const replayed = late.frames.filter(ofType("batch")).flatMap((b) => b.items);
    assert.deepEqual(
      replayed.map((n) => [n.seq, n.event, n.source]),
      [
        [notification.seq, "task.updated", "producer"],
        [message.seq, "chat.message", "member"],
      ],
    );
  } finally {
    diagnose(t, herald);
    await closeAll(sockets);
    await herald.stop();
  }
});

// Rule 7: refusing a socket (too_many_devices) leaves nothing uncaught in the runtime's log,
// on /v1/connect and in a room, whether the client finishes the close handshake or just goes
// away; every JSON log line parses.
test("rule 7: refused sockets leave no uncaught error or lost connection in the runtime's output", async (t) => {
  const herald = await startHerald({ bindings: { MAX_DEVICES: "1" } });
  const sockets = [];
  try {
    const device = await herald.connect("/v1/connect", { headers: bearer(tokenFor("alice")) });
    sockets.push(device);
    await device.next(ofType("welcome"));
    const refusedUser = await Promise.all(
      Array.from({ length: 20 }, () => herald.connect("/v1/connect", { headers: bearer(tokenFor("alice")) })),
    );
    sockets.push(...refusedUser);
    await Promise.all(refusedUser.map((c, i) => assertRefused(c, `/v1/connect refusal ${i}`)));

    const member = await join(herald, "project:7", "alice");
    sockets.push(member);
    const refusedRoom = await Promise.all(Array.from({ length: 10 }, () => openRoom(herald, "project:7", "alice")));
    sockets.push(...refusedRoom);
    await Promise.all(refusedRoom.map((c, i) => assertRefused(c, `room refusal ${i}`)));

    // Clients that go away abruptly (TCP torn down, no close handshake) once they read the
    // refusal, as a browser tab being closed does, on both kinds of socket.
    const abrupt = await Promise.all([
      ...Array.from({ length: 5 }, () => herald.connect("/v1/connect", { headers: bearer(tokenFor("alice")) })),
      ...Array.from({ length: 5 }, () => openRoom(herald, "project:7", "alice")),
    ]);
    sockets.push(...abrupt);
    await Promise.all(
      abrupt.map(async (c, i) => {
        const error = await c.next(ofType("error"), { timeoutMs: 8000 });
        assert.equal(error.code, "too_many_devices", `abrupt refusal ${i}`);
        c.ws.terminate();
        await within(c.closed, 5000, `abrupt refusal ${i}: close event`);
      }),
    );

    // Every close was seen; give the runtime a moment to print whatever the refusals cause.
    await sleep(1000);
    assert.equal(device.ws.readyState, 1);
    assert.equal(member.ws.readyState, 1);
    const bad = herald.output.filter((line) => /Uncaught|Network connection lost/.test(String(line)));
    assert.deepEqual(bad, [], "the runtime printed no uncaught error");
    for (const line of herald.output) {
      const text = String(line).trim();
      if (!text.startsWith("{")) continue;
      assert.doesNotThrow(() => JSON.parse(text), `a JSON log line that does not parse: ${text}`);
    }
  } finally {
    diagnose(t, herald);
    await closeAll(sockets);
    await herald.stop();
  }
});
