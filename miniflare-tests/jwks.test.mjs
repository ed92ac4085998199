// Keys from an identity provider's JWKS URL, served by a JWKS server of the test's own on
// 127.0.0.1 and signed with Node's crypto: first fetch, rotation, a flood of unknown kids,
// an outage, two issuers whose keys share a kid, and deployments that would accept too much.
import assert from "node:assert/strict";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { claimsFor, signJwt } from "./jwt.mjs";
import { AUDIENCE, startHerald } from "./harness.mjs";

/** How long Herald waits before it fetches a URL again for an unknown kid (60 s) plus a margin. */
const REFETCH_WAIT_MS = 61_000;
const IDP = "https://idp.example.test/";

/** A key pair with its public JWK. */
function keyPair(kid, type = "ec") {
  const pair = type === "ec" ? generateKeyPairSync("ec", { namedCurve: "P-256" }) : generateKeyPairSync(type);
  const alg = type === "ec" ? "ES256" : "EdDSA";
  return { kid, alg, ...pair, jwk: { ...pair.publicKey.export({ format: "jwk" }), kid, alg, use: "sig" } };
}

/** A JWKS server on a free loopback port: `keys` is what it serves, `fetches` counts GETs. */
async function jwksServer(t, keys) {
  const idp = { keys, extra: [], fetches: 0, down: false };
  const server = createServer((req, res) => {
    idp.fetches++;
    if (idp.down) {
      res.writeHead(503, { "Content-Type": "application/json" }).end('{"error":"down"}');
      return;
    }
    res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "public, max-age=600" });
    res.end(JSON.stringify({ keys: [...idp.keys.map((k) => k.jwk), ...idp.extra] }));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  idp.url = `http://127.0.0.1:${server.address().port}/.well-known/jwks.json`;
  t.after(() => new Promise((resolve) => server.close(resolve)));
  return idp;
}

async function heraldWith(t, bindings) {
  const herald = await startHerald({
    bindings: { JWT_JWKS: "", JWT_ISSUER: IDP, DEV_MODE: "true", ...bindings },
  });
  t.after(() => herald.stop());
  return herald;
}

function token(key, sub = "ida", { iss = IDP, kid = key.kid } = {}) {
  return signJwt(claimsFor(sub, 3600, { iss, aud: AUDIENCE }), { alg: key.alg, key: key.privateKey, kid });
}

/** The status of an inbox read with `jwt`. */
async function inbox(herald, jwt) {
  const res = await herald.request("/v1/notifications", { headers: { Authorization: `Bearer ${jwt}` } });
  return res.status;
}

describe("keys from JWT_JWKS_URL", { concurrency: true, timeout: 180_000 }, () => {
  test("are fetched once, skip keys Herald cannot use, and a flood of unknown kids costs no fetch", async (t) => {
    const k1 = keyPair("k1");
    const idp = await jwksServer(t, [k1]);
    // An encryption key and a P-384 key beside it: skipped and logged, not fatal.
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ format: "jwk" });
    idp.extra = [
      { ...k1.jwk, kid: "enc-1", use: "enc" },
      { ...p384, kid: "p384-1", alg: "ES384" },
    ];
    const herald = await heraldWith(t, { JWT_JWKS_URL: idp.url });

    assert.equal(await inbox(herald, token(k1)), 200);
    assert.equal(idp.fetches, 1);
    const fetched = await herald.waitForLog((l) => l.event === "jwks_fetch");
    assert.equal(fetched.keys, 1);
    assert.equal(fetched.skipped.length, 2, JSON.stringify(fetched));

    const statuses = [];
    for (let i = 0; i < 200; i += 20) {
      const batch = Array.from({ length: 20 }, () => inbox(herald, token(k1, "ida", { kid: randomUUID() })));
      statuses.push(...(await Promise.all(batch)));
    }
    assert.deepEqual(new Set(statuses), new Set([401]));
    assert.ok(idp.fetches <= 2, `200 unknown kids made ${idp.fetches - 1} extra fetches`);
    assert.equal(await inbox(herald, token(k1)), 200, "the known key still verifies");
  });

  test("follow a rotation, at most one refetch a minute", async (t) => {
    const [k1, k2] = [keyPair("k1"), keyPair("k2", "ed25519")];
    const idp = await jwksServer(t, [k1]);
    const herald = await heraldWith(t, { JWT_JWKS_URL: idp.url });
    assert.equal(await inbox(herald, token(k1)), 200);

    idp.keys = [k2];
    assert.equal(await inbox(herald, token(k2)), 401, "within a minute of the last fetch the new kid waits");
    assert.equal(idp.fetches, 1);
    // The rule under test is a clock: a minute must pass before the next fetch.
    await sleep(REFETCH_WAIT_MS);
    assert.equal(await inbox(herald, token(k2)), 200, "the rotated-in key verifies");
    assert.equal(idp.fetches, 2);
    assert.equal(await inbox(herald, token(k1)), 401, "the rotated-out key no longer does");
  });

  test("keep the last good set through an outage of the URL", async (t) => {
    const k1 = keyPair("k1");
    const idp = await jwksServer(t, [k1]);
    const herald = await heraldWith(t, { JWT_JWKS_URL: idp.url });
    assert.equal(await inbox(herald, token(k1)), 200);

    idp.down = true;
    await sleep(REFETCH_WAIT_MS);
    const logged = herald.logs.length;
    assert.equal(await inbox(herald, token(keyPair("k9"))), 401, "an unknown kid during the outage");
    assert.equal(idp.fetches, 2, "the unknown kid tried one fetch");
    await herald.waitForLog((l) => l.event === "error" && /jwks fetch/.test(l.message), { after: logged });
    assert.equal(await inbox(herald, token(k1)), 200, "the cached key keeps working");
  });

  test("verify only their own issuer's tokens, even when two sets share a kid", async (t) => {
    const [a, b] = [keyPair("shared"), keyPair("shared")];
    const [idpA, idpB] = [await jwksServer(t, [a]), await jwksServer(t, [b])];
    const [issA, issB] = ["https://a.example.test/", "https://b.example.test/"];
    const herald = await heraldWith(t, {
      JWT_JWKS_URL: `${idpA.url},${idpB.url}`,
      JWT_ISSUER: `${issA},${issB}`,
    });
    assert.equal(await inbox(herald, token(a, "ann", { iss: issA })), 200);
    assert.equal(await inbox(herald, token(b, "bo", { iss: issB })), 200);
    assert.equal(await inbox(herald, token(a, "ann", { iss: issB })), 401, "A's key cannot sign for B");
    assert.equal(await inbox(herald, token(b, "bo", { iss: issA })), 401, "B's key cannot sign for A");
    assert.equal(await inbox(herald, token(a, "ann", { iss: "https://c.example.test/" })), 401);
  });
});

describe("deployments that would accept too much are refused", { concurrency: true, timeout: 60_000 }, () => {
  test("public keys without an issuer or audience: 503 misconfigured", async (t) => {
    const k1 = keyPair("k1");
    const idp = await jwksServer(t, [k1]);
    const herald = await heraldWith(t, { JWT_JWKS_URL: idp.url, JWT_ISSUER: "", JWT_AUDIENCE: "" });
    const health = await herald.request("/healthz");
    assert.equal(health.status, 503);
    assert.equal(health.body.error.code, "misconfigured");
    assert.match(health.body.error.message, /JWT_ISSUER|JWT_AUDIENCE/);
    const res = await herald.request("/v1/notifications", { headers: { Authorization: `Bearer ${token(k1)}` } });
    assert.equal(res.status, 503);
    assert.equal(idp.fetches, 0, "nothing is fetched for a deployment that cannot be trusted");
  });

  test("a JWKS URL that is not https is refused, loopback included outside dev mode", async (t) => {
    for (const [url, devMode] of [
      ["http://idp.example.test/jwks.json", "true"],
      ["http://127.0.0.1:9/jwks.json", ""],
    ]) {
      const herald = await heraldWith(t, { JWT_JWKS_URL: url, DEV_MODE: devMode });
      const res = await herald.request("/healthz");
      assert.equal(res.status, 503, url);
      assert.equal(res.body.error.code, "misconfigured");
      assert.match(res.body.error.message, /JWT_JWKS_URL.*https:\/\//);
    }
  });
});
