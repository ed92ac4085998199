// Starting, sampling and stopping one benchmark target, and driving the load generator
// against it: what bench/run.mjs (every case) and bench/profile.mjs (the profile of one
// publish) share. A target is a peer server in bench/peers/ started in a fresh process,
// pinned to TARGET_CPU (with the processes that serve for it, such as workerd, found by
// name among its children); the load generator runs pinned to LOADGEN_CPU. Every process
// started here is tracked, so that `stopAll` can end exactly those on an interrupt.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const root = fileURLToPath(new URL("..", import.meta.url));
export const peers = join(root, "bench/peers");

// Herald's credentials: the ones miniflare-tests/harness.mjs configures.
export const HERALD = {
  jwtSecret: "test-jwt-secret-that-is-long-enough-0123456789",
  publishKey: "test-publish-key-0123456789",
  issuer: "https://auth.example.test",
  audience: "herald-test",
};

// How to start each target: its server script and arguments, whether it runs in workerd,
// and the names of the child processes that do its serving (measured instead of the launcher).
export const TARGETS = {
  herald: { script: "herald-server.mjs", workerd: true, serving: ["workerd"] },
  jsdo: { script: "jsdo-server.mjs", workerd: true, serving: ["workerd"] },
  "jsdo-inbox": { script: "jsdo-server.mjs", args: ["--inbox"], workerd: true, serving: ["workerd"] },
  socketio: { script: "socketio-server.mjs", workerd: false },
  ws: { script: "ws-server.mjs", workerd: false },
  django: { script: "django-server.mjs", workerd: false, serving: ["redis-server", "python"] },
};

export const P99_LIMIT_MS = 100;
export const TARGET_CPU = 0;
export const LOADGEN_CPU = 1;
const READY_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 15_000;

export const CLK_TCK = (() => {
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
export function sample(pids) {
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

export const alive = (pids) =>
  [].concat(pids).every((pid) => existsSync(`/proc/${pid}`) && !/^\S+ \(.*\) Z/.test(safeRead(`/proc/${pid}/stat`)));
export const safeRead = (path) => {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
};
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

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

// Processes started here, so an interrupt can stop them (by pid, nothing broader).
const running = new Set();
function track(child) {
  running.add(child);
  child.once("exit", () => running.delete(child));
  return child;
}
const extraPids = new Set(); // serving children (workerd, redis-server, Python) found via pgrep

/** On an interrupt: ends every process started here (SIGTERM, then SIGKILL after 3 s). */
export async function stopAll() {
  for (const child of running) child.kill("SIGTERM");
  await sleep(3000);
  for (const child of running) child.kill("SIGKILL");
  for (const pid of extraPids) {
    try {
      if (alive(pid)) process.kill(pid, "SIGKILL");
    } catch {}
  }
}

/** The header comment of the script at `url` (its `import.meta.url`) from its "Usage:" line on. */
function usage(url) {
  const lines = readFileSync(fileURLToPath(url), "utf8").split("\n");
  const from = lines.findIndex((l) => l.startsWith("// Usage"));
  const to = lines.findIndex((l, i) => i > from && !l.startsWith("//"));
  return lines.slice(from, to).map((l) => l.slice(3)).join("\n");
}

/**
 * Reads a bench script's arguments flag by flag: `take(flag, value, list)` handles one and
 * answers false for a flag it does not know (an error); `value()` reads the flag's value
 * (`--x=v` or the next argument), `list()` it as a comma-separated list. `-h`/`--help`
 * prints the script's usage (its header comment at `url`) and exits.
 */
export function readFlags(argv, url, take) {
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => inline ?? argv[++i];
    const list = () => value().split(",").map((s) => s.trim()).filter(Boolean);
    if (flag === "-h" || flag === "--help") {
      console.log(usage(url));
      process.exit(0);
    }
    if (!take(flag, value, list)) throw new Error(`unknown argument ${argv[i]} (see --help)`);
  }
}

/** Set once an interrupt began stopping everything. */
let stopping = false;

/** Whether an interrupt is stopping the run: a loop between runs ends then. */
export const interrupted = () => stopping;

/**
 * Runs a bench script's `main`: an interrupt stops the target and the load generator it
 * started before exiting, and a failure exits with its message.
 */
export function runMain(main) {
  const interrupt = async (signal) => {
    if (stopping) return;
    stopping = true;
    console.error(`\n${signal}: stopping the target and the load generator`);
    await stopAll();
    process.exit(130);
  };
  process.on("SIGINT", () => interrupt("SIGINT"));
  process.on("SIGTERM", () => interrupt("SIGTERM"));
  main().catch((e) => {
    console.error(e.message);
    process.exit(1);
  });
}

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

/**
 * Starts a target; resolves once it printed "ready", with the pid to measure. `extraArgs`
 * go to its server script after the case's own (bench/profile.mjs: `--inspector-port N`).
 */
export async function startTarget(name, port, c, opts, extraArgs = []) {
  const spec = TARGETS[name];
  const script = [join(peers, spec.script), "--port", String(port), ...(spec.args ?? []), ...serverArgs(name, c), ...extraArgs];
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

export async function stopTarget(target) {
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
export async function warmUp(name, port) {
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

/**
 * The load generator's options for case `c`, beyond address, target and credentials. A
 * stepped case stops after a step whose p99 exceeds `c.p99_limit_ms` (P99_LIMIT_MS), and
 * waits `c.settle_seconds` (the load generator's default) between connecting and its first step.
 */
function scenarioArgs(c, opts) {
  const args = ["--scenario", c.scenario, "--subscribers", String(c.subscribers)];
  switch (c.scenario) {
    case "fanout":
    case "devices":
    case "users":
      return [
        ...args,
        "--rates", c.rates.join(","),
        "--seconds", String(opts.seconds),
        "--p99-limit-ms", String(c.p99_limit_ms ?? P99_LIMIT_MS),
        ...(c.settle_seconds === undefined ? [] : ["--settle-seconds", String(c.settle_seconds)]),
      ];
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

/**
 * Runs the load generator against a started target, sampling the target as it goes.
 * `onStep(step)`, if given, is called as each result line arrives, right after the target
 * was sampled for it (bench/profile.mjs starts and stops its profiler there).
 */
export async function runLoadgen(target, port, c, opts, onStep) {
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
      onStep?.(step);
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
    // "close", not "exit": after it, every line the load generator wrote has been read.
    child.once("close", (code, signal) => {
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

/** A number for a progress line: grouped, at most one decimal. */
export const fmtN = (x) =>
  typeof x === "number" ? x.toLocaleString("en-US", { maximumFractionDigits: x >= 100 ? 0 : 1 }) : "–";
