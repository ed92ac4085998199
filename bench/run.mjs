// Herald against three peers (a hibernating JavaScript Durable Object in workerd, Socket.IO
// 4, a plain Node `ws` server), driven by the Rust load generator, and a report.
//
// Builds nothing: it expects the Worker in build/ (`make bench` or `make build`), the load
// generator at target/release/loadgen (`cargo build --release -p herald-loadgen`) and the
// peers' packages (`npm ci --prefix bench/peers`).
//
// For every round, every case of the profile (scenario × subscribers) and every target,
// alternating targets (the order rotates each round), it starts the target in a fresh
// process pinned to CPU 0 (`taskset -c 0`; for Herald and the JS Durable Object, workerd is
// that process's child and is pinned too), sends one warm-up publish, samples the
// target's CPU time and RSS, runs the load generator pinned to CPU 1, samples again at the
// end of every step and stops the target. bench/report.mjs then writes
// bench/results/<date>-<profile>.{md,json} and SVG plots.
//
// Usage: node bench/run.mjs [--profile short|full] [--rounds N] [--targets herald,jsdo,socketio,ws]
//                           [--loadgen PATH] [--name NAME] [--out DIR] [--no-pin]
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, accessSync, constants } from "node:fs";
import { createServer } from "node:net";
import { cpus, release } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeRaw, writeReport, TARGET_ORDER } from "./report.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const peers = join(root, "bench/peers");

// Herald's credentials: the ones miniflare-tests/harness.mjs configures.
const HERALD = {
  jwtSecret: "test-jwt-secret-that-is-long-enough-0123456789",
  publishKey: "test-publish-key-0123456789",
  issuer: "https://auth.example.test",
  audience: "herald-test",
};

const PROFILES = {
  short: {
    rounds: 3,
    seconds: 2,
    cases: [
      { scenario: "fanout", subscribers: 100, rates: [20, 50, 100, 200] },
      { scenario: "fanout", subscribers: 1000, rates: [20, 50, 100, 200] },
    ],
  },
  full: {
    rounds: 5,
    seconds: 5,
    cases: [
      { scenario: "fanout", subscribers: 100, rates: [20, 50, 100, 200, 500, 1000, 2000] },
      { scenario: "fanout", subscribers: 1000, rates: [20, 50, 100, 200, 500, 1000, 2000] },
      { scenario: "fanout", subscribers: 5000, rates: [20, 50, 100, 200, 500, 1000] },
    ],
  },
};

const TARGETS = {
  herald: { script: "herald-server.mjs", workerd: true },
  jsdo: { script: "jsdo-server.mjs", workerd: true },
  socketio: { script: "socketio-server.mjs", workerd: false },
  ws: { script: "ws-server.mjs", workerd: false },
};

const P99_LIMIT_MS = 100;
const TARGET_CPU = 0;
const LOADGEN_CPU = 1;
const READY_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 15_000;

// ---------------------------------------------------------------------------------------
// Arguments

function parseArgs(argv) {
  const opts = { profile: "short", pin: true };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case "--profile": opts.profile = value(); break;
      case "--rounds": opts.rounds = Number(value()); break;
      case "--targets": opts.targets = value().split(",").map((s) => s.trim()).filter(Boolean); break;
      case "--loadgen": opts.loadgen = value(); break;
      case "--name": opts.name = value(); break;
      case "--out": opts.out = value(); break;
      case "--no-pin": opts.pin = false; break;
      case "-h":
      case "--help":
        console.log(readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n").filter((l) => l.startsWith("// Usage") || l.startsWith("//    ")).join("\n"));
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
  opts.targets ??= TARGET_ORDER;
  for (const t of opts.targets) if (!TARGETS[t]) throw new Error(`unknown target ${t}`);
  opts.loadgen ??= process.env.LOADGEN ?? join(root, "target/release/loadgen");
  opts.name ??= `${new Date().toISOString().slice(0, 10)}-${opts.profile}`;
  if (!/^[A-Za-z0-9._-]+$/.test(opts.name)) throw new Error("--name: letters, digits, . _ - only");
  opts.out ??= join(root, "bench/results");
  return { ...opts, ...profile, rounds: opts.rounds };
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

/** CPU time (µs, user + system, all threads) and RSS (KB) of a live process, or null. */
function sample(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    const cpuUs = ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const rssKb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? NaN);
    return { cpu_us: cpuUs, rss_kb: rssKb, at_ms: Date.now() };
  } catch {
    return null;
  }
}

const alive = (pid) => existsSync(`/proc/${pid}`) && !/^\S+ \(.*\) Z/.test(safeRead(`/proc/${pid}/stat`));
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

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
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
const extraPids = new Set(); // workerd children found via pgrep

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

/** Starts a target; resolves once it printed "ready", with the pid to measure. */
async function startTarget(name, port, opts) {
  const spec = TARGETS[name];
  const [cmd, args] = pinned(TARGET_CPU, process.execPath, [join(peers, spec.script), "--port", String(port)], opts.pin);
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
  const target = { name, child, pid: child.pid, measurePid: child.pid, workerdPid: null, stderr: err, stdout: out };
  if (ready !== "ready") {
    await stopTarget(target);
    throw new Error(`${name} did not start: ${ready}\n${err.text.slice(-2000)}`);
  }
  if (spec.workerd) {
    // taskset execs node, so child.pid is the Miniflare process; workerd is its child.
    let workerd;
    for (let i = 0; i < 50 && !workerd; i++) {
      workerd = childrenOf(child.pid).find((c) => c.comm === "workerd");
      if (!workerd) await sleep(100);
    }
    if (!workerd) {
      await stopTarget(target);
      throw new Error(`${name}: no workerd child of ${child.pid}`);
    }
    target.workerdPid = workerd.pid;
    target.measurePid = workerd.pid;
    extraPids.add(workerd.pid);
    if (opts.pin) {
      // Inherited from the parent already; -a pins every thread of it explicitly.
      execFileSync("taskset", ["-apc", String(TARGET_CPU), String(workerd.pid)], { stdio: "ignore" });
    }
  }
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
  if (target.workerdPid) {
    if (!(await waitGone(target.workerdPid, 10_000))) {
      try {
        process.kill(target.workerdPid, "SIGKILL");
      } catch {}
      await waitGone(target.workerdPid, 5_000);
    }
    extraPids.delete(target.workerdPid);
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
  return (120 + c.rates.length * (opts.seconds + 20) + c.subscribers / 20) * 1000;
}

/** Runs the load generator against a started target, sampling the target as it goes. */
async function runLoadgen(target, port, c, opts) {
  const args = [
    "--addr", `127.0.0.1:${port}`,
    "--target", target.name,
    "--scenario", c.scenario,
    "--subscribers", String(c.subscribers),
    "--rates", c.rates.join(","),
    "--seconds", String(opts.seconds),
    "--jwt-secret", HERALD.jwtSecret,
    "--publish-key", HERALD.publishKey,
    "--jwt-issuer", HERALD.issuer,
    "--jwt-audience", HERALD.audience,
    "--p99-limit-ms", String(P99_LIMIT_MS),
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
    if (target.workerdPid) {
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
      if (target.workerdPid) step.parent_sample = sample(target.pid);
      if (step.sample) peakRss = Math.max(peakRss, step.sample.rss_kb);
      steps.push(step);
      console.log(
        `    ${String(step.rate).padStart(5)}/s  ${fmtN(step.deliveries_per_s)} deliveries/s  ` +
          `p50 ${fmtN(step.p50_ms)}  p99 ${fmtN(step.p99_ms)}  max ${fmtN(step.max_ms)} ms  ` +
          `delivered ${step.delivered}/${step.expected}`,
      );
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

async function runOne(round, c, name, opts) {
  const run = {
    round,
    scenario: c.scenario,
    subscribers: c.subscribers,
    rates: c.rates,
    target: name,
    started_at: new Date().toISOString(),
    steps: [],
    error: null,
  };
  let target;
  try {
    const port = await freePort();
    target = await startTarget(name, port, opts);
    run.port = port;
    run.pid = target.pid;
    run.workerd_pid = target.workerdPid;
    run.warmup_error = await warmUp(name, port);
    await sleep(1000);
    const before = sample(target.measurePid);
    const parentBefore = target.workerdPid ? sample(target.pid) : null;
    run.before = before;
    const lg = await runLoadgen(target, port, c, opts);
    Object.assign(run, lg);
    run.after = sample(target.measurePid);
    run.metrics = metrics(run, before, parentBefore);
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
  const total = opts.rounds * opts.cases.length * opts.targets.length;
  console.log(`bench: ${opts.profile} profile, ${total} runs → ${join(opts.out, `${opts.name}.md`)}`);
  let i = 0;
  for (let round = 1; round <= opts.rounds; round++) {
    for (const c of opts.cases) {
      // Alternate: each round starts with the next target, so none always goes first.
      const order = opts.targets.map((_, k) => opts.targets[(k + round - 1) % opts.targets.length]);
      for (const name of order) {
        i++;
        console.log(`[${i}/${total}] round ${round}, ${c.scenario} ${c.subscribers} subscribers, ${name}`);
        const run = await runOne(round, c, name, opts);
        if (run.error) console.log(`    failed: ${run.error.split("\n")[0]}`);
        else {
          const m = run.metrics;
          console.log(
            `    CPU ${fmtN(m.cpu_us_per_delivery)} µs/delivery, ${fmtN(m.mem_kb_per_conn)} KB/conn`,
          );
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
