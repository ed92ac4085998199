// Faults: what survives a crash of the runtime, a reconnect storm and a client that
// vanishes. workerd is killed with SIGKILL — the real process, mid-work — and Miniflare
// starts it again on the same on-disk state (`herald.crash()` in the harness). The
// assertions are the delivery promise, exactly: each publish answered 202 reaches each
// recipient once, in seq order, after a resume from the seq the client last received; and
// a socket whose client is gone stops holding a device slot.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { describe, test } from "node:test";
import { Herald } from "../client/dist/herald.js";
import { connect, freePort, ofType, startHerald, tokenFor } from "./harness.mjs";

const bearer = (user) => ({ Authorization: `Bearer ${tokenFor(user)}` });
/** [from, from + 1, …, to]. */
const range = (from, to) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
/** Every notification a raw client received, in arrival order: live ones and batch items. */
const received = (client) =>
  client.frames.flatMap((f) =>
    f?.type === "notification" ? [f] : f?.type === "batch" ? f.items : [],
  );

/** Resolves once `check()` holds, re-checking on every `events` the SDK emits. */
function until(sdk, events, check, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    if (check()) return resolve();
    const offs = events.map((event) => sdk.on(event, () => check() && done()));
    const timer = setTimeout(() => {
      offs.forEach((off) => off());
      reject(new Error(`timed out waiting on ${events.join("/")}`));
    }, timeoutMs);
    function done() {
      clearTimeout(timer);
      offs.forEach((off) => off());
      resolve();
    }
  });
}

/** `length` random base64 characters: text that WebSocket compression cannot shrink. */
const noise = (length) => randomBytes(Math.ceil((length * 3) / 4) + 3).toString("base64").slice(0, length);

/**
 * Fills a user's inbox with `count` items of about `bytes` each (data.n counts from 0),
 * `perRequest` per publish.
 */
async function fill(herald, user, count, bytes = 100, perRequest = 100) {
  for (let i = 0; i < count; i += perRequest) {
    const messages = range(i, Math.min(count, i + perRequest) - 1).map((n) => ({
      to: { users: [user] },
      event: "fill.item",
      body: noise(Math.min(4000, bytes)),
      data: { n, pad: noise(Math.max(0, bytes - 4000)) },
    }));
    const res = await herald.publish({ messages });
    assert.equal(res.status, 202, JSON.stringify(res.body));
  }
}

describe("faults", { concurrency: true }, () => {
  test("SIGKILL mid publish burst: every publish answered 202 reaches each recipient exactly once", async (t) => {
    // A fixed port, so that the SDK clients find the restarted runtime by themselves.
    const port = await freePort();
    const herald = await startHerald({ port });
    t.after(() => herald.stop());
    const users = range(0, 5).map((i) => `burst-${i}`);
    const sdkUsers = users.slice(0, 3);
    const rawUsers = users.slice(3);

    // Half the users read through the SDK (its own cursor, reconnect and dedupe), half
    // through raw sockets that resume with ?since themselves, so that a duplicate or a
    // gap the server sends cannot hide behind the SDK's dedupe.
    const sdks = new Map();
    for (const user of sdkUsers) {
      const sdk = new Herald({
        url: `http://127.0.0.1:${port}`,
        token: tokenFor(user),
        storage: null,
        backoff: { baseMs: 100, capMs: 500 },
        // Node 22's WebSocket (undici) fires only `error`, no `close`, when a connect is
        // refused while the runtime is down; the SDK then waits this long before retrying.
        pongTimeoutMs: 2000,
      });
      const delivered = [];
      sdk.on("notification", (n) => delivered.push(n));
      sdk.on("batch", ({ items }) => delivered.push(...items));
      t.after(() => sdk.close());
      sdk.connect();
      sdks.set(user, { sdk, delivered });
    }
    await Promise.all(
      [...sdks.values()].map(({ sdk }) => until(sdk, ["status"], () => sdk.status === "open")),
    );
    const raws = new Map();
    for (const user of rawUsers) {
      const client = await herald.connect("/v1/connect?since=0", { headers: bearer(user) });
      await client.next(ofType("synced"));
      raws.set(user, client);
    }

    // Up to 200 publishes, 20 in flight at a time, every fourth to three users at once; the
    // kill comes as the 100th answer arrives, with the others still on the wire.
    const TOTAL = 200;
    const LANES = 20;
    const KILL_AFTER = 100;
    const recipientsOf = (k) =>
      k % 4 === 0 ? [users[k % 6], users[(k + 1) % 6], users[(k + 3) % 6]] : [users[k % 6]];
    const answered = [];
    const failed = [];
    let issued = 0;
    let crashed;
    const pid = herald.pid(); // looked up now, so that the kill itself takes no time
    await Promise.all(
      Array.from({ length: LANES }, async () => {
        while (!crashed && issued < TOTAL) {
          const k = issued++;
          try {
            const to = { users: recipientsOf(k) };
            const res = await herald.publish({ to, event: "burst.item", data: { k } });
            if (res.status === 202) answered.push({ k, ...res.body });
            else failed.push({ k, status: res.status });
          } catch {
            failed.push({ k }); // cut by the kill: no answer, so no promise either way
          }
          if (answered.length >= KILL_AFTER && !crashed) crashed = herald.crash({ pid });
        }
      }),
    );
    await crashed;
    t.diagnostic(`issued ${issued}, answered 202: ${answered.length}, cut or failed: ${failed.length}`);
    assert.ok(answered.length >= KILL_AFTER);
    assert.ok(failed.length > 0, "the kill cut publishes in flight");

    // Raw clients resume from the last seq they received.
    const delivered = new Map([...sdks].map(([user, { delivered }]) => [user, delivered]));
    for (const [user, before] of raws) {
      await before.closed;
      const live = received(before);
      const since = live.at(-1)?.seq ?? 0;
      const after = await herald.connect(`/v1/connect?since=${since}`, { headers: bearer(user) });
      t.after(() => after.close());
      const synced = await after.next(ofType("synced"));
      const all = [...live, ...received(after)];
      assert.deepEqual(all.map((n) => n.seq), range(1, synced.seq), `${user}: every stored seq once, in order`);
      delivered.set(user, all);
    }
    // SDK clients have reconnected on their own; a publish after the restart arrives after
    // anything the resume replays, so once it is there, everything is.
    for (const [user, { sdk, delivered: list }] of sdks) {
      const res = await herald.publish({ to: { users: [user] }, event: "burst.after" });
      assert.equal(res.status, 202);
      const last = res.body.recipients[0].seq;
      await until(sdk, ["notification", "batch"], () => list.some((n) => n.seq === last));
      assert.deepEqual(list.map((n) => n.seq), range(1, last), `${user}: every stored seq once, in order`);
      list.pop(); // the barrier itself
    }

    for (const answer of answered) {
      for (const { user, seq } of answer.recipients) {
        const item = delivered.get(user).find((n) => n.seq === seq);
        assert.ok(item, `${user} seq ${seq} was answered 202 but never delivered`);
        assert.equal(item.id, answer.id);
        assert.equal(item.data.k, answer.k);
      }
    }
    // A publish cut by the kill may have been stored for some recipients; if so, once.
    let storedUnanswered = 0;
    for (const [user, list] of delivered) {
      const ks = list.map((n) => n.data.k);
      assert.equal(new Set(ks).size, ks.length, `${user}: no publish stored twice`);
      storedUnanswered += list.filter((n) => !answered.some((a) => a.k === n.data.k)).length;
    }
    t.diagnostic(`deliveries of publishes the kill left unanswered (stored anyway): ${storedUnanswered}`);
  });

  test("SIGKILL mid replay of 5,000 items: resuming from the last seq received completes it, each once, in order", async (t) => {
    const ITEMS = 5000;
    const herald = await startHerald({
      bindings: { INBOX_MAX_ITEMS: String(ITEMS), MAX_PUBLISH_BYTES: String(1 << 20) },
    });
    t.after(() => herald.stop());
    const user = "replay-rita";
    await fill(herald, user, ITEMS, 4000);

    // The reader takes the first 1,000 items, then stops reading: of the 20 MB replay
    // (random text, which compression cannot shrink) only a few MB more fit in the socket
    // buffers on either side, and the rest is still inside workerd when it dies.
    const first = await herald.connect("/v1/connect?since=0", { headers: bearer(user) });
    await new Promise((resolve) => {
      const check = () => {
        if (received(first).length < 1000) return;
        first.ws.pause();
        first.ws.off("message", check);
        resolve();
      };
      first.ws.on("message", check);
      check();
    });
    await herald.crash();
    first.ws.resume(); // take whatever made it out before the kill
    await first.closed;
    const got = received(first);
    const last = got.at(-1)?.seq ?? 0;
    t.diagnostic(`received ${got.length} of ${ITEMS} before the kill`);
    assert.ok(!first.frames.some(ofType("synced")), "the kill cut the replay short");
    assert.ok(last < ITEMS);
    assert.deepEqual(got.map((n) => n.seq), range(1, last), "what arrived is a gapless prefix");

    const second = await herald.connect(`/v1/connect?since=${last}`, { headers: bearer(user) });
    t.after(() => second.close());
    const synced = await second.next(ofType("synced"), { timeoutMs: 60_000 });
    assert.equal(synced.seq, ITEMS);
    const all = [...got, ...received(second)];
    assert.deepEqual(all.map((n) => n.seq), range(1, ITEMS), "every item once, in order");
    assert.ok(all.every((n) => n.data.n === n.seq - 1), "each seq carries its own item");
  });

  test("an alarm cut short by SIGKILL runs again after the restart and releases the held batch once", async (t) => {
    // Why this is the "alarm fails once and is retried" case: the runtime clears an alarm
    // only when a run of its handler completes; a run that does not (it threw, or the
    // process died under it) is run again — after a throw with backoff, after a crash as
    // soon as the runtime is back, since it is then overdue. Here the kill lands the moment
    // the handler starts (its first log line) while it loads and sends a 3 MB held batch.
    // What a run sends leaves only once the writes before it are committed (the output
    // gate), so the outcomes are:
    // - cut: the client got nothing, or the first slices only; the restarted runtime runs
    //   the alarm again, which releases what is still held (to nobody yet: the client
    //   resumes after what it has) — once; or the run had committed and the kill cut only
    //   its frames in flight, and nothing is left held to run again;
    // - finished first: the client got the whole window in `window` batches; a run after
    //   the restart, if any, finds nothing held and sends nothing.
    // Either way each held item arrives once and the next window holds only what is new.
    const HELD = 1500;
    const WINDOW_MS = 1000;
    const herald = await startHerald({
      bindings: {
        INBOX_MAX_ITEMS: String(HELD * 2),
        MAX_BATCH_MESSAGES: String(HELD),
        MAX_PUBLISH_BYTES: String(8 << 20),
      },
    });
    t.after(() => herald.stop());
    const user = "window-wanda";
    const setWindow = async (ms) => {
      const res = await herald.request("/v1/preferences", {
        method: "PUT",
        headers: { ...bearer(user), "Content-Type": "application/json" },
        body: { batch_window_ms: ms },
      });
      assert.equal(res.status, 200);
    };
    await setWindow(WINDOW_MS);
    const first = await herald.connect("/v1/connect", { headers: bearer(user) });
    await first.next(ofType("welcome"));
    // One publish of all of them: stored in one event, so all in one window however
    // slowly this machine runs. On a loaded machine the window's alarm may start before
    // the publish's answer is back: look for its line from before the publish.
    const beforeFill = herald.logs.length;
    await fill(herald, user, HELD, 2000, HELD);

    const pid = herald.pid();
    await herald.waitForLog((l) => l.event === "alarm", {
      after: beforeFill,
      timeoutMs: WINDOW_MS + 30_000,
    });
    const killedAt = herald.logs.length;
    await herald.crash({ pid });
    await first.closed;

    // What the run's sends let out before the kill: nothing, everything, or, when the
    // runtime committed the run's writes in parts under load, a prefix (seen once in a
    // loaded suite run). Each is a prefix of the window, each item once, in order; a
    // client resumes after what it has, like the SDK does.
    const live = first.frames.filter(ofType("batch"));
    const got = live.flatMap((b) => b.items.map((n) => n.seq));
    const cut = got.length < HELD;
    assert.ok(live.every((b) => b.reason === "window"), "only the window's batches before the kill");
    assert.deepEqual(got, range(1, got.length), "a prefix of the window, each once, in order");
    if (cut) {
      // The re-run, in the restarted runtime, before the client is back: unless the run
      // had committed and the kill only cut its frames in flight, which leaves nothing
      // held to run again. Either way the resume below must bring the rest, once.
      await herald
        .waitForLog((l) => l.event === "alarm", { after: killedAt, timeoutMs: 10_000 })
        .catch(() => null);
    }
    const since = got.length;
    const second = await herald.connect(`/v1/connect?since=${since}`, { headers: bearer(user) });
    t.after(() => second.close());
    await second.next(ofType("synced"));
    const resumed = received(second).map((n) => n.seq);
    assert.deepEqual(resumed, range(since + 1, HELD), "the resume brings what the client lacks");

    // A new item opens a new (short) window; its batch is the barrier after which nothing
    // of the old window can still be on its way, and it must hold the new item alone: had
    // the re-run not released the old items, they would be in it.
    await setWindow(200);
    const res = await herald.publish({ to: { users: [user] }, event: "window.after" });
    const fresh = res.body.recipients[0].seq;
    assert.equal(fresh, HELD + 1);
    const afterReplay = (f) => f?.type === "batch" && f.reason !== "replay";
    const closing = await second.next(afterReplay, { timeoutMs: 30_000 });
    assert.equal(closing.reason, "window");
    assert.deepEqual(closing.items.map((n) => n.seq), [fresh], "nothing of the old window came again");
    // Nothing else arrived on the new socket: no second batch of the old window.
    assert.deepEqual(second.frames.filter(afterReplay), [closing]);
    const reruns = herald.logs.slice(killedAt).filter((l) => l.event === "alarm").length - 1;
    t.diagnostic(
      cut
        ? `the kill cut the alarm's run after ${got.length} items; runs after the restart: ${reruns} (+1 for the new window)`
        : `the alarm's run finished before the kill; runs after the restart: ${reruns} (+1 for the new window)`,
    );
  });

  test("1,000 clients reconnecting at once after a restart are all back and resumed", async (t) => {
    const USERS = 100;
    const DEVICES = 10;
    raiseOpenFiles(4 * USERS * DEVICES);
    const herald = await startHerald();
    t.after(() => herald.stop());
    const users = range(0, USERS - 1).map((i) => `storm-${i}`);
    const toEveryone = (event) => herald.publish({ messages: users.map((u) => ({ to: { users: [u] }, event })) });
    assert.equal((await toEveryone("storm.one")).status, 202);

    const open = async (user, device, since) => {
      const client = await herald.connect(`/v1/connect?since=${since}&device=${device}`, {
        headers: bearer(user),
        timeoutMs: 60_000,
      });
      await client.next(ofType("synced"), { timeoutMs: 60_000 });
      return client;
    };
    const clients = [];
    for (let wave = 0; wave < DEVICES; wave++) {
      const device = `d${wave}`;
      const opened = users.map(async (user) => ({ user, device, first: await open(user, device, 0) }));
      clients.push(...(await Promise.all(opened)));
    }
    assert.equal(clients.length, USERS * DEVICES);
    // Half the devices go offline, then seq 2 is published: they will have to resume it.
    const offline = clients.filter((c) => Number(c.device.slice(1)) < DEVICES / 2);
    await Promise.all(offline.map((c) => c.first.close()));
    assert.equal((await toEveryone("storm.two")).status, 202);
    await herald.crash();
    await Promise.all(clients.map((c) => c.first.closed));

    // Everyone at once, each from its own last seq, while seq 3 is published.
    const started = performance.now();
    const [published] = await Promise.all([
      toEveryone("storm.three"),
      ...clients.map(async (c) => {
        c.since = received(c.first).at(-1).seq;
        c.second = await open(c.user, c.device, c.since);
        await c.second.next((f) => received({ frames: [f] }).some((n) => n.seq === 3), { timeoutMs: 60_000 });
      }),
    ]);
    const elapsed = performance.now() - started;
    assert.equal(published.status, 202);
    t.after(() => Promise.all(clients.map((c) => c.second.close())));
    const behind = clients.filter((c) => c.since === 1).length;
    t.diagnostic(`1,000 back in ${Math.round(elapsed)} ms; ${behind} had missed seq 2 and got it by resume`);
    assert.ok(behind >= offline.length);
    let resumed = 0;
    for (const c of clients) {
      const seqs = [...received(c.first), ...received(c.second)].map((n) => n.seq);
      assert.deepEqual(seqs, [1, 2, 3], `${c.user}/${c.device}`);
      resumed++;
    }
    assert.equal(resumed, USERS * DEVICES);
  });

  test("a client that vanishes without a close frame is swept and frees its device slot", async (t) => {
    const IDLE_MS = 1500;
    const herald = await startHerald({ bindings: { IDLE_TIMEOUT_MS: String(IDLE_MS), MAX_DEVICES: "1" } });
    t.after(() => herald.stop());

    // Its TCP connection is torn down (FIN, no close frame): the runtime tells the hub at once.
    const torn = await herald.connect("/v1/connect", { headers: bearer("torn-tom") });
    const tornSession = (await torn.next(ofType("welcome"))).session;
    torn.ws._socket.destroy();
    const gone = await herald.waitForLog(
      (l) => l.session === tornSession && (l.event === "close" || l.event === "error"),
      { timeoutMs: 10_000 },
    );
    t.diagnostic(`torn connection: ${JSON.stringify(gone)}`);
    const again = await herald.connect("/v1/connect", { headers: bearer("torn-tom") });
    await again.next(ofType("welcome"));
    await again.close();

    // Its network goes silent (no FIN, no close frame, nothing): only the idle sweep can tell.
    const hole = await blackHole(new URL(herald.url));
    t.after(() => hole.close());
    const silent = await hole.connect("/v1/connect", { headers: bearer("silent-sue") });
    const silentSession = (await silent.next(ofType("welcome"))).session;
    const vanished = Date.now();
    hole.vanish();
    const refused = await herald.connect("/v1/connect", { headers: bearer("silent-sue") });
    assert.equal((await refused.closed).code, 4009, "the silent socket still holds the only slot");
    const swept = await herald.waitForLog((l) => l.event === "close" && l.session === silentSession, {
      timeoutMs: IDLE_MS + 15_000,
    });
    const after = Date.now() - vanished;
    t.diagnostic(`silent connection swept ${after} ms after it went quiet (idle timeout ${IDLE_MS} ms)`);
    assert.equal(swept.code, 1001);
    assert.equal(swept.reason, "idle");
    assert.ok(after < IDLE_MS + 5000, "swept within the idle timeout plus alarm slack");
    const back = await herald.connect("/v1/connect", { headers: bearer("silent-sue") });
    await back.next(ofType("welcome"));
    await back.close();
  });
});

/**
 * A TCP relay in front of `target` whose `vanish()` makes every relayed connection go dark
 * the way a lost network does: nothing more crosses in either direction and no FIN is
 * sent to the server, which keeps a connection that is open but silent.
 */
async function blackHole(target) {
  const pairs = [];
  const server = createServer((down) => {
    const up = tcpConnect(Number(target.port), target.hostname);
    down.pipe(up);
    up.pipe(down);
    pairs.push({ down, up });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = new URL(`ws://127.0.0.1:${server.address().port}`);
  return {
    connect: (path, options) => connect(new URL(path, url), options),
    vanish() {
      for (const { down, up } of pairs) {
        down.unpipe(up);
        up.unpipe(down);
        up.pause();
        down.destroy();
      }
    },
    close() {
      for (const { up } of pairs) up.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Lifts this process's soft open-files limit (which workerd inherits) to fit `needed`. */
function raiseOpenFiles(needed) {
  const line = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
  const num = (v) => (v === "unlimited" ? Infinity : Number(v));
  const [soft, hard] = line ? [num(line[1]), num(line[2])] : [Infinity, Infinity];
  if (soft >= needed) return;
  assert.ok(hard >= needed, `${needed} open files needed, the hard limit is ${hard}`);
  execFileSync("prlimit", ["--pid", String(process.pid), `--nofile=${hard}:${hard}`], { stdio: "ignore" });
}
