// GET /v1/connect in workerd: the three token transports, every rejection before the
// upgrade, origins, and the device limit.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { signJwt } from "./jwt.mjs";
import {
  ALLOWED_ORIGIN,
  AUDIENCE,
  ISSUER,
  JWT_SECRET,
  keys,
  ofType,
  startHerald,
  tokenFor,
} from "./harness.mjs";

let herald;
before(async () => {
  herald = await startHerald();
});
after(() => herald.stop());

const bearer = (token) => ({ headers: { Authorization: `Bearer ${token}` } });
const now = () => Math.floor(Date.now() / 1000);

describe("token transports", { concurrency: true }, () => {
  test("Authorization header", async () => {
    const client = await herald.connect("/v1/connect", bearer(tokenFor("t-header")));
    const welcome = await client.next(ofType("welcome"));
    assert.equal(welcome.user, "t-header");
    assert.equal(welcome.seq, 0);
    assert.equal(welcome.heartbeat_ms, 25000);
    await client.close();
  });

  test("subprotocol list herald.v1, bearer.<jwt> is answered with herald.v1 only", async () => {
    const client = await herald.connect("/v1/connect", {
      protocols: ["herald.v1", `bearer.${tokenFor("t-proto")}`],
    });
    assert.equal(client.protocol, "herald.v1");
    assert.equal((await client.next(ofType("welcome"))).user, "t-proto");
    await client.close();
  });

  test("?token= query parameter, with a device name", async () => {
    const client = await herald.connect(`/v1/connect?device=phone-1&token=${tokenFor("t-query")}`);
    const welcome = await client.next(ofType("welcome"));
    assert.equal(welcome.user, "t-query");
    assert.equal(welcome.device, "phone-1");
    await client.close();
  });

  for (const alg of ["RS256", "ES256", "EdDSA"]) {
    test(`${alg} token from the JWK set`, async () => {
      const client = await herald.connect("/v1/connect", bearer(tokenFor(`t-${alg}`, { alg })));
      assert.equal((await client.next(ofType("welcome"))).user, `t-${alg}`);
      await client.close();
    });
  }

  test("the token's log line never contains the token", async () => {
    const token = tokenFor("t-logs");
    const client = await herald.connect(`/v1/connect?token=${token}`);
    await client.next(ofType("welcome"));
    await client.close();
    assert.ok(!JSON.stringify(herald.logs).includes(token));
  });
});

/** Asserts that the upgrade is refused with `status` and a JSON error, never a socket. */
async function refused(path, options, status) {
  const err = await herald.connect(path, options).then(
    () => assert.fail("the upgrade should have been refused"),
    (e) => e,
  );
  assert.equal(err.status, status, JSON.stringify(err.body));
  assert.equal(typeof err.body.error.code, "string");
  return err.body.error;
}

describe("rejections before any upgrade", { concurrency: true }, () => {
  const claims = (extra) => ({ sub: "mallory", iss: ISSUER, aud: AUDIENCE, exp: now() + 600, ...extra });
  const hs = (extra, key = JWT_SECRET) => signJwt(claims(extra), { key });

  const cases = {
    "no token": [undefined, "missing_token"],
    expired: [hs({ exp: now() - 3600 }), "token_expired"],
    "not yet valid": [hs({ nbf: now() + 3600 }), "token_not_yet_valid"],
    "wrong issuer": [hs({ iss: "https://evil.test" }), "invalid_token"],
    "wrong audience": [hs({ aud: "someone-else" }), "invalid_token"],
    "bad signature": [hs({}, "not-the-secret"), "invalid_token"],
    "alg none": [signJwt(claims({}), { alg: "none" }), "invalid_token"],
    "alg NoNe": [signJwt(claims({}), { alg: "NoNe" }), "invalid_token"],
    "HS256 signed with the RS256 public key": [
      hs({}, keys.RS256.publicKey.export({ type: "spki", format: "pem" })),
      "invalid_token",
    ],
    "unknown kid": [
      signJwt(claims({}), { alg: "RS256", key: keys.RS256.privateKey, kid: "nope" }),
      "invalid_token",
    ],
    "missing sub": [hs({ sub: undefined }), "invalid_token"],
    garbage: ["not-a-jwt", "invalid_token"],
  };
  for (const [name, [token, code]] of Object.entries(cases)) {
    test(name, async () => {
      const options = token ? bearer(token) : {};
      const error = await refused("/v1/connect", options, 401);
      assert.equal(error.code, code);
    });
  }

  test("a disallowed Origin gets 403 even with a valid token", async () => {
    const error = await refused(
      "/v1/connect",
      { headers: { Authorization: `Bearer ${tokenFor("o-bad")}`, Origin: "https://evil.test" } },
      403,
    );
    assert.equal(error.code, "origin_not_allowed");
  });

  test("an allowed Origin connects", async () => {
    const client = await herald.connect("/v1/connect", {
      headers: { Authorization: `Bearer ${tokenFor("o-good")}`, Origin: ALLOWED_ORIGIN },
    });
    await client.next(ofType("welcome"));
    await client.close();
  });

  test("a bad device name gets 400", async () => {
    const error = await refused(`/v1/connect?device=${"x".repeat(65)}`, bearer(tokenFor("d-bad")), 400);
    assert.match(error.message, /device/);
  });

  test("a plain GET gets 426 as JSON", async () => {
    const res = await herald.request("/v1/connect", {
      headers: { Authorization: `Bearer ${tokenFor("plain")}` },
    });
    assert.equal(res.status, 426);
    assert.equal(res.body.error.code, "upgrade_required");
  });
});

test("the 17th device of one user is closed with 4009, the first 16 stay", async () => {
  const token = tokenFor("many-devices");
  const devices = [];
  for (let i = 0; i < 16; i++) {
    const client = await herald.connect(`/v1/connect?device=d${i}`, bearer(token));
    await client.next(ofType("welcome"));
    devices.push(client);
  }
  const extra = await herald.connect("/v1/connect?device=d16", bearer(token));
  const error = await extra.next(ofType("error"));
  assert.equal(error.code, "too_many_devices");
  assert.equal((await extra.closed).code, 4009);

  // The sixteen still receive what is published.
  const res = await herald.publish({ to: { users: ["many-devices"] }, event: "still.here" });
  assert.equal(res.status, 202);
  await Promise.all(devices.map((d) => d.next(ofType("notification"))));
  await Promise.all(devices.map((d) => d.close()));
});
