// The SDK as a consumer gets it: `npm pack` of client/, installed from the tarball into a
// fresh project (offline), a consumer file using the public API type-checked with
// `strict` on against the shipped declarations, then run in Node 22 against the Worker.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { startHerald, tokenFor } from "./harness.mjs";

const run = promisify(execFile);
const root = new URL("..", import.meta.url).pathname;
const tsc = join(root, "node_modules", ".bin", "tsc");

/** What an app would write: a typed client that waits for one notification and one broadcast. */
const CONSUMER = `
import { Herald, type Notification, type Status } from "@herald/client";
import { useHerald, type HeraldState } from "@herald/client/react";

const herald = new Herald({ url: process.env.HERALD_URL!, token: process.env.HERALD_TOKEN!, storage: null, broadcast: true });
const seen: { inbox: Notification[]; broadcast: Notification[] } = { inbox: [], broadcast: [] };
const statuses: Status[] = [];
herald.on("status", (status) => statuses.push(status));
herald.on("notification", (n) => seen.inbox.push(n));
herald.on("broadcast", (n) => seen.broadcast.push(n));
const unread: number = herald.unreadCount;
const hook: typeof useHerald = useHerald;
const state: HeraldState | undefined = undefined;
void [unread, hook, state];

herald.connect();
// The parent publishes once this line is out, and until it has both.
herald.on("status", (status) => status === "open" && console.log("open"));
const done = setInterval(() => {
  if (seen.inbox.length > 0 && seen.broadcast.length > 0) {
    clearInterval(done);
    console.log(JSON.stringify({ inbox: seen.inbox[0].title, broadcast: seen.broadcast[0].title }));
    herald.close();
  }
}, 50);
`;

const TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    outDir: "out",
    types: [],
    lib: ["ES2022", "DOM"],
  },
  // Node's own types are not installed: env.d.ts declares the one global the consumer reads.
  files: ["consumer.ts", "env.d.ts"],
};

test("npm pack of the SDK installs offline, type-checks strictly and runs in Node 22", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herald-package-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const npm = (args, cwd) => run("npm", [...args, "--offline", "--no-audit", "--no-fund", "--loglevel=error"], { cwd, env: { ...process.env, npm_config_cache: join(dir, "npm-cache") } });

  await npm(["pack", "--pack-destination", dir], join(root, "client"));
  const tarball = readdirSync(dir).find((f) => f.endsWith(".tgz"));
  assert.ok(tarball, "npm pack wrote a tarball");
  const { stdout: listing } = await run("tar", ["-tzf", join(dir, tarball)]);
  assert.ok(listing.includes("package/dist/index.d.ts") && listing.includes("package/dist/herald.js"), listing);
  assert.ok(!listing.includes("package/src/"), "the sources are not shipped: consumers get declarations");

  const app = join(dir, "app");
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  await npm(["install", join(dir, tarball)], app);
  writeFileSync(join(app, "consumer.ts"), CONSUMER);
  writeFileSync(join(app, "env.d.ts"), "declare const process: { env: Record<string, string | undefined> };\n");
  writeFileSync(join(app, "tsconfig.json"), JSON.stringify(TSCONFIG));
  await run(tsc, ["-p", app]).catch((e) => assert.fail(`tsc: ${e.stdout}${e.stderr}`));

  assert.match(process.version, /^v22\./, "the consumer runs in Node 22");
  const herald = await startHerald();
  t.after(() => herald.stop());
  const child = execFile(process.execPath, [join(app, "out", "consumer.js")], {
    env: { ...process.env, HERALD_URL: herald.url, HERALD_TOKEN: tokenFor("pkg-user") },
    timeout: 60_000,
  });
  let output = "";
  const exited = new Promise((resolve) => child.on("exit", resolve));
  child.stderr.on("data", (chunk) => (output += chunk));
  await new Promise((resolve) => child.stdout.on("data", (chunk) => ((output += chunk), output.includes("open") && resolve())));
  await herald.publish({ to: { users: ["pkg-user"] }, event: "task.updated", title: "for you" });
  // The broadcast socket opens beside the user's: send until it has been listening.
  while (!output.includes("{")) {
    await herald.publish({ to: { broadcast: true }, event: "system.notice", title: "for everyone" });
    await Promise.race([exited, new Promise((r) => setTimeout(r, 500))]);
    assert.equal(child.exitCode ?? 0, 0, output);
  }
  assert.equal(await exited, 0, output);
  assert.deepEqual(JSON.parse(output.slice(output.indexOf("{"))), { inbox: "for you", broadcast: "for everyone" });
});
