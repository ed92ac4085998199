// POST /v1/publish in workerd: live delivery to every device of each recipient and to
// nobody else, batches, heartbeats, and bad publishes that store nothing.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ALLOWED_ORIGIN, ofType, PUBLISH_KEY, startHerald, tokenFor } from "./harness.mjs";

let herald;
before(async () => {
  herald = await startHerald();
});
after(() => herald.stop());

async function device(user, name = "d") {
  const client = await herald.connect(`/v1/connect?device=${name}`, {
    headers: { Authorization: `Bearer ${tokenFor(user)}` },
  });
  client.welcome = await client.next(ofType("welcome"));
  return client;
}

/** The latest seq stored for `user`, as a fresh device's welcome frame reports it. */
async function latestSeq(user) {
  const probe = await device(user, "probe");
  await probe.close();
  return probe.welcome.seq;
}

describe("delivery", { concurrency: true }, () => {
  test("a publish to alice reaches both of her sockets and none of bob's", async () => {
    const [phone, laptop, bob] = await Promise.all([
      device("alice", "phone"),
      device("alice", "laptop"),
      device("bob"),
    ]);
    const res = await herald.publish({
      to: { users: ["alice"] },
      event: "task.updated",
      title: "Task 7 moved to Done",
      data: { task: 7 },
      priority: "high",
      actor: "carol",
    });
    assert.equal(res.status, 202);
    assert.equal(res.body.recipients[0].user, "alice");
    const seq = res.body.recipients[0].seq;
    for (const socket of [phone, laptop]) {
      const n = await socket.next(ofType("notification"));
      assert.deepEqual(
        { id: n.id, seq: n.seq, event: n.event, title: n.title, data: n.data, priority: n.priority, actor: n.actor },
        { id: res.body.id, seq, event: "task.updated", title: "Task 7 moved to Done", data: { task: 7 }, priority: "high", actor: "carol" },
      );
      assert.equal(typeof n.created_at, "number");
    }
    // Bob's hub is a different object: a later publish to him is the first thing he sees.
    const toBob = await herald.publish({ to: { users: ["bob"] }, event: "for.bob" });
    assert.equal(toBob.status, 202);
    const first = await bob.next(ofType("notification"));
    assert.equal(first.event, "for.bob");
    assert.equal(bob.frames.filter(ofType("notification")).length, 1);
    await Promise.all([phone, laptop, bob].map((c) => c.close()));
  });

  test("a batch publish to three users reaches each, in order, with per-user seqs", async () => {
    const users = ["batch-u1", "batch-u2", "batch-u3"];
    const sockets = await Promise.all(users.map((u) => device(u)));
    const res = await herald.publish({
      messages: [
        { to: { users }, event: "milestone.created", title: "M1" },
        { to: { users: ["batch-u2"] }, event: "task.assigned" },
      ],
    });
    assert.equal(res.status, 202);
    assert.equal(res.body.messages.length, 2);
    assert.deepEqual(
      res.body.messages[0].recipients.map((r) => [r.user, r.seq]),
      [["batch-u1", 1], ["batch-u2", 1], ["batch-u3", 1]],
    );
    assert.deepEqual(res.body.messages[1].recipients, [{ user: "batch-u2", seq: 2 }]);
    for (const socket of sockets) {
      const n = await socket.next(ofType("notification"));
      assert.equal(n.event, "milestone.created");
    }
    const [, second] = await sockets[1].nth(ofType("notification"), 2);
    assert.deepEqual([second.event, second.seq], ["task.assigned", 2]);
    await Promise.all(sockets.map((c) => c.close()));
  });

  test("ping gets pong; a JSON ping gets a pong frame; a bad frame gets an error and the socket stays", async () => {
    const client = await device("pinger");
    client.send("ping");
    await client.next((f) => f === "pong");
    client.send({ type: "ping" });
    await client.next(ofType("pong"));
    client.send("{not json");
    assert.equal((await client.next(ofType("error"))).code, "bad_frame");
    client.send("ping");
    await client.nth((f) => f === "pong", 2);
    await client.close();
  });

  test("a frame over 64 KiB closes the socket with 1009", async () => {
    const client = await device("big-frame");
    client.send(JSON.stringify({ type: "ping", pad: "x".repeat(70 * 1024) }));
    assert.equal((await client.closed).code, 1009);
  });
});

describe("bad publishes store nothing", { concurrency: true }, () => {
  const cases = {
    "body over 256 KiB": [
      { to: { users: ["bad-1"] }, event: "x", body: "y".repeat(300 * 1024) },
      {},
      413,
      "payload_too_large",
    ],
    "missing event": [{ to: { users: ["bad-2"] } }, {}, 400, "bad_request", /event/],
    "bad priority": [
      { to: { users: ["bad-3"] }, event: "x", priority: "asap" },
      {},
      400,
      "bad_request",
      /priority/,
    ],
    "bad third message in a batch": [
      {
        messages: [
          { to: { users: ["bad-4"] }, event: "ok" },
          { to: { users: ["bad-4"] }, event: "ok" },
          { to: { users: ["bad-4"] }, event: "not ok!" },
        ],
      },
      {},
      400,
      "bad_request",
      /messages\[2\]\.event/,
    ],
    "wrong publish key": [{ to: { users: ["bad-5"] }, event: "x" }, { key: "nope" }, 401, "invalid_key"],
    "a user token without publish scope": [
      { to: { users: ["bad-6"] }, event: "x" },
      { key: tokenFor("bad-6") },
      403,
      "forbidden",
    ],
  };
  for (const [name, [body, options, status, code, message]] of Object.entries(cases)) {
    test(name, async () => {
      const res = await herald.publish(body, options);
      assert.equal(res.status, status, JSON.stringify(res.body));
      assert.equal(res.body.error.code, code);
      if (message) assert.match(res.body.error.message, message);
      const user = (body.to ?? body.messages[0].to).users[0];
      assert.equal(await latestSeq(user), 0, "nothing was stored");
    });
  }

  test("invalid JSON is a 400", async () => {
    const res = await herald.request("/v1/publish", {
      method: "POST",
      headers: { Authorization: `Bearer ${PUBLISH_KEY}` },
      body: "{",
    });
    assert.equal(res.status, 400);
  });

  test("a user token with the publish scope may publish", async () => {
    const res = await herald.publish(
      { to: { users: ["scoped-target"] }, event: "x" },
      { key: tokenFor("service", { claims: { scope: "publish" } }) },
    );
    assert.equal(res.status, 202);
    assert.equal(await latestSeq("scoped-target"), 1);
  });
});

describe("HTTP surface", { concurrency: true }, () => {
  test("unknown route is a JSON 404, wrong method a JSON 405", async () => {
    const missing = await herald.request("/v1/nope");
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, "not_found");
    const wrong = await herald.request("/v1/publish");
    assert.equal(wrong.status, 405);
    assert.equal(wrong.body.error.code, "method_not_allowed");
  });

  test("healthz", async () => {
    const res = await herald.request("/healthz");
    assert.deepEqual([res.status, res.body.status], [200, "ok"]);
  });

  test("CORS preflight for an allowed origin, refusal for another", async () => {
    const ok = await herald.request("/v1/publish", {
      method: "OPTIONS",
      headers: { Origin: ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST" },
    });
    assert.equal(ok.status, 204);
    assert.equal(ok.headers.get("access-control-allow-origin"), ALLOWED_ORIGIN);
    assert.match(ok.headers.get("access-control-allow-headers"), /Authorization/);
    const bad = await herald.request("/v1/publish", {
      method: "OPTIONS",
      headers: { Origin: "https://evil.test" },
    });
    assert.equal(bad.status, 403);
  });
});

test("the dev token route does not exist outside dev mode", async () => {
  const res = await herald.request("/dev/token?user=alice");
  assert.equal(res.status, 404);
});

test("log lines are JSON and never carry the publish key", async () => {
  const res = await herald.publish({ to: { users: ["log-check"] }, event: "x" });
  assert.equal(res.status, 202);
  // A stored publish logs nothing (its cost is in every publish); a refused one does.
  const refused = await herald.request("/v1/publish", {
    method: "POST",
    headers: { Authorization: `Bearer ${PUBLISH_KEY}-wrong`, "Content-Type": "application/json" },
    body: JSON.stringify({ to: { users: ["log-check"] }, event: "x" }),
  });
  assert.equal(refused.status, 401);
  await herald.waitForLog((l) => l.event === "error" && l.path === "/v1/publish");
  assert.ok(!herald.logs.some((l) => l.event === "publish"));
  assert.ok(herald.logs.length > 0);
  assert.ok(!JSON.stringify(herald.logs).includes(PUBLISH_KEY));
});
