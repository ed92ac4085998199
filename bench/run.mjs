// Herald against three peers (a hibernating JavaScript Durable Object in workerd, Socket.IO
// 4, a plain Node `ws` server), driven by the Rust load generator, and a report.
//
// Builds nothing: it expects the Worker in build/ (`make bench` or `make build`), the load
// generator at target/release/loadgen (`cargo build --release -p herald-loadgen`) and the
// peers' packages (`npm ci --prefix bench/peers`).
//
// For every round, every case of the profile and every target the case applies to,
// alternating targets (the order rotates each round), it starts the target in a fresh
// process pinned to CPU 0 (`taskset -c 0`; for Herald and the JS Durable Object, workerd is
// that process's child and is pinned too), sends one warm-up publish, samples the
// target's CPU time and RSS, runs the load generator pinned to CPU 1, samples again at the
// end of every step and stops the target. bench/report.mjs then writes
// bench/results/<date>-<profile>.{md,json} and SVG plots.
//
// Cases (the load generator's scenarios): `fanout` (one room, stepped publish rates),
// `devices` (one user's 4 sockets, stepped rates), `users` (1,000 users with a socket
// each, every publish to one random user, stepped rates), `connect` (open the sockets and hold
// them while the target's memory is sampled), `resume` (Herald only: replay a stored
// inbox with `?since=0`; the server gets INBOX_MAX_ITEMS = the case's items) and
// `coldwake` (Herald and the JS Durable Object: a delivery through an evicted object). A
// case may run in fewer rounds than the profile, and on fewer targets.
//
// Thousands of sockets need as many file descriptors in the load generator and in the
// target: the runner raises its own soft RLIMIT_NOFILE to the hard limit when the largest
// case needs it (its children inherit it) and refuses to start if even the hard limit is
// too low. Over loopback the ephemeral ports (net.ipv4.ip_local_port_range, usually
// 28,000 of them) are plenty for 5,000 sockets.
//
// Usage: node bench/run.mjs [--profile short|full] [--rounds N]
//                           [--targets herald,jsdo,jsdo-inbox,socketio,ws,django]
//                           [--cases fanout,devices/4,...] [--seconds N]
//                           [--loadgen PATH] [--name NAME] [--out DIR] [--no-pin]
//   --cases keeps the profile's cases whose scenario, or scenario/subscribers, is listed
//   --rounds and --seconds override the profile's (a case's own rounds stay a maximum)
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, accessSync, constants } from "node:fs";
import { cpus, release } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../miniflare-tests/harness.mjs";
import { caseLabel, writeRaw, writeReport, TARGET_ORDER } from "./report.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const peers = join(root, "bench/peers");

// Herald's credentials: the ones miniflare-tests/harness.mjs configures.
const HERALD = {
  jwtSecret: "test-jwt-secret-that-is-long-enough-0123456789",
  publishKey: "test-publish-key-0123456789",
  issuer: "https://auth.example.test",
  audience: "herald-test",
};

// A case: the loadgen scenario, `subscribers`, the fields its scenario needs (CASE_FIELDS),
// and `rounds` (at most this many of the profile's rounds) and `targets` (a subset) where
// it does not apply to all.
const CASE_FIELDS = {
  fanout: ["rates"],
  devices: ["rates"],
  users: ["rates"],
  connect: ["hold_seconds"],
  resume: ["items", "repeats"],
  coldwake: ["idle_seconds", "repeats"],
};
// Who runs a case. Room fan-out and connecting compare Herald's rooms with the broadcast
// peers; the per-user cases add `jsdo-inbox`, the hand-written per-user object, and the
// `users` case needs a room per user, which a plain `ws` server and the broadcaster lack.
const ROOM_PEERS = ["herald", "jsdo", "socketio", "ws"];
const PER_USER = ["herald", "jsdo-inbox", "socketio", "django"];
const PROFILES = {
  short: {
    rounds: 3,
    seconds: 2,
    cases: [
      { scenario: "users", subscribers: 1000, rates: [100, 200, 500, 1000, 1500], targets: PER_USER },
      { scenario: "fanout", subscribers: 100, rates: [50, 200, 500, 1000], targets: ROOM_PEERS },
      { scenario: "fanout", subscribers: 1000, rates: [20, 35, 50, 70, 100], targets: ROOM_PEERS },
      { scenario: "devices", subscribers: 4, rates: [20, 100, 200, 500] },
      { scenario: "connect", subscribers: 1000, hold_seconds: 2, targets: ROOM_PEERS },
      { scenario: "resume", subscribers: 1, items: 10_000, repeats: 3, rounds: 1, targets: ["herald"] },
      { scenario: "coldwake", subscribers: 1, idle_seconds: 15, repeats: 2, rounds: 1, targets: ["herald", "jsdo"] },
    ],
  },
  full: {
    rounds: 5,
    seconds: 5,
    cases: [
      { scenario: "users", subscribers: 1000, rates: [50, 100, 200, 500, 1000, 1500, 2000], targets: PER_USER },
      { scenario: "fanout", subscribers: 100, rates: [20, 50, 100, 200, 500, 1000, 2000], targets: ROOM_PEERS },
      { scenario: "fanout", subscribers: 1000, rates: [20, 35, 50, 70, 100, 150, 200, 500], targets: ROOM_PEERS },
      { scenario: "fanout", subscribers: 5000, rates: [20, 50, 100, 200, 500, 1000], targets: ROOM_PEERS },
      { scenario: "devices", subscribers: 4, rates: [20, 50, 100, 200, 500, 1000, 2000] },
      { scenario: "connect", subscribers: 1000, hold_seconds: 3, targets: ROOM_PEERS },
      { scenario: "connect", subscribers: 5000, hold_seconds: 3, targets: ROOM_PEERS },
      { scenario: "resume", subscribers: 1, items: 10_000, repeats: 5, rounds: 3, targets: ["herald"] },
      { scenario: "coldwake", subscribers: 1, idle_seconds: 15, repeats: 3, rounds: 2, targets: ["herald", "jsdo"] },
    ],
  },
};

const TARGETS = {
  herald: { script: "herald-server.mjs", workerd: true, serving: ["workerd"] },
  jsdo: { script: "jsdo-server.mjs", workerd: true, serving: ["workerd"] },
  "jsdo-inbox": { script: "jsdo-server.mjs", args: ["--inbox"], workerd: true, serving: ["workerd"] },
  socketio: { script: "socketio-server.mjs", workerd: false },
  ws: { script: "ws-server.mjs", workerd: false },
  django: { script: "django-server.mjs", workerd: false, serving: ["redis-server", "python"] },
};

const P99_LIMIT_MS = 100;
const TARGET_CPU = 0;
const LOADGEN_CPU = 1;
const READY_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 15_000;
// File descriptors beyond one per socket: the runtime's own, HTTP clients, pipes.
const SPARE_FDS = 1024;

// ---------------------------------------------------------------------------------------
// Arguments

/** The header comment from its "Usage:" line on. */
function usage() {
  const lines = readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n");
  const from = lines.findIndex((l) => l.startsWith("// Usage"));
  const to = lines.findIndex((l, i) => i > from && !l.startsWith("//"));
  return lines.slice(from, to).map((l) => l.slice(3)).join("\n");
}

function parseArgs(argv) {
  const opts = { profile: "short", pin: true };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case "--profile": opts.profile = value(); break;
      case "--rounds": opts.rounds = Number(value()); break;
      case "--targets": opts.targets = value().split(",").map((s) => s.trim()).filter(Boolean); break;
      case "--cases": opts.only = value().split(",").map((s) => s.trim()).filter(Boolean); break;
      case "--seconds": opts.seconds = Number(value()); break;
      case "--loadgen": opts.loadgen = value(); break;
      case "--name": opts.name = value(); break;
      case "--out": opts.out = value(); break;
      case "--no-pin": opts.pin = false; break;
      case "-h":
      case "--help":
        console.log(usage());
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${argv[i]} (see --help)`);
    }
  }
  const profile = PROFILES[opts.profile];
  if (!profile) throw new Error(`--profile must be one of ${Object.keys(PROFILES).join(", ")}`);
  opts.rounds ??= profile.rounds;
  if (!Number.isInteger(opts.rounds) || opts.rounds < 1 || opts.rounds > 50) throw new Error("--rounds must be 1..50");
  opts.seconds ??= profile.seconds;
  if (!Number.isInteger(opts.seconds) || opts.seconds < 1 || opts.seconds > 600) throw new Error("--seconds must be 1..600");
  opts.targets ??= TARGET_ORDER;
  for (const t of opts.targets) if (!TARGETS[t]) throw new Error(`unknown target ${t}`);
  for (const c of profile.cases) {
    if (!CASE_FIELDS[c.scenario]) throw new Error(`profile ${opts.profile}: unknown scenario ${c.scenario}`);
    const missing = CASE_FIELDS[c.scenario].filter((f) => c[f] === undefined);
    if (missing.length) throw new Error(`profile ${opts.profile}: case ${c.scenario}/${c.subscribers} lacks ${missing.join(", ")}`);
  }
  let cases = profile.cases;
  if (opts.only) {
    for (const sel of opts.only) {
      if (!cases.some((c) => matches(c, sel))) throw new Error(`--cases: no case ${sel} in the ${opts.profile} profile`);
    }
    cases = cases.filter((c) => opts.only.some((sel) => matches(c, sel)));
  }
  // Each case with the rounds and targets it runs in here.
  cases = cases
    .map((c) => ({
      ...c,
      rounds: Math.min(c.rounds ?? opts.rounds, opts.rounds),
      targets: (c.targets ?? TARGET_ORDER).filter((t) => opts.targets.includes(t)),
    }))
    .filter((c) => c.targets.length > 0);
  if (cases.length === 0) throw new Error("no case of the profile applies to the chosen targets");
  opts.loadgen ??= process.env.LOADGEN ?? join(root, "target/release/loadgen");
  opts.name ??= `${new Date().toISOString().slice(0, 10)}-${opts.profile}`;
  if (!/^[A-Za-z0-9._-]+$/.test(opts.name)) throw new Error("--name: letters, digits, . _ - only");
  opts.out ??= join(root, "bench/results");
  return { ...opts, cases };
}

/** `--cases` selectors: a scenario, or scenario/subscribers. */
const matches = (c, sel) => sel === c.scenario || sel === `${c.scenario}/${c.subscribers}`;

/** The open-files limit of this process, from /proc: { soft, hard } (Infinity if unlimited). */
function openFilesLimit() {
  const line = /^Max open files\s+(\S+)\s+(\S+)/m.exec(safeRead("/proc/self/limits"));
  const num = (v) => (v === "unlimited" ? Infinity : Number(v));
  return line ? { soft: num(line[1]), hard: num(line[2]) } : null;
}

/**
 * Makes sure the largest case's sockets fit in the open-files limit: raises this process's
 * soft limit to the hard one if needed (with util-linux prlimit; children inherit it), or
 * says what to raise.
 */
function ensureOpenFiles(cases) {
  const needed = Math.max(...cases.map((c) => c.subscribers)) + SPARE_FDS;
  const limit = openFilesLimit();
  if (!limit || limit.soft >= needed) return null;
  if (limit.hard < needed) {
    return `${needed} open files needed, the hard limit is ${limit.hard} (raise it: ulimit -Hn, or limits.conf)`;
  }
  try {
    execFileSync("prlimit", ["--pid", String(process.pid), `--nofile=${limit.hard}:${limit.hard}`], { stdio: "ignore" });
  } catch (e) {
    return `${needed} open files needed, the soft limit is ${limit.soft} and prlimit could not raise it (${e.message}); run ulimit -n ${limit.hard} first`;
  }
  return openFilesLimit().soft >= needed ? null : `could not raise the open-files limit to ${needed}`;
}

function preflight(opts) {
  const problems = [];
  try {
    accessSync(opts.loadgen, constants.X_OK);
  } catch {
    problems.push(`no executable load generator at ${opts.loadgen} (cargo build --release -p herald-loadgen)`);
  }
  if (opts.targets.includes("herald") && !existsSync(join(root, "build/index.js"))) {
    problems.push("no build/index.js (make bench, or make build)");
  }
  if (opts.targets.includes("socketio") && !existsSync(join(peers, "node_modules/socket.io"))) {
    problems.push("no bench/peers/node_modules (npm ci --prefix bench/peers)");
  }
  if (opts.targets.some((t) => TARGETS[t].workerd) && !existsSync(join(root, "node_modules/miniflare"))) {
    problems.push("no node_modules/miniflare at the repo root (npm ci)");
  }
  if (opts.pin) {
    try {
      execFileSync("taskset", ["-c", `${LOADGEN_CPU}`, "true"], { stdio: "ignore" });
    } catch {
      problems.push(`cannot pin to CPU ${LOADGEN_CPU} with taskset (needs util-linux and ≥ 2 CPUs; --no-pin runs unpinned)`);
    }
  }
  const files = ensureOpenFiles(opts.cases);
  if (files) problems.push(files);
  if (problems.length) throw new Error(`cannot run the benchmark:\n  - ${problems.join("\n  - ")}`);
}

// ---------------------------------------------------------------------------------------
// Processes

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/**
 * CPU time (µs, user + system, all threads) and RSS (KB) of a live process, or summed over
 * several (a server and its Redis); null if one is gone.
 */
function sample(pids) {
  const total = { cpu_us: 0, rss_kb: 0, at_ms: Date.now() };
  for (const pid of [].concat(pids)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
      total.cpu_us += ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      total.rss_kb += Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? NaN);
    } catch {
      return null;
    }
  }
  return total;
}

const alive = (pids) =>
  [].concat(pids).every((pid) => existsSync(`/proc/${pid}`) && !/^\S+ \(.*\) Z/.test(safeRead(`/proc/${pid}/stat`)));
const safeRead = (path) => {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Children of `pid` (by their pids), with their command names. */
function childrenOf(pid) {
  let out = "";
  try {
    out = execFileSync("pgrep", ["-P", String(pid)], { encoding: "utf8" });
  } catch {
    return []; // pgrep exits 1 when there is none
  }
  return out.split("\n").filter(Boolean).map((p) => ({ pid: Number(p), comm: safeRead(`/proc/${p}/comm`).trim() }));
}


/** Keeps the last `limit` characters written to it. */
class Tail {
  constructor(limit = 16_384) {
    this.limit = limit;
    this.text = "";
  }
  push(chunk) {
    this.text = (this.text + chunk).slice(-this.limit);
  }
}

// Processes this runner started, so an interrupt can stop them (by pid, nothing broader).
const running = new Set();
function track(child) {
  running.add(child);
  child.once("exit", () => running.delete(child));
  return child;
}
const extraPids = new Set(); // serving children (workerd, redis-server, Python) found via pgrep

function exited(child, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function waitGone(pid, timeoutMs) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (!alive(pid)) return true;
    await sleep(100);
  }
  return !alive(pid);
}

function pinned(cpu, command, args, pin) {
  return pin ? ["taskset", ["-c", String(cpu), command, ...args]] : [command, args];
}

/** What the target's server needs beyond its port for case `c`. */
function serverArgs(name, c) {
  // Herald keeps 1,000 items per user by default; a resume of more would get `reset`.
  if (name === "herald" && c.scenario === "resume") return ["--binding", `INBOX_MAX_ITEMS=${c.items}`];
  return [];
}

/** Starts a target; resolves once it printed "ready", with the pid to measure. */
async function startTarget(name, port, c, opts) {
  const spec = TARGETS[name];
  const script = [join(peers, spec.script), "--port", String(port), ...(spec.args ?? []), ...serverArgs(name, c)];
  const [cmd, args] = pinned(TARGET_CPU, process.execPath, script, opts.pin);
  const child = track(spawn(cmd, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] }));
  const out = new Tail();
  const err = new Tail();
  child.stderr.on("data", (d) => err.push(d));
  const ready = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve("timed out"), READY_TIMEOUT_MS);
    child.stdout.on("data", (d) => {
      out.push(d);
      if (/^ready$/m.test(out.text)) {
        clearTimeout(timer);
        resolve("ready");
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve(`exited (${code ?? signal})`);
    });
    child.once("error", (e) => {
      clearTimeout(timer);
      resolve(`failed to start: ${e.message}`);
    });
  });
  const target = { name, child, pid: child.pid, measurePid: child.pid, servingPids: [], stderr: err, stdout: out };
  if (ready !== "ready") {
    await stopTarget(target);
    throw new Error(`${name} did not start: ${ready}\n${err.text.slice(-2000)}`);
  }
  // The processes that do the serving, children of the launcher (taskset execs node, so
  // child.pid is the launcher): workerd under Miniflare; redis-server and Python for Django.
  for (const comm of spec.serving ?? []) {
    let found;
    for (let i = 0; i < 50 && !found; i++) {
      found = childrenOf(child.pid).find((c) => c.comm === comm);
      if (!found) await sleep(100);
    }
    if (!found) {
      await stopTarget(target);
      throw new Error(`${name}: no ${comm} child of ${child.pid}`);
    }
    target.servingPids.push(found.pid);
    extraPids.add(found.pid);
    if (opts.pin) {
      // Inherited from the parent already; -a pins every thread of it explicitly.
      execFileSync("taskset", ["-apc", String(TARGET_CPU), String(found.pid)], { stdio: "ignore" });
    }
  }
  if (target.servingPids.length) target.measurePid = target.servingPids;
  return target;
}

async function stopTarget(target) {
  const { child } = target;
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGTERM");
    if (!(await exited(child, STOP_TIMEOUT_MS))) {
      child.kill("SIGKILL");
      await exited(child, 5_000);
    }
  }
  for (const pid of target.servingPids) {
    if (!(await waitGone(pid, 10_000))) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
      await waitGone(pid, 5_000);
    }
    extraPids.delete(pid);
  }
}

/** One publish before measuring, so the Worker / wasm module / object already exist. */
async function warmUp(name, port) {
  const url = `http://127.0.0.1:${port}${name === "herald" ? "/v1/publish" : "/publish"}`;
  const headers = { "Content-Type": "application/json" };
  let body = JSON.stringify({ event: "bench.warmup" });
  if (name === "herald") {
    headers.Authorization = `Bearer ${HERALD.publishKey}`;
    body = JSON.stringify({ to: { users: ["bench-warmup"] }, event: "bench.warmup" });
  }
  try {
    const res = await fetch(url, { method: "POST", headers, body, signal: AbortSignal.timeout(10_000) });
    await res.arrayBuffer();
    return res.status === 202 ? null : `warm-up publish answered ${res.status}`;
  } catch (e) {
    return `warm-up publish failed: ${e.message}`;
  }
}

function loadgenTimeoutMs(c, opts) {
  const connecting = 120 + c.subscribers / 20;
  switch (c.scenario) {
    case "fanout":
    case "devices":
    case "users":
      return (connecting + c.rates.length * (opts.seconds + 20)) * 1000;
    case "connect":
      return (connecting + c.hold_seconds) * 1000;
    case "resume": // storing at well over 100 items/s, then each replay within its 120 s
      return (120 + c.items / 100 + c.repeats * 125) * 1000;
    case "coldwake":
      return (120 + c.repeats * (c.idle_seconds + 70)) * 1000;
    default:
      throw new Error(`unknown scenario ${c.scenario}`);
  }
}

/** The load generator's options for case `c`, beyond address, target and credentials. */
function scenarioArgs(c, opts) {
  const args = ["--scenario", c.scenario, "--subscribers", String(c.subscribers)];
  switch (c.scenario) {
    case "fanout":
    case "devices":
    case "users":
      return [...args, "--rates", c.rates.join(","), "--seconds", String(opts.seconds), "--p99-limit-ms", String(P99_LIMIT_MS)];
    case "connect":
      return [...args, "--hold-seconds", String(c.hold_seconds)];
    case "resume":
      return [...args, "--items", String(c.items), "--repeats", String(c.repeats)];
    case "coldwake":
      return [...args, "--idle-seconds", String(c.idle_seconds), "--repeats", String(c.repeats)];
    default:
      throw new Error(`unknown scenario ${c.scenario}`);
  }
}

/** One line of progress for a result line of the load generator. */
function describe(step) {
  const ms = (x) => `${fmtN(x)} ms`;
  switch (step.scenario) {
    case "connect":
      return `connected ${step.connected}/${step.subscribers}  p50 ${ms(step.connect_p50_ms)}  p99 ${ms(step.connect_p99_ms)}  all in ${ms(step.total_ms)}`;
    case "resume":
      return `${fmtN(step.items)} items replayed in ${step.repeats.map((r) => fmtN(r.ms)).join(", ")} ms (median ${ms(step.median_ms)}, ${fmtN(step.median_items_per_s)} items/s)`;
    case "coldwake":
      return `cold ${step.repeats.map((r) => fmtN(r.cold_ms)).join(", ")} ms, warm ${step.repeats.map((r) => fmtN(r.warm_ms)).join(", ")} ms`;
    default:
      return (
        `${String(step.rate).padStart(5)}/s  ${fmtN(step.deliveries_per_s)} deliveries/s  ` +
        `p50 ${fmtN(step.p50_ms)}  p99 ${fmtN(step.p99_ms)}  max ${ms(step.max_ms)}  ` +
        `delivered ${step.delivered}/${step.expected}`
      );
  }
}

/** Runs the load generator against a started target, sampling the target as it goes. */
async function runLoadgen(target, port, c, opts) {
  const args = [
    "--addr", `127.0.0.1:${port}`,
    "--target", target.name,
    ...scenarioArgs(c, opts),
    "--jwt-secret", HERALD.jwtSecret,
    "--publish-key", HERALD.publishKey,
    "--jwt-issuer", HERALD.issuer,
    "--jwt-audience", HERALD.audience,
  ];
  const [cmd, argv] = pinned(LOADGEN_CPU, opts.loadgen, args, opts.pin);
  const child = track(spawn(cmd, argv, { cwd: root, stdio: ["ignore", "pipe", "pipe"] }));
  const err = new Tail();
  const other = new Tail(4096);
  child.stderr.on("data", (d) => err.push(d));
  const steps = [];
  let peakRss = 0;
  let peakParentRss = 0;
  const poll = setInterval(() => {
    const s = sample(target.measurePid);
    if (s) peakRss = Math.max(peakRss, s.rss_kb);
    if (target.servingPids.length) {
      const p = sample(target.pid);
      if (p) peakParentRss = Math.max(peakParentRss, p.rss_kb);
    }
  }, 100);
  let buffered = "";
  child.stdout.on("data", (d) => {
    buffered += d;
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (!line.startsWith("{")) {
        if (line) other.push(`${line}\n`);
        continue;
      }
      let step;
      try {
        step = JSON.parse(line);
      } catch {
        other.push(`${line}\n`);
        continue;
      }
      // Sampled as the step's line arrives: the target's state at the end of that step.
      step.sample = sample(target.measurePid);
      if (target.servingPids.length) step.parent_sample = sample(target.pid);
      if (step.sample) peakRss = Math.max(peakRss, step.sample.rss_kb);
      steps.push(step);
      console.log(`    ${describe(step)}`);
    }
  });
  const timeoutMs = loadgenTimeoutMs(c, opts);
  let timedOut = false;
  const result = await new Promise((resolve) => {
    const timer = setTimeout(async () => {
      timedOut = true;
      child.kill("SIGTERM");
      if (!(await exited(child, 5_000))) child.kill("SIGKILL");
    }, timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
    child.once("error", (e) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, spawnError: e.message });
    });
  });
  clearInterval(poll);
  let error = null;
  if (result.spawnError) error = `loadgen failed to start: ${result.spawnError}`;
  else if (timedOut) error = `loadgen timed out after ${Math.round(timeoutMs / 1000)} s`;
  else if (result.code !== 0) error = `loadgen exited with ${result.code ?? result.signal}`;
  if (!error && steps.length === 0) error = "loadgen reported no steps";
  return {
    steps,
    error,
    peak_rss_kb: peakRss || null,
    peak_parent_rss_kb: peakParentRss || null,
    loadgen_stderr: err.text.slice(-4000),
    loadgen_other_stdout: other.text,
  };
}

const fmtN = (x) =>
  typeof x === "number" ? x.toLocaleString("en-US", { maximumFractionDigits: x >= 100 ? 0 : 1 }) : "–";

/** CPU per delivery and memory per connection from the samples. */
function metrics(run, before, parentBefore) {
  const steps = run.steps;
  const delivered = steps.reduce((s, x) => s + (x.delivered ?? 0), 0);
  let prev = before;
  for (const step of steps) {
    if (step.sample && prev) {
      step.cpu_us = step.sample.cpu_us - prev.cpu_us;
      step.cpu_us_per_delivery = step.delivered > 0 ? step.cpu_us / step.delivered : null;
    }
    if (step.sample) prev = step.sample;
  }
  const last = [...steps].reverse().find((s) => s.sample)?.sample ?? null;
  const first = steps[0]?.sample ?? null;
  const m = {
    rss_before_kb: before?.rss_kb ?? null,
    cpu_us_total: last && before ? last.cpu_us - before.cpu_us : null,
    delivered_total: delivered,
  };
  m.cpu_us_per_delivery_all = m.cpu_us_total !== null && delivered > 0 ? m.cpu_us_total / delivered : null;
  const laterDelivered = steps.slice(1).reduce((s, x) => s + (x.delivered ?? 0), 0);
  m.cpu_us_per_delivery =
    steps.length > 1 && first && last && laterDelivered > 0
      ? (last.cpu_us - first.cpu_us) / laterDelivered
      : m.cpu_us_per_delivery_all;
  const n = run.subscribers;
  m.rss_connected_kb = first?.rss_kb ?? null;
  m.mem_kb_per_conn = first && before ? (first.rss_kb - before.rss_kb) / n : null;
  m.mem_kb_per_conn_peak = run.peak_rss_kb && before ? (run.peak_rss_kb - before.rss_kb) / n : null;
  if (parentBefore) {
    const parentLast = [...steps].reverse().find((s) => s.parent_sample)?.parent_sample ?? null;
    m.parent_cpu_us_total = parentLast ? parentLast.cpu_us - parentBefore.cpu_us : null;
    m.parent_rss_before_kb = parentBefore.rss_kb;
  }
  return m;
}

// Scenarios whose sockets stay open while the target is sampled, so CPU per delivery and
// memory per connection mean something.
const SAMPLED = new Set(["fanout", "devices", "users", "connect"]);

async function runOne(round, c, name, opts) {
  const run = {
    round,
    scenario: c.scenario,
    subscribers: c.subscribers,
    rates: c.rates,
    items: c.items,
    repeats: c.repeats,
    idle_seconds: c.idle_seconds,
    target: name,
    started_at: new Date().toISOString(),
    steps: [],
    error: null,
  };
  let target;
  try {
    const port = await freePort();
    target = await startTarget(name, port, c, opts);
    run.port = port;
    run.pid = target.pid;
    run.serving_pids = target.servingPids;
    run.warmup_error = await warmUp(name, port);
    await sleep(1000);
    const before = sample(target.measurePid);
    const parentBefore = target.servingPids.length ? sample(target.pid) : null;
    run.before = before;
    const lg = await runLoadgen(target, port, c, opts);
    Object.assign(run, lg);
    run.after = sample(target.measurePid);
    run.metrics = SAMPLED.has(c.scenario) ? metrics(run, before, parentBefore) : null;
    if (!alive(target.measurePid)) run.error = `${run.error ? `${run.error}; ` : ""}the target died during the run`;
  } catch (e) {
    run.error = e.message;
  } finally {
    if (target) {
      await stopTarget(target);
      run.target_stderr = target.stderr.text.slice(-2000);
    }
    run.finished_at = new Date().toISOString();
  }
  return run;
}

function hostInfo() {
  const list = cpus();
  return { cpu_model: list[0]?.model?.trim() ?? null, cpus: list.length, kernel: release() };
}

function packageVersion(path) {
  try {
    return JSON.parse(readFileSync(path, "utf8")).version;
  } catch {
    return null;
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  preflight(opts);
  const data = {
    name: opts.name,
    profile: opts.profile,
    started_at: new Date().toISOString(),
    finished_at: null,
    host: hostInfo(),
    node: process.version,
    versions: {
      miniflare: packageVersion(join(root, "node_modules/miniflare/package.json")),
      workerd: packageVersion(join(root, "node_modules/workerd/package.json")),
      "socket.io": packageVersion(join(peers, "node_modules/socket.io/package.json")),
      ws: packageVersion(join(peers, "node_modules/ws/package.json")),
    },
    config: {
      rounds: opts.rounds,
      seconds: opts.seconds,
      cases: opts.cases,
      only: opts.only ?? null,
      targets: opts.targets,
      loadgen: opts.loadgen.startsWith(root) ? opts.loadgen.slice(root.length) : opts.loadgen,
      p99_limit_ms: P99_LIMIT_MS,
      pinned: opts.pin,
      target_cpu: opts.pin ? TARGET_CPU : null,
      loadgen_cpu: opts.pin ? LOADGEN_CPU : null,
      clk_tck: CLK_TCK,
    },
    runs: [],
  };
  const total = opts.cases.reduce((n, c) => n + c.rounds * c.targets.length, 0);
  console.log(`bench: ${opts.profile} profile, ${total} runs → ${join(opts.out, `${opts.name}.md`)}`);
  let i = 0;
  for (let round = 1; round <= opts.rounds; round++) {
    for (const c of opts.cases.filter((c) => round <= c.rounds)) {
      // Alternate: each round starts with the next target, so none always goes first.
      const order = c.targets.map((_, k) => c.targets[(k + round - 1) % c.targets.length]);
      for (const name of order) {
        i++;
        console.log(`[${i}/${total}] round ${round}, ${caseLabel(c)}, ${name}`);
        const run = await runOne(round, c, name, opts);
        if (run.error) console.log(`    failed: ${run.error.split("\n")[0]}`);
        else if (run.metrics) {
          const m = run.metrics;
          const cpu = c.scenario === "connect" ? "" : `CPU ${fmtN(m.cpu_us_per_delivery)} µs/delivery, `;
          console.log(`    ${cpu}${fmtN(m.mem_kb_per_conn)} KB/conn`);
        }
        data.runs.push(run);
        writeRaw(data, opts.out);
        if (stopping) return;
        await sleep(500);
      }
    }
  }
  data.finished_at = new Date().toISOString();
  const files = writeReport(data, opts.out);
  console.log(`wrote:\n  ${files.join("\n  ")}`);
}

let stopping = false;
async function interrupt(signal) {
  if (stopping) return;
  stopping = true;
  console.error(`\n${signal}: stopping the target and the load generator`);
  for (const child of running) child.kill("SIGTERM");
  await sleep(3000);
  for (const child of running) child.kill("SIGKILL");
  for (const pid of extraPids) {
    try {
      if (alive(pid)) process.kill(pid, "SIGKILL");
    } catch {}
  }
  process.exit(130);
}
process.on("SIGINT", () => interrupt("SIGINT"));
process.on("SIGTERM", () => interrupt("SIGTERM"));

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
