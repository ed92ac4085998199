// Prints an HS256 token for a dev user, signed with JWT_SECRET from .dev.vars.
// Usage: node scripts/dev-token.mjs [user] [ttl seconds]
import { readFileSync } from "node:fs";
import { claimsFor, signJwt } from "./jwt.mjs";

const vars = Object.fromEntries(
  readFileSync(new URL("../.dev.vars", import.meta.url), "utf8")
    .split("\n")
    .filter((line) => line.includes("="))
    .map((line) => {
      const at = line.indexOf("=");
      return [line.slice(0, at).trim(), line.slice(at + 1).trim().replace(/^"|"$/g, "")];
    }),
);
const [user = "alice", ttl = "86400"] = process.argv.slice(2);
console.log(signJwt(claimsFor(user, Number(ttl)), { key: vars.JWT_SECRET }));
