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
// end of every step and stops the target (bench/targets.mjs does the starting, sampling
// and stopping, and drives the load generator). bench/report.mjs then writes
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
// After every case, when the `users` case ran against Herald or the JS DO inbox, one more
// run each (Herald, then `jsdo-inbox`) profiles where the CPU time of one publish goes
// (bench/profile.mjs: the `users` scenario at a moderate rate with V8's sampling
// profiler on in workerd); the report shows its tables. `--no-publish-profile` skips it.
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
//                           [--no-publish-profile]
//   --cases keeps the profile's cases whose scenario, or scenario/subscribers, is listed
//   --rounds and --seconds override the profile's (a case's own rounds stay a maximum)
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, accessSync, constants } from "node:fs";
import { cpus, release } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../miniflare-tests/harness.mjs";
import { PROFILE_DEFAULTS, profilePublish, textTable } from "./profile.mjs";
import { caseLabel, writeRaw, writeReport, TARGET_ORDER } from "./report.mjs";
import {
  LOADGEN_CPU,
  TARGETS,
  TARGET_CPU,
  P99_LIMIT_MS,
  CLK_TCK,
  alive,
  fmtN,
  peers,
  root,
  runLoadgen,
  safeRead,
  sample,
  sleep,
  startTarget,
  interrupted,
  runMain,
  readFlags,
  stopTarget,
  warmUp,
} from "./targets.mjs";

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

// File descriptors beyond one per socket: the runtime's own, HTTP clients, pipes.
const SPARE_FDS = 1024;

// ---------------------------------------------------------------------------------------
// Arguments


function parseArgs(argv) {
  const opts = { profile: "short", pin: true, profilePublish: true };
  readFlags(argv, import.meta.url, (flag, value, list) => {
    switch (flag) {
      case "--profile": opts.profile = value(); break;
      case "--rounds": opts.rounds = Number(value()); break;
      case "--targets": opts.targets = list(); break;
      case "--cases": opts.only = list(); break;
      case "--seconds": opts.seconds = Number(value()); break;
      case "--loadgen": opts.loadgen = value(); break;
      case "--name": opts.name = value(); break;
      case "--out": opts.out = value(); break;
      case "--no-pin": opts.pin = false; break;
      case "--no-publish-profile": opts.profilePublish = false; break;
      default: return false;
    }
    return true;
  });
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

/** The targets the publish profile runs for: those of the `users` case it has rules for. */
function profiledTargets(opts) {
  if (!opts.profilePublish) return [];
  const users = opts.cases.find((c) => c.scenario === "users");
  return users ? PROFILE_DEFAULTS.targets.filter((t) => users.targets.includes(t)) : [];
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
        if (interrupted()) return;
        await sleep(500);
      }
    }
  }
  const profiled = profiledTargets(opts);
  if (profiled.length) {
    console.log(`[profile] where one publish's CPU time goes: ${profiled.join(", ")}`);
    data.publish_profile = await profilePublish({ targets: profiled, loadgen: opts.loadgen, pin: opts.pin });
    for (const a of Object.values(data.publish_profile.targets)) console.log(textTable(a).map((l) => `    ${l}`).join("\n"));
    writeRaw(data, opts.out);
    if (interrupted()) return;
  }
  data.finished_at = new Date().toISOString();
  const files = writeReport(data, opts.out);
  console.log(`wrote:\n  ${files.join("\n  ")}`);
}

runMain(main);
