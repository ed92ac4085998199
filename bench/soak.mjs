// Soak: Herald under steady churn for a while, watching workerd's memory and counting every
// notification. Runs the built Worker (build/index.js) in workerd through the end-to-end
// harness, on 127.0.0.1 with on-disk state, and meanwhile:
// - user clients connect (resuming with ?since=<last seq seen>) and disconnect at random,
//   half of the disconnects without a close frame;
// - a producer publishes at a fixed rate to one to three random users, and to rooms whose
//   members come and go the same way;
// - every few seconds Herald's isolate is garbage-collected over the runtime's inspector,
//   and then sampled: workerd's RSS (/proc/<pid>/status), and what of it is Herald's own,
//   the isolate's live V8 heap and the wasm module's linear memory. The rest is the
//   runtime's. Collecting first is what tells a leak (a trend after collection) from
//   garbage that V8 has not collected yet.
// At the end every client resumes once more, and every publish answered 202 must have
// reached its user (and every room publish every member, from when it first joined).
// Prints a Markdown report and writes it to bench/results/soak-<date>.md; exits 1 if
// anything was lost or delivered twice.
// Usage: node bench/soak.mjs [--minutes 10] [--users 200] [--rate 40] [--rooms 4]
//   [--room-members 10] [--churn 20] [--sample-seconds 5] [--out FILE]
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { freePort, startHerald, tokenFor } from "../miniflare-tests/harness.mjs";
import { Inspector } from "./inspector.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const opts = parseArgs(process.argv.slice(2), {
  minutes: 10,
  users: 200,
  rate: 40, // user publishes per second
  rooms: 4,
  "room-members": 10, // sockets per room
  "room-rate": 4, // room publishes per second, over all rooms
  churn: 20, // connects + disconnects per second, users and room members together
  "sample-seconds": 5,
  out: "",
});
const TICK_MS = 100;
const MAX_IN_FLIGHT = 200; // publishes awaiting an answer; beyond it the producer skips

process.chdir(root); // Miniflare resolves build/ from the working directory
if (!existsSync(join(root, "build/index.js"))) {
  console.error("no build/index.js: run `make build` (or `make soak`) first");
  process.exit(2);
}

// ---- state ------------------------------------------------------------------------------

const counts = {
  published: 0, // user publishes answered 202
  publishFailed: 0,
  publishSkipped: 0,
  recipients: 0, // (user, seq) pairs answered 202
  delivered: 0, // distinct (user, seq) seen by clients
  duplicates: 0, // a seq a socket had already delivered to this client
  roomPublished: 0,
  roomFailed: 0,
  roomDelivered: 0,
  roomDuplicates: 0,
  connects: 0,
  connectFailures: 0,
  graceful: 0,
  abrupt: 0,
  serverCloses: 0, // closed by the server (e.g. idle sweep) while we meant to stay
  resets: 0,
  workerdRestarts: 0,
};
let inFlight = 0;
/** The first few failed publishes, for the report. */
const failures = [];
function recordFailure(kind, why) {
  counts[kind]++;
  if (failures.length < 5) failures.push(why);
}
/** user → [seq, …] answered 202. */
const promised = new Map();

/**
 * One client: a user (or a room member) with at most one socket at a time, its resume
 * cursor and every seq it has had.
 */
class Agent {
  constructor(kind, name, path, token) {
    this.kind = kind; // "user" | "room"
    this.name = name;
    this.path = path;
    this.token = token;
    this.state = "offline"; // offline | connecting | online | closing
    this.ws = null;
    this.cursor = undefined; // highest seq had; undefined until the first welcome
    this.floor = undefined; // rooms: the seq at first join; everything after it is owed
    this.seen = new Set();
    this.synced = null;
  }

  connect(url) {
    this.state = "connecting";
    const since = this.cursor === undefined ? (this.kind === "user" ? "?since=0" : "") : `?since=${this.cursor}`;
    const ws = new WebSocket(new URL(this.path + since, url), {
      headers: { Authorization: `Bearer ${this.token}` },
    });
    this.ws = ws;
    let ping;
    ws.on("open", () => {
      counts.connects++;
      this.state = "online";
      // A real client's heartbeat, so that the idle sweep leaves it alone.
      ping = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send("ping"), 20_000);
    });
    ws.on("message", (data) => this.frame(data.toString()));
    ws.on("error", () => {});
    ws.on("close", (code) => {
      clearInterval(ping);
      if (this.state === "connecting") counts.connectFailures++;
      else if (this.state === "online") counts.serverCloses++;
      this.state = "offline";
      this.ws = null;
      this.synced?.reject(new Error(`${this.name}: closed (${code}) before synced`));
    });
  }

  frame(text) {
    if (text === "pong") return;
    const frame = JSON.parse(text);
    switch (frame.type) {
      case "welcome":
        // A room member's first join (no `since`) owes it only what comes after; a user's
        // cursor moves with what actually arrives, never with what the server has.
        if (this.kind === "room" && this.floor === undefined) this.floor = this.cursor = frame.seq;
        break;
      case "notification":
        this.take([frame]);
        break;
      case "batch":
        this.take(frame.items);
        break;
      case "reset":
        counts.resets++;
        break;
      case "synced":
        this.synced?.resolve();
        break;
    }
  }

  take(items) {
    for (const { seq } of items) {
      if (this.seen.has(seq)) {
        counts[this.kind === "user" ? "duplicates" : "roomDuplicates"]++;
        continue;
      }
      this.seen.add(seq);
      counts[this.kind === "user" ? "delivered" : "roomDelivered"]++;
      this.cursor = Math.max(this.cursor ?? 0, seq);
    }
  }

  disconnect() {
    this.state = "closing";
    if (Math.random() < 0.5) {
      counts.graceful++;
      this.ws.close(1000);
    } else {
      counts.abrupt++;
      this.ws.terminate(); // no close frame: the TCP connection just ends
    }
  }

  /** Reconnects with its cursor and resolves once the replay is complete. */
  async resume(url) {
    if (this.kind === "room" && this.floor === undefined) return; // never joined: owed nothing
    if (this.ws) {
      const closed = new Promise((resolve) => this.ws.once("close", resolve));
      this.state = "closing";
      this.ws.close(1000);
      await closed;
    }
    const synced = new Promise((resolve, reject) => (this.synced = { resolve, reject }));
    const timer = setTimeout(() => this.synced?.reject(new Error(`${this.name}: no synced`)), 60_000);
    this.connect(url);
    try {
      await synced;
    } finally {
      clearTimeout(timer);
      this.synced = null;
    }
  }
}

/**
 * Herald's own memory inside workerd, read over the runtime's inspector (the Chrome DevTools
 * Protocol on 127.0.0.1): the V8 heap of the isolate that runs the Worker and its Durable
 * Objects, and the byte length of every WebAssembly.Memory in it (the Rust module's).
 */
class IsolateProbe extends Inspector {
  static async open(port) {
    const probe = await super.open(`ws://127.0.0.1:${port}/core:user:`);
    // `Runtime.evaluate` needs the isolate's context, which `Runtime.enable` announces.
    const context = new Promise((resolve) => {
      probe.onEvent = (message) => {
        if (message.method === "Runtime.executionContextCreated") resolve(message.params.context.id);
      };
    });
    await probe.call("Runtime.enable").catch(() => null);
    probe.contextId = await Promise.race([context, new Promise((r) => setTimeout(r, 5_000))]);
    return probe;
  }

  /**
   * Collects Herald's garbage, then answers { heap, wasm } in MB (undefined when the
   * inspector cannot answer). Collecting first makes the heap figure what is still
   * referenced, and frees the runtime's memory behind unreferenced objects (requests,
   * responses, SQL cursors), which V8 does not count and so collects late on its own.
   */
  async sample() {
    const group = "soak";
    try {
      await this.call("HeapProfiler.collectGarbage");
      const usage = await this.call("Runtime.getHeapUsage");
      const proto = await this.call("Runtime.evaluate", { expression: "WebAssembly.Memory.prototype", contextId: this.contextId, objectGroup: group });
      const memories = await this.call("Runtime.queryObjects", { prototypeObjectId: proto.result.objectId, objectGroup: group });
      const bytes = await this.call("Runtime.callFunctionOn", {
        objectId: memories.objects.objectId,
        functionDeclaration: "function () { return this.reduce((sum, m) => sum + m.buffer.byteLength, 0); }",
        returnByValue: true,
      });
      return { heap: usage.usedSize / 2 ** 20, wasm: bytes.result.value / 2 ** 20 };
    } catch {
      return undefined;
    } finally {
      await this.call("Runtime.releaseObjectGroup", { objectGroup: group }).catch(() => null);
    }
  }
}

// ---- run --------------------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), "herald-soak-"));
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
const inspectorPort = await freePort();
const herald = await startHerald({ persistDir: dir, inspectorPort });
let pid = herald.pid();
let probe = await IsolateProbe.open(inspectorPort);
const base = () => herald.url.href.replace(/^http/, "ws");

const users = Array.from({ length: opts.users }, (_, i) => `soak-${i}`);
const agents = users.map((user) => new Agent("user", user, "/v1/connect", tokenFor(user)));
const rooms = Array.from({ length: opts.rooms }, (_, i) => `soak:room-${i}`);
const members = rooms.flatMap((room) =>
  Array.from({ length: opts["room-members"] }, (_, j) => {
    const user = `soak-member-${room.split("-").at(-1)}-${j}`;
    return new Agent("room", `${room}/${user}`, `/v1/rooms/${room}/connect`, tokenFor(user, { claims: { rooms: ["soak:*"] } }));
  }),
);
const everyone = [...agents, ...members];
const roomPromised = new Map(rooms.map((room) => [room, []]));


const pick = (list) => list[Math.floor(Math.random() * list.length)];
/** Fires `perSecond` calls of `f` per second, spread over the ticks (fractions carry). */
function paced(perSecond, f) {
  let owed = 0;
  return () => {
    owed += (perSecond * TICK_MS) / 1000;
    for (; owed >= 1; owed--) f();
  };
}

async function publishToUsers() {
  if (inFlight >= MAX_IN_FLIGHT) return void counts.publishSkipped++;
  const count = Math.random() < 0.2 ? 1 + Math.floor(Math.random() * 3) : 1;
  const to = [...new Set(Array.from({ length: count }, () => pick(users)))];
  inFlight++;
  try {
    const res = await herald.publish({ to: { users: to }, event: "soak.tick", title: "tick", data: { at: Date.now() } });
    if (res.status !== 202) return recordFailure("publishFailed", `${res.status} ${JSON.stringify(res.body)}`);
    counts.published++;
    for (const { user, seq } of res.body.recipients) {
      if (!promised.has(user)) promised.set(user, []);
      promised.get(user).push(seq);
      counts.recipients++;
    }
  } catch (e) {
    recordFailure("publishFailed", String(e.cause ?? e));
  } finally {
    inFlight--;
  }
}

async function publishToRoom() {
  if (inFlight >= MAX_IN_FLIGHT) return void counts.publishSkipped++;
  const room = pick(rooms);
  inFlight++;
  try {
    const res = await herald.publish({ to: { room }, event: "soak.room", data: { at: Date.now() } });
    if (res.status !== 202) return recordFailure("roomFailed", `room: ${res.status} ${JSON.stringify(res.body)}`);
    counts.roomPublished++;
    roomPromised.get(room).push(res.body.seq);
  } catch (e) {
    recordFailure("roomFailed", `room: ${e.cause ?? e}`);
  } finally {
    inFlight--;
  }
}

function churnOne() {
  const agent = pick(everyone);
  if (agent.state === "online") agent.disconnect();
  else if (agent.state === "offline") agent.connect(base());
}

const samples = [];
const started = Date.now();
function rssMb(p) {
  try {
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${p}/status`, "utf8"))?.[1];
    return kb ? Number(kb) / 1024 : undefined;
  } catch {
    return undefined;
  }
}
async function sample() {
  if (rssMb(pid) === undefined) {
    // workerd died and Miniflare started it again: worth knowing, and keep measuring.
    counts.workerdRestarts++;
    pid = herald.pid();
    probe.close();
    probe = await IsolateProbe.open(inspectorPort).catch(() => probe);
  }
  const own = await probe.sample();
  const rss = rssMb(pid);
  samples.push({
    minutes: (Date.now() - started) / 60_000,
    rss,
    heap: own?.heap,
    wasm: own?.wasm,
    requests: counts.published + counts.publishFailed + counts.roomPublished + counts.roomFailed + counts.connects,
    userSockets: agents.filter((a) => a.state === "online").length,
    roomSockets: members.filter((a) => a.state === "online").length,
    published: counts.published,
    delivered: counts.delivered,
  });
  const s = samples.at(-1);
  console.error(
    `[soak] ${s.minutes.toFixed(2)} min  RSS ${s.rss?.toFixed(1)} MB  heap ${s.heap?.toFixed(1)} MB  wasm ${s.wasm?.toFixed(1)} MB  sockets ${s.userSockets}+${s.roomSockets}  202s ${s.published}  delivered ${s.delivered}`,
  );
}

// Start with about half of everyone connected. (The inspector answers a collection only
// while the isolate is busy, so the first sample waits for this.)
for (const agent of everyone) if (Math.random() < 0.5) agent.connect(base());
await sample();
const userTick = paced(opts.rate, () => void publishToUsers());
const roomTick = paced(opts["room-rate"], () => void publishToRoom());
const churnTick = paced(opts.churn, churnOne);
const ticker = setInterval(() => {
  userTick();
  roomTick();
  churnTick();
}, TICK_MS);
const sampler = setInterval(sample, opts["sample-seconds"] * 1000);
await new Promise((resolve) => setTimeout(resolve, opts.minutes * 60_000));
clearInterval(ticker);
clearInterval(sampler);
await sample();
probe.close();

// ---- verify -----------------------------------------------------------------------------

while (inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 50));
// Everyone resumes from its cursor, a few at a time; then nothing may be missing.
for (let i = 0; i < everyone.length; i += 50) {
  await Promise.all(everyone.slice(i, i + 50).map((agent) => agent.resume(base())));
}
let lost = 0;
for (const agent of agents) {
  for (const seq of promised.get(agent.name) ?? []) if (!agent.seen.has(seq)) lost++;
}
let roomLost = 0;
for (const agent of members) {
  const room = agent.path.split("/")[3];
  if (agent.floor === undefined) continue;
  for (const seq of roomPromised.get(room)) if (seq > agent.floor && !agent.seen.has(seq)) roomLost++;
}
for (const agent of everyone) {
  agent.state = "closing";
  agent.ws?.close(1000);
}
const endRss = rssMb(pid);
await herald.stop();

// ---- report -----------------------------------------------------------------------------

const half = samples.filter((s) => s.minutes >= samples.at(-1).minutes / 2);
/** Least-squares slope of `key` over the second half, in MB/min. */
const trend = (key) => regression(half.filter((s) => s[key] !== undefined).map((s) => [s.minutes, s[key]]));
const series = (key) => samples.map((s) => s[key]).filter((v) => v !== undefined);
const rssValues = series("rss");
const heapValues = series("heap");
const wasmValues = series("wasm");
const peak = (values) => (values.length ? Math.max(...values) : undefined);
const slope = trend("rss");
const workerdVersion = readJson(join(root, "node_modules/workerd/package.json"))?.version ?? "?";
const miniflareVersion = readJson(join(root, "node_modules/miniflare/package.json"))?.version ?? "?";
const date = new Date().toISOString().slice(0, 10);
const fmt = (n, digits = 0) => (n === undefined || Number.isNaN(n) ? "–" : n.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits }));
const failed = lost > 0 || counts.duplicates > 0 || roomLost > 0 || counts.roomDuplicates > 0;

const report = `# Herald soak: ${date}

${fmt(opts.minutes, 1)} min on ${cpus().length} × ${cpus()[0]?.model ?? "CPU"}, Node ${process.version}, miniflare ${miniflareVersion}, workerd ${workerdVersion}; on-disk state, 127.0.0.1.
Workload: ${opts.users} users (one socket each at most) and ${opts.rooms} rooms × ${opts["room-members"]} member sockets; about half connected at any time, ${opts.churn} connects or disconnects per second (half of the disconnects without a close frame), every connect resuming with \`?since\` from the client's last seq; ${opts.rate} publishes/s to 1–3 random users and ${opts["room-rate"]}/s to a random room; each client pings every 20 s.
At the end every client resumes once more; *lost* counts publishes answered 202 that never reached a recipient (rooms: a member, from when it first joined).

## Result: ${failed ? "**FAILED**" : "nothing lost, nothing twice"}

| measure | value |
|---|---:|
| user publishes answered 202 | ${fmt(counts.published)} |
| recipients of those (user, seq) | ${fmt(counts.recipients)} |
| notifications delivered (distinct per user) | ${fmt(counts.delivered)} |
| **lost** | **${fmt(lost)}** |
| delivered twice on a socket | ${fmt(counts.duplicates)} |
| room publishes answered 202 | ${fmt(counts.roomPublished)} |
| room notifications delivered (distinct per member) | ${fmt(counts.roomDelivered)} |
| **room notifications lost** | **${fmt(roomLost)}** |
| room notifications twice on a socket | ${fmt(counts.roomDuplicates)} |
| publishes failed (non-202 or no answer) / skipped (over ${MAX_IN_FLIGHT} in flight) | ${fmt(counts.publishFailed + counts.roomFailed)} / ${fmt(counts.publishSkipped)} |
| connects / graceful closes / drops without a close frame | ${fmt(counts.connects)} / ${fmt(counts.graceful)} / ${fmt(counts.abrupt)} |
| failed connects / closed by the server / resets | ${fmt(counts.connectFailures)} / ${fmt(counts.serverCloses)} / ${fmt(counts.resets)} |
| workerd restarts (crashes) | ${fmt(counts.workerdRestarts)} |
| workerd RSS at start / peak / end (MB) | ${fmt(rssValues[0], 1)} / ${fmt(peak(rssValues), 1)} / ${fmt(endRss, 1)} |
| RSS trend over the second half (least squares, MB/min) | ${fmt(slope, 2)} |
| Herald's live V8 heap (after collection) at start / peak / end (MB) | ${fmt(heapValues[0], 1)} / ${fmt(peak(heapValues), 1)} / ${fmt(heapValues.at(-1), 1)} |
| Herald's V8 heap trend over the second half (MB/min) | ${fmt(trend("heap"), 2)} |
| Herald's wasm linear memory at start / end (MB) | ${fmt(wasmValues[0], 1)} / ${fmt(wasmValues.at(-1), 1)} |
${failures.length ? `\nFailed publishes (first ${failures.length}): ${failures.map((f) => `\`${f.slice(0, 200)}\``).join("; ")}\n` : ""}
## Memory over time

Each sample first forces a full garbage collection of Herald's isolate (the Worker and all
its Durable Objects). *heap* is then its live V8 heap, *wasm* the Rust module's linear
memory; both are inside the RSS. *requests* counts HTTP publishes and WebSocket connects
so far.

| t (min) | RSS (MB) | heap (MB) | wasm (MB) | requests | user sockets | room sockets | publishes 202 | delivered |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|
${samples.map((s) => `| ${fmt(s.minutes, 2)} | ${fmt(s.rss, 1)} | ${fmt(s.heap, 1)} | ${fmt(s.wasm, 1)} | ${fmt(s.requests)} | ${s.userSockets} | ${s.roomSockets} | ${fmt(s.published)} | ${fmt(s.delivered)} |`).join("\n")}
`;

console.log(report);
const out = opts.out || join(root, "bench/results", `soak-${date}.md`);
mkdirSync(join(out, ".."), { recursive: true });
writeFileSync(out, report);
console.error(`[soak] report written to ${out}`);
process.exit(failed ? 1 : 0);

// ---- helpers ----------------------------------------------------------------------------

/** The slope of the least-squares line through [x, y] points. */
function regression(points) {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const sxy = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return sxx === 0 ? NaN : sxy / sxx;
}

function readJson(path) {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return undefined;
  }
}

/** `--name value` / `--name=value` over `defaults` (numbers stay numbers). */
function parseArgs(argv, defaults) {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!match || !(match[1] in defaults)) {
      console.error(`unknown argument ${argv[i]}; see the usage at the top of bench/soak.mjs`);
      process.exit(2);
    }
    const value = match[2] ?? argv[++i];
    out[match[1]] = typeof defaults[match[1]] === "number" ? Number(value) : value;
    if (Number.isNaN(out[match[1]])) {
      console.error(`--${match[1]} takes a number`);
      process.exit(2);
    }
  }
  return out;
}
