// The durable inbox in workerd: resume without loss under churn, read state that agrees
// across devices, and bad input that changes nothing.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ofType, startHerald, tokenFor } from "./harness.mjs";

let herald;
before(async () => {
  herald = await startHerald();
});
after(() => herald.stop());

const auth = (user) => ({ Authorization: `Bearer ${tokenFor(user)}` });
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

function device(user, query = "") {
  return herald.connect(`/v1/connect${query}`, { headers: auth(user) });
}

async function publishTo(user, extra = {}) {
  const res = await herald.publish({ to: { users: [user] }, event: "task.updated", ...extra });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body;
}

/** Every item of `user`'s inbox, newest first, walking the `next_before` cursor. */
async function inbox(user, query = "") {
  const items = [];
  let cursor = "";
  for (;;) {
    const res = await herald.request(`/v1/notifications?limit=100${query}${cursor}`, { headers: auth(user) });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    items.push(...res.body.items);
    if (res.body.next_before === undefined) return { items, unread_count: res.body.unread_count };
    cursor = `&before=${res.body.next_before}`;
  }
}

/** A deterministic pseudo-random stream, so a failure can be replayed. */
function random(seed) {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

describe("inbox", { concurrency: true }, () => {
  test("2,000 notifications while a client reconnects with since 20+ times: every seq once, in order, no reset", async () => {
    const user = "churn";
    const total = 2000;
    const rand = random(42);
    const seen = [];
    let reconnects = 0;
    let published = 0;

    // A steady rate: one publish every 4 ms (250/s), each awaited.
    const publisher = (async () => {
      const start = Date.now();
      for (let i = 0; i < total; i++) {
        const wait = start + i * 4 - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        await publishTo(user, { title: `n${i + 1}` });
        published++;
      }
    })();

    const take = (frame) => {
      assert.notEqual(frame.type, "reset");
      if (frame.type === "batch") seen.push(...frame.items.map((n) => n.seq));
      if (frame.type === "notification") seen.push(frame.seq);
    };
    // Each round: connect with `since` = the last seq seen, take what arrives for a random
    // while, then drop the socket mid-stream without a closing handshake.
    while (seen.length < total) {
      const client = await device(user, `?since=${seen.at(-1) ?? 0}`);
      let taken = 0;
      let dropped = false;
      // Like the SDK, a dropped socket's late frames are ignored: the next resume covers them.
      const drain = () => {
        for (; !dropped && taken < client.frames.length; taken++) take(client.frames[taken]);
      };
      drain();
      const stayMs = published < total ? 20 + rand() * 300 : 30_000;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, stayMs);
        client.ws.on("message", () => {
          drain();
          if (seen.length >= total) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      dropped = true;
      client.ws.terminate();
      reconnects++;
    }
    await publisher;

    assert.ok(reconnects >= 20, `only ${reconnects} reconnects`);
    assert.deepEqual(seen, Array.from({ length: total }, (_, i) => i + 1));
  });

  test("three devices reading at random, by frame and by REST, all end with the true unread count", async () => {
    const user = "reader";
    const ids = [];
    for (let i = 0; i < 60; i++) ids.push((await publishTo(user)).id);
    const devices = await Promise.all([0, 1, 2].map((i) => device(user, `?device=d${i}`)));
    await Promise.all(devices.map((d) => d.next(ofType("welcome"))));
    const rand = random(7);
    const pick = () => ids[Math.floor(rand() * ids.length)];

    await Promise.all(
      devices.map(async (d, i) => {
        for (let op = 0; op < 15; op++) {
          const choice = rand();
          if (choice < 0.4) {
            d.send({ type: "read", ids: [pick(), pick()] });
          } else if (choice < 0.5) {
            d.send({ type: "read", up_to_seq: 1 + Math.floor(rand() * 20) });
          } else {
            const res = await herald.request("/v1/notifications/read", {
              method: "POST",
              headers: { ...auth(user), "Content-Type": "application/json" },
              body: { ids: [pick()] },
            });
            assert.equal(res.status, 200, JSON.stringify(res.body));
          }
          if (op % 5 === i) await new Promise((r) => setTimeout(r, 5));
        }
      }),
    );

    // A fetch answered on a socket comes after every frame sent to it before, so once each
    // device has its page, it has seen every read.
    await Promise.all(devices.map((d, i) => (d.send({ type: "fetch", limit: 1, ref: `end${i}` }), d.next((f) => f.ref === `end${i}`))));
    const unread = (await inbox(user, "&unread=true")).items.length;
    for (const d of devices) {
      const counts = d.frames.filter((f) => "unread_count" in f && f.type !== "page");
      assert.equal(counts.at(-1).unread_count, unread);
    }
    assert.ok(unread < 60, "some items were read");
    await Promise.all(devices.map((d) => d.close()));
  });

  test("bad input gets an error frame or a 400, keeps the socket, changes nothing, shows nobody else's data", async () => {
    const alice = "bad-alice";
    const bob = "bad-bob";
    const aliceIds = [];
    for (let i = 0; i < 3; i++) aliceIds.push((await publishTo(alice, { title: `secret ${i}` })).id);
    await publishTo(bob, { title: "bob's own" });
    const before = await inbox(alice);

    const socket = await device(bob);
    await socket.next(ofType("welcome"));
    const sends = [
      ["{not json", "bad_frame"],
      [{ type: "explode" }, "bad_frame"],
      [{ type: "read", ids: [aliceIds[0]] }, "unknown_id"],
      [{ type: "read" }, "bad_request"],
      [{ type: "fetch", limit: 10000 }, "bad_request"],
      [{ type: "ack", seq: 999 }, "bad_request"],
    ];
    for (const [frame, code] of sends) {
      socket.send(frame);
      const error = await socket.next((f) => f.type === "error" && !f.seen);
      error.seen = true;
      assert.equal(error.code, code, JSON.stringify(frame));
    }
    socket.send("ping");
    await socket.next((f) => f === "pong");

    const rest = [
      ["/v1/notifications?since=abc", "GET"],
      ["/v1/notifications?limit=10000", "GET"],
      ["/v1/notifications?after=x", "GET"],
    ];
    for (const [path, method] of rest) {
      const res = await herald.request(path, { method, headers: auth(bob) });
      assert.equal(res.status, 400, path);
      assert.equal(typeof res.body.error.message, "string");
    }
    const readOther = await herald.request("/v1/notifications/read", {
      method: "POST",
      headers: { ...auth(bob), "Content-Type": "application/json" },
      body: { ids: aliceIds },
    });
    assert.equal(readOther.status, 400);
    const deleteOther = await herald.request(`/v1/notifications/${aliceIds[1]}`, {
      method: "DELETE",
      headers: auth(bob),
    });
    assert.equal(deleteOther.status, 404);
    const malformed = await herald.request("/v1/notifications/read", {
      method: "POST",
      headers: { ...auth(bob), "Content-Type": "application/json" },
      body: "{",
    });
    assert.equal(malformed.status, 400);
    const refused = await device(bob, "?since=abc").catch((e) => e);
    assert.equal(refused.status, 400);

    assert.deepEqual(await inbox(alice), before, "alice's inbox is untouched");
    const bobs = await inbox(bob);
    assert.deepEqual(bobs.items.map((n) => n.title), ["bob's own"]);
    assert.ok(!JSON.stringify(socket.frames).includes("secret"), "bob never sees alice's items");
    await socket.close();
  });

  test("a cursor behind the retention window gets reset, never a silent gap", async () => {
    const small = await startHerald({ bindings: { INBOX_MAX_ITEMS: "5" } });
    try {
      for (let i = 0; i < 8; i++) {
        await small.publish({ to: { users: ["forgetful"] }, event: "e" });
      }
      const client = await small.connect("/v1/connect?since=1", { headers: auth("forgetful") });
      const reset = await client.next(ofType("reset"));
      assert.deepEqual([reset.oldest_seq, reset.latest_seq], [4, 8]);
      assert.equal((await client.next(ofType("synced"))).seq, 8);
      assert.equal(client.frames.filter(ofType("batch")).length, 0);
      client.send({ type: "resume", since: 3 });
      const replay = await client.next(ofType("batch"));
      assert.deepEqual(replay.items.map((n) => n.seq), [4, 5, 6, 7, 8]);
      await client.close();
    } finally {
      await small.stop();
    }
  });

  test("an idempotent repeat returns the original id and seq and delivers nothing new", async () => {
    const client = await device("idem");
    await client.next(ofType("welcome"));
    const first = await publishTo("idem", { idempotency_key: "order-17" });
    const again = await publishTo("idem", { idempotency_key: "order-17" });
    assert.equal(again.id, first.id);
    assert.deepEqual(again.recipients, [{ user: "idem", seq: first.recipients[0].seq, duplicate: true }]);
    await publishTo("idem", { event: "marker" });
    await client.next((f) => f.type === "notification" && f.event === "marker");
    assert.equal(client.frames.filter(ofType("notification")).length, 2);
    await client.close();
  });
});

// An inbox full of the largest items: what a resume or a digest must hold at once is one
// slice of it, so both complete (each frame under 256 KiB of content) instead of running
// the user's object out of memory.
test("a resume of 1,000 items of the maximum size and a focus digest of them both complete", { timeout: 120_000 }, async () => {
  const user = "hoarder";
  const json = { ...auth(user), "Content-Type": "application/json" };
  const focus = await herald.request("/v1/preferences", {
    method: "PUT",
    headers: json,
    body: { focus_until: Date.now() + 3_600_000 },
  });
  assert.equal(focus.status, 200, JSON.stringify(focus.body));
  // Stored size counts event, title, body, data (as JSON) and actor: exactly 16 KiB here.
  const event = "big.item";
  const data = { blob: "x".repeat(16 * 1024 - event.length - '{"blob":""}'.length) };
  const perRequest = 15; // what fits in one 256 KiB body
  for (let sent = 0; sent < 1_000; sent += perRequest) {
    const count = Math.min(perRequest, 1_000 - sent);
    const res = await herald.publish({ messages: Array(count).fill({ to: { users: [user] }, event, data }) });
    assert.equal(res.status, 202, JSON.stringify(res.body).slice(0, 300));
  }

  const live = await device(user);
  await live.next(ofType("welcome"));
  const resumed = await device(user, "?since=0");
  await resumed.next(ofType("synced"), { timeoutMs: 60_000 });
  const replayed = resumed.frames.filter(ofType("batch"));
  assert.deepEqual(replayed.flatMap((b) => b.items.map((n) => n.seq)), range(1, 1_000));
  for (const batch of replayed) {
    const content = batch.items.reduce((sum, n) => sum + JSON.stringify(n.data).length + n.event.length, 0);
    assert.ok(content <= 256 * 1024, `a replay batch carries ${content} bytes`);
  }

  const off = await herald.request("/v1/preferences", { method: "PUT", headers: json, body: {} });
  assert.equal(off.status, 200, JSON.stringify(off.body));
  const seqs = [];
  const digests = (f) => f.type === "batch" && f.reason === "focus_end";
  for (let frames = 1; seqs.length < 1_000; frames++) {
    const digest = (await live.nth(digests, frames, { timeoutMs: 60_000 }))[frames - 1];
    seqs.push(...digest.items.map((n) => n.seq));
  }
  assert.deepEqual(seqs, range(1, 1_000));
  // The device that resumed had them all in its replay, so the digest skips it (a pong
  // comes after anything sent to it before).
  await live.close();
  resumed.send("ping");
  await resumed.next((f) => f === "pong");
  assert.equal(resumed.frames.filter(digests).length, 0);
  await resumed.close();
});
