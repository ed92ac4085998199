// The privilege table (docs/api.md, "Who may do what") walked end to end: every route of
// the OpenAPI document, with every kind of credential, gets exactly the table's answer.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { ADMIN_KEY, PUBLISH_KEY, startHerald, tokenFor } from "./harness.mjs";

const ROOM = "walk:1";

/** Each route with the right it needs and a request it can act on. */
const ROUTES = [
  { method: "GET", path: "/healthz", right: "anyone" },
  { method: "GET", path: "/openapi.json", right: "anyone" },
  { method: "GET", path: "/dev/token", right: "anyone" },
  { method: "GET", path: "/demo", right: "anyone" },
  { method: "GET", path: "/demo/herald.js", right: "anyone" },
  { method: "GET", path: "/favicon.ico", right: "anyone" },
  { method: "GET", path: "/v1/connect", right: "user", upgrade: true },
  { method: "GET", path: "/v1/notifications", right: "user" },
  { method: "POST", path: "/v1/notifications/read", right: "user", body: { ids: [] } },
  { method: "DELETE", path: "/v1/notifications/ntf_walk", right: "user" },
  { method: "GET", path: "/v1/preferences", right: "user" },
  { method: "PUT", path: "/v1/preferences", right: "user", body: {} },
  { method: "POST", path: "/dev/publish", right: "user", body: { to: { users: ["walk-target"] }, event: "walk" } },
  { method: "GET", path: `/v1/rooms/${ROOM}/connect`, right: "room", upgrade: true },
  { method: "GET", path: `/v1/rooms/${ROOM}/presence`, right: "room" },
  { method: "GET", path: "/v1/broadcast/connect", right: "user", upgrade: true },
  { method: "POST", path: "/v1/publish", right: "publish", body: { to: { users: ["walk-target"] }, event: "walk" } },
  { method: "POST", path: "/v1/publish", right: "broadcast", body: { to: { broadcast: true }, event: "walk" } },
  { method: "GET", path: `/v1/rooms/${ROOM}/members`, right: "members" },
  { method: "PUT", path: `/v1/rooms/${ROOM}/members`, right: "members", body: { members: ["walk-member"] } },
  { method: "GET", path: "/v1/stats", right: "stats" },
];

const user = (scope) => tokenFor("walker", { claims: { rooms: ["walk:*"], ...(scope ? { scope } : {}) } });
/** The credentials, and the rights the table gives each. */
const CREDENTIALS = {
  nothing: { value: undefined, rights: [] },
  garbage: { value: "not-a-key-0123456789", rights: [] },
  "producer key": { value: PUBLISH_KEY, rights: ["publish", "members", "broadcast"] },
  "admin key": { value: ADMIN_KEY, rights: ["stats"] },
  "user token": { value: user(), rights: ["user", "room"] },
  "token with publish": { value: user("publish"), rights: ["user", "room", "publish"] },
  "token with members": { value: user("members"), rights: ["user", "room", "members"] },
  "token for other rooms": {
    value: tokenFor("walker", { claims: { rooms: ["other:*"], scope: "publish members" } }),
    rights: ["user", "publish", "members"],
  },
};

/** The answer the table gives `credential` on a route needing `right`: null when allowed. */
function refusal(name, right) {
  const { rights } = CREDENTIALS[name];
  if (right === "anyone" || rights.includes(right)) return null;
  if (name === "nothing") return [401, "missing_token"];
  if (name === "garbage") return [401, right === "user" || right === "room" ? "invalid_token" : "invalid_key"];
  if (right === "room" && name.startsWith("token")) return [403, "room_not_granted"];
  return [403, "forbidden"];
}

let herald;
before(async () => {
  herald = await startHerald({ bindings: { DEV_MODE: "true" } });
});
after(() => herald?.stop());

/** Sends `route` with `credential`: { status, code }. */
async function send(route, credential) {
  const headers = credential ? { Authorization: `Bearer ${credential}` } : {};
  if (route.upgrade) {
    return herald.connect(route.path, { headers }).then(
      async (client) => (await client.close(), { status: 101 }),
      (err) => {
        if (err.status === undefined) throw err;
        return { status: err.status, code: err.body?.error?.code };
      },
    );
  }
  const res = await herald.request(route.path, {
    method: route.method,
    headers: { ...headers, ...(route.body ? { "Content-Type": "application/json" } : {}) },
    body: route.body,
  });
  return { status: res.status, code: res.body?.error?.code };
}

test("the walk covers every route of the OpenAPI document", () => {
  const doc = JSON.parse(readFileSync(new URL("../docs/openapi.json", import.meta.url), "utf8"));
  const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.keys(ops)
      .filter((m) => ["get", "put", "post", "delete"].includes(m))
      .map((m) => `${m.toUpperCase()} ${path.replace("{room}", ROOM).replace("{id}", "ntf_walk")}`),
  );
  // A route may be walked more than once, for rights that depend on the body (broadcast).
  const walked = [...new Set(ROUTES.map((r) => `${r.method} ${r.path}`))];
  assert.deepEqual(walked.sort(), documented.sort());
});

for (const name of Object.keys(CREDENTIALS)) {
  test(`every route answers the ${name} as the table says`, async () => {
    for (const route of ROUTES) {
      const answer = await send(route, CREDENTIALS[name].value);
      const expected = refusal(name, route.right);
      const what = `${route.method} ${route.path} with the ${name}: ${JSON.stringify(answer)}`;
      if (expected) {
        assert.deepEqual([answer.status, answer.code], expected, what);
      } else {
        assert.ok(![401, 403].includes(answer.status) && answer.status < 500, what);
      }
    }
  });
}
