// Minting JWTs with Node's own crypto for the end-to-end suite, including malformed and
// wrongly signed ones. In production your auth server mints tokens; Herald only verifies them.
import { createHmac, sign } from "node:crypto";

const b64url = (data) => Buffer.from(data).toString("base64url");

/** Signs `claims` with `alg` (HS256, RS256, ES256, EdDSA, or anything for negative tests). */
export function signJwt(claims, { alg = "HS256", key, kid, header = {} } = {}) {
  const head = b64url(JSON.stringify({ alg, typ: "JWT", ...(kid ? { kid } : {}), ...header }));
  const body = b64url(JSON.stringify(claims));
  const input = `${head}.${body}`;
  let signature;
  switch (alg) {
    case "HS256":
      signature = createHmac("sha256", key).update(input).digest();
      break;
    case "RS256":
      signature = sign("sha256", Buffer.from(input), key);
      break;
    case "ES256":
      signature = sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" });
      break;
    case "EdDSA":
      signature = sign(null, Buffer.from(input), key);
      break;
    default:
      signature = Buffer.alloc(0);
  }
  return `${input}.${b64url(signature)}`;
}

/** Claims for `sub`, valid for `ttlS` seconds from now. */
export function claimsFor(sub, ttlS = 3600, extra = {}) {
  const now = Math.floor(Date.now() / 1000);
  return { sub, iat: now, exp: now + ttlS, ...extra };
}
