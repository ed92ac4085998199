// Where the CPU time of one publish to one user goes, measured: the `users` scenario (1,000
// users with a socket each, every publish POSTed to one random user) at one moderate rate
// that every target sustains, with V8's sampling profiler running in workerd, for Herald
// and for the hand-written JS Durable Object inbox (`jsdo-inbox`, the floor).
//
// For each target in turn (never two at once): start it pinned like bench/run.mjs does,
// with workerd's DevTools inspector on a free port (`--inspector-port`), send one warm-up
// publish, open the inspector's isolates (the Worker's, `core:user:`, which its Durable
// Objects share, and Miniflare's entry worker, `core:entry`, which relays every request
// to it) and start their profilers, then run the load generator: three steps of `--rate`
// publishes/s for `--seconds` each. The first opens the sockets, wakes the objects and
// lets V8 optimise; the second is the profiled window (cut out of the profile by the
// samples' timestamps, between the two steps' result lines); the profiler stops as the
// third begins, which gives the process's CPU time without it. The target's CPU time
// (/proc: the process, its main thread, V8's sampling threads) is read at each switch.
//
// Every non-idle sample of the Worker's isolate is sorted into one row by walking its
// stack against the target's ordered rules (RULES below: the first that matches wins),
// weighed by the time since the sample before it (at most one sampling period). A row
// is given as µs per publish of the window and as a share of the profiled total; the
// entry worker's total, and the process's CPU time outside both isolates (/proc less the
// samples), follow. Rules are checked against real profiles with --explain and --top.
//
// Usage: node bench/profile.mjs [--rate R] [--seconds S] [--users N] [--targets herald,jsdo-inbox]
//                               [--interval US] [--out FILE.json] [--top N] [--explain N]
//                               [--save-profiles DIR] [--from DIR]
//                               [--loadgen PATH] [--no-pin]
//   --interval     the sampling interval asked of V8, µs (250; V8 adds ~100 to each)
//   --users N      users, one socket each (1,000)
//   --top N        also print the N functions with the most self and inclusive time
//   --explain N    also print each row's N (≤ 8) largest parts: own frame < nearest named
//                  frame [side]
//   --save-profiles DIR  keep the raw profiles (<target>.<isolate>.cpuprofile, which Chrome
//                  DevTools opens) and the window's counts (<target>.window.json)
//   --from DIR     analyse what --save-profiles kept, without running anything
// bench/run.mjs calls profilePublish() once per benchmark, after its other cases.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../miniflare-tests/harness.mjs";
import { Inspector } from "./inspector.mjs";
import { median } from "./report.mjs";
import {
  CLK_TCK,
  LOADGEN_CPU,
  alive,
  root,
  runLoadgen,
  safeRead,
  sample,
  startTarget,
  runMain,
  readFlags,
  stopTarget,
  warmUp,
} from "./targets.mjs";

/** What profilePublish() runs unless told otherwise. */
export const PROFILE_DEFAULTS = {
  targets: ["herald", "jsdo-inbox"],
  rate: 200,
  seconds: 4,
  subscribers: 1000,
  interval_us: 250,
};
const INSPECTOR_TIMEOUT_MS = 30_000;
// The Worker's isolate and Miniflare's entry worker in workerd's inspector list; the other
// entries (outbound, cache, dev control) are Miniflare's and serve nothing here.
const ISOLATES = { worker: /^core:user:/, entry: /^core:entry$/ };
// Every sample interrupts workerd's main thread (a signal, a stack walk), some 20 µs each:
// the entry worker, of which only the total is shown, is sampled at most this often.
const ENTRY_INTERVAL_US = 1000;
// V8's sampling thread, one per profiled isolate, started by Profiler.start.
const SAMPLER_THREAD = "v8:ProfEvntProc";

// ---------------------------------------------------------------------------------------
// Rules

// How a sample is sorted. A target's rules have
// - `task`: the frames that poll one async task (Rust futures under wasm-bindgen), or null.
//   A sample's entry is its innermost task frame, else its two outermost script frames;
// - `sides`: which part of the program a frame belongs to. A sample's side is that of the
//   outermost marker on its stack, else the side most of its entry's samples have;
// - `issuer` (with `sqlRow`): the program's own frames, which name the SQL statements they run;
// - `rows`, in order of precedence, each with `row` (its label, or a function of the
//   stack making one) and tests that must all hold: `leaf` (the sample's own frame),
//   `any` (some frame on the stack), `side`. A test is a RegExp on the frame's name, a
//   { name, file } pair of RegExps, or a list of either (any one). The first row whose
//   tests hold takes the sample; OTHER_ROW takes the rest;
// - `show`: the order rows are shown in ("SQL:" for all the SQL statements' rows).
// Frame names are demangled and lose their `::h<hash>` and wasm-bindgen `shim` suffixes.
const NATIVE = /^$/; // the runtime's own functions have no script
const SQL_HERALD = /^worker::sql::|SqlStorageCursor|^__wbg_exec_/;
const ROW = {
  entry: "Worker: request entry and routing (Request conversion, cf, entrypoint)",
  body: "Worker: reading the request body",
  auth: "Worker: authentication (producer key, access)",
  parse: "Worker: parsing the publish (JSON, publish::)",
  answer: "Worker: answering (Response building)",
  stub: "call into the object: the stub's fetch inside workerd (routing, waking an evicted object)",
  crossing: "call into the object: request and response built and read, both sides",
  hub: "UserHub: hub rules and effects (the rest of the object)",
  build: "building frames (serde → JSON)",
  send: "sending frames (WebSocket send)",
  log: "logging (log::event, console.log)",
  alarm: "scheduling the alarm (timers, get/setAlarm)",
  stats: "stats report (ObjectStats, StatsHub)",
  startup: "object start-up (constructor, schema)",
  alarmRun: "alarm handler runs",
  glue: "async glue (wasm-bindgen futures, microtasks, promise callbacks)",
  program: "runtime, no JS frame on the stack ((program))",
  gc: "garbage collection",
};
const JS_ROW = {
  entry: "Worker: fetch and routing (URL, idFromName, get)",
  stub: "call into the object: the stub's fetch inside workerd (routing, waking an evicted object)",
  body: "Inbox: reading the request body (text)",
  sql: "SQL: the one INSERT … RETURNING seq",
  send: "sending the frame (getWebSockets, send)",
  answer: "Inbox: the Response (Response.json)",
  rest: "Inbox: URL and the frame's template (the rest of the object)",
  startup: "object start-up (constructor, schema)",
};
const RULES = {
  herald: {
    task: /^js_sys::futures::future_to_promise::\{\{closure\}\}::\{\{closure\}\}$/,
    sides: [
      { side: "Worker", marker: /^herald::edge::(api|producer|http|keys)::|^<?herald::(publish|auth|access|route)::|^fetch$|^WorkerEntrypoint$/ },
      {
        side: "UserHub",
        marker: /^<?herald::edge::(user_hub|runner|sql_inbox)::|^<?herald::(hub|history|inbox|frame|socket|timer)::|^userhub_/,
      },
      { side: "StatsHub", marker: /StatsHub|^<?herald::stats::|^statshub_/ },
    ],
    issuer: /^<?herald::/,
    rows: [
      { row: ROW.gc, leaf: /^\(garbage collector\)$/ },
      { row: ROW.program, leaf: /^\(program\)$/ },
      { row: ROW.log, any: /^herald::edge::log::|^__wbg_log_/ },
      { row: ROW.startup, any: /^(userhub|roomhub|statshub)_new$|^herald::edge::sql_inbox::SqlInbox::open$/ },
      { row: ROW.alarmRun, any: /^(userhub|roomhub)_alarm$|^herald::edge::(user_hub|room_hub|runner)::.*::alarm\b/ },
      { row: sqlRow, any: SQL_HERALD },
      { row: ROW.alarm, any: /::schedule\b|^herald::timer::|^__wbg_(set|get|delete)Alarm_/ },
      { row: ROW.stats, any: /^herald::edge::stats::|::report$|^<?herald::stats::/ },
      { row: ROW.stats, side: "StatsHub" },
      { row: ROW.build, any: /^<?herald::frame::/ },
      { row: ROW.send, any: /^__wbg_sendToAll_|^herald::edge::runner::send|^worker::websocket::WebSocket::send|^__wbg_getWebSockets_/ },
      { row: ROW.body, any: /^herald::edge::http::bounded_body/ },
      { row: ROW.auth, any: /^herald::(auth|access)::|^herald::edge::(secret|keys)\b/ },
      { row: ROW.stub, leaf: { name: /^fetch$/, file: NATIVE }, any: /^worker::durable::Stub::/ },
      { row: ROW.crossing, any: /^herald::edge::call::|^worker::durable::(Stub|ObjectNamespace)::|^worker::request::Request::new_with_init/ },
      { row: ROW.parse, any: /^herald::publish::|^herald::edge::random_id|^serde_json::de::/, side: "Worker" },
      { row: ROW.answer, any: /^herald::edge::json_response|^worker::response::/, side: "Worker" },
      { row: ROW.crossing, any: /^worker::request::|^worker::response::|^herald::edge::json_response|^userhub_fetch$/, side: "UserHub" },
      {
        row: ROW.glue,
        leaf: /^js_sys::futures::|^wasm_bindgen::|^__wbg_queueMicrotask_|^queueMicrotask$|^__wbg_new_typed_|_wbg_cb_unref|^__wbindgen_|^js-to-wasm|^wasm-to-js$|^__wbg_then_/,
      },
      { row: ROW.entry, side: "Worker" },
      { row: ROW.hub, side: "UserHub" },
    ],
    show: [ROW.entry, ROW.body, ROW.auth, ROW.parse, ROW.answer, ROW.stub, ROW.crossing, "SQL:", ROW.hub, ROW.build, ROW.send, ROW.log, ROW.alarm, ROW.stats, ROW.startup, ROW.alarmRun, ROW.glue, ROW.program, ROW.gc],
  },
  "jsdo-inbox": {
    task: null,
    sides: [
      { side: "Worker", marker: /^idFromName$/ },
      { side: "Inbox", marker: /^(exec|getWebSockets|acceptWebSocket)$/ },
    ],
    rows: [
      { row: ROW.gc, leaf: /^\(garbage collector\)$/ },
      { row: ROW.program, leaf: /^\(program\)$/ },
      { row: JS_ROW.startup, any: { name: /^Inbox$/, file: /\.m?js$/ } },
      { row: JS_ROW.sql, any: { name: /^(exec|one|toArray|raw|next)$/, file: NATIVE } },
      { row: JS_ROW.send, any: { name: /^(getWebSockets|send)$/, file: NATIVE } },
      { row: JS_ROW.stub, leaf: { name: /^fetch$/, file: NATIVE }, side: "Worker" },
      { row: JS_ROW.body, any: { name: /^text$/, file: NATIVE }, side: "Inbox" },
      { row: JS_ROW.answer, any: { name: /^(Response|json)$/, file: NATIVE }, side: "Inbox" },
      { row: JS_ROW.entry, side: "Worker" },
      { row: JS_ROW.rest, side: "Inbox" },
    ],
    show: [JS_ROW.entry, JS_ROW.stub, JS_ROW.body, JS_ROW.sql, JS_ROW.send, JS_ROW.answer, JS_ROW.rest, JS_ROW.startup, ROW.program, ROW.gc],
  },
};
const OTHER_ROW = "other JS/wasm";
const IDLE = /^\(idle\)$/;

/** An SQL row's label: the statement's nearest issuing frame, and the frame that called it. */
function sqlRow(stack, ctx) {
  const at = stack.findIndex((f) => matchFrame(f, SQL_HERALD));
  const named = stack.slice(at + 1).filter((f) => matchFrame(f, ctx.rules.issuer));
  const [issuer, caller] = named.map((f) => short(f.name));
  if (!issuer) return `SQL: (issued in inlined code of the ${ctx.side ?? "?"} task)`;
  return `SQL: ${issuer}${caller ? ` ← ${caller}` : ` ← (${ctx.side ?? "?"} task)`}`;
}

// ---------------------------------------------------------------------------------------
// Names

/** Legacy Rust mangling (`_ZN6herald4edge…17h<hash>E`) to a path, if a name is mangled. */
function demangle(name) {
  const m = /^_ZN((?:\d+[^\d].*?)+)E$/.exec(name);
  if (!m) return name;
  const parts = [];
  let rest = m[1];
  while (rest) {
    const len = /^(\d+)/.exec(rest);
    if (!len) return name;
    const n = Number(len[1]);
    parts.push(rest.slice(len[1].length, len[1].length + n));
    rest = rest.slice(len[1].length + n);
  }
  const decode = (s) =>
    s
      .replace(/^_\$/, "$")
      .replace(/\$LT\$/g, "<")
      .replace(/\$GT\$/g, ">")
      .replace(/\$RF\$/g, "&")
      .replace(/\$C\$/g, ",")
      .replace(/\$u20\$/g, " ")
      .replace(/\$u7b\$/g, "{")
      .replace(/\$u7d\$/g, "}")
      .replace(/\.\./g, "::");
  return parts.map(decode).join("::");
}

/** A frame's name without its hash and wasm-bindgen shim suffixes. */
function cleanName(functionName) {
  return demangle(functionName || "(anonymous)")
    .replace(/( externref shim| multivalue shim)+$/, "")
    .replace(/::h[0-9a-f]{16}$/, "");
}

/** A Rust path's last two segments (the impl's type for a trait method), for labels. */
function short(name) {
  const impl = /^<(?:[\w:]+::)?(\w+)(?:<[^>]*>)? as [^>]+>::(.*)$/.exec(name);
  const path = impl ? `${impl[1]}::${impl[2]}` : name;
  const segments = path.replace(/::\{\{closure\}\}/g, "").split("::");
  return segments.slice(-2).join("::");
}

function matchFrame(frame, test) {
  if (Array.isArray(test)) return test.some((t) => matchFrame(frame, t));
  if (test instanceof RegExp) return test.test(frame.name);
  return test.name.test(frame.name) && (!test.file || test.file.test(frame.file));
}

// ---------------------------------------------------------------------------------------
// Analysis

/**
 * The sampler's period: V8 samples every `interval` plus the time it takes to take a
 * sample, so the gaps between samples cluster there and at its multiples (ticks when the
 * isolate was not entered record nothing); shorter gaps are extra samples. The median of
 * the gaps around the shortest well-filled cluster.
 */
function samplerPeriod(deltas, intervalUs) {
  const rhythm = deltas.filter((d) => d >= 0.9 * intervalUs && d <= 10 * intervalUs + 2000);
  if (rhythm.length === 0) return intervalUs;
  const bin = Math.max(10, intervalUs / 10);
  const bins = new Map();
  for (const d of rhythm) bins.set(Math.floor(d / bin), (bins.get(Math.floor(d / bin)) ?? 0) + 1);
  // Two bins at a time, so that a cluster split by a bin edge still counts whole.
  const pairs = [...bins.keys()].map((b) => [b, (bins.get(b) ?? 0) + (bins.get(b + 1) ?? 0)]).sort((a, b) => a[0] - b[0]);
  const most = Math.max(...pairs.map(([, n]) => n));
  const [first] = pairs.find(([, n]) => n >= 0.3 * most);
  const centre = (first + 1) * bin;
  return median(rhythm.filter((d) => Math.abs(d - centre) <= 0.25 * centre)) ?? centre;
}

/**
 * Sorts the samples a profile took between `fromUs` and `toUs` (V8's monotonic clock)
 * into rows, weighing each by the time since the sample before it, but at most one
 * sampler period when a longer gap says the isolate was left in between (V8 samples only
 * while the isolate is entered, and takes extra samples in some runtime calls, so a
 * count of samples would not be time). Answers { rows: Map(label → µs), busy_us, busy,
 * idle, period_us, self, total } where `busy` counts the non-idle samples.
 */
export function classify(profile, rules, intervalUs, fromUs = -Infinity, toUs = Infinity) {
  const nodes = new Map();
  for (const n of profile.nodes) {
    const url = n.callFrame.url ?? "";
    nodes.set(n.id, {
      id: n.id,
      raw: `${n.callFrame.functionName}@${url}:${n.callFrame.lineNumber}:${n.callFrame.columnNumber}`,
      name: cleanName(n.callFrame.functionName),
      file: url.split("/").pop(),
      children: n.children ?? [],
      parent: null,
    });
  }
  for (const n of nodes.values()) for (const c of n.children) nodes.get(c).parent = n;
  const stackOf = (n) => {
    const stack = [];
    for (let x = n; x && x.name !== "(root)"; x = x.parent) stack.push(x);
    return stack; // leaf first
  };

  // The samples in the window: per node, how many and their time.
  const inWindow = [];
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i];
    if (at >= fromUs && at <= toUs) inWindow.push(i);
  }
  const period = samplerPeriod(inWindow.map((i) => profile.timeDeltas[i]), intervalUs);
  const counts = new Map();
  const weights = new Map();
  for (const i of inWindow) {
    const id = profile.samples[i];
    const gap = profile.timeDeltas[i];
    counts.set(id, (counts.get(id) ?? 0) + 1);
    weights.set(id, (weights.get(id) ?? 0) + (gap >= 0 && gap <= 1.5 * period ? gap : period));
  }

  // Per sampled node: its stack, its own side (outermost marker), its entry.
  const info = new Map();
  for (const id of counts.keys()) {
    const stack = stackOf(nodes.get(id));
    let side = null;
    for (const f of stack) {
      const s = rules.sides.find((d) => d.marker.test(f.name));
      if (s) side = s.side;
    }
    // The task it belongs to, or the two outermost script frames (a proxy trap of the
    // bundle's glue and the class or function it calls, say).
    const task = rules.task ? stack.find((f) => rules.task.test(f.name)) : undefined;
    const scripts = stack.filter((f) => /\.m?js$|\.wasm/.test(f.file)).slice(-2);
    const entry = task ? task.raw : scripts.length ? scripts.map((f) => f.raw).join(" > ") : null;
    info.set(id, { stack, side, entry, idle: IDLE.test(stack[0]?.name ?? "(idle)") });
  }
  // An entry's side: the one most of its samples with a side of their own have.
  const votes = new Map();
  for (const [id, i] of info) {
    if (!i.entry || !i.side) continue;
    const v = votes.get(i.entry) ?? new Map();
    v.set(i.side, (v.get(i.side) ?? 0) + counts.get(id));
    votes.set(i.entry, v);
  }
  const entrySide = (entry) => {
    const v = votes.get(entry);
    return v ? [...v].sort((a, b) => b[1] - a[1])[0][0] : null;
  };

  const rows = new Map();
  const detailOf = new Map();
  const self = new Map();
  const total = new Map();
  const add = (map, key, us) => map.set(key, (map.get(key) ?? 0) + us);
  // Where a function lives: its script (the wasm module without its hash), or the runtime.
  const home = (f) => (f.file ? f.file.replace(/-[0-9a-f]{8}$/, "") : /^\(|^js-to-wasm|^wasm-to-js$/.test(f.name) ? "V8" : "runtime");
  const key = (f) => `${f.name} (${home(f)})`;
  let busy = 0;
  let busyUs = 0;
  let idle = 0;
  for (const [id, i] of info) {
    if (i.idle) {
      idle += counts.get(id);
      continue;
    }
    const us = weights.get(id);
    busy += counts.get(id);
    busyUs += us;
    const side = i.side ?? (i.entry ? entrySide(i.entry) : null);
    const rule = rules.rows.find(
      (r) =>
        (!r.leaf || matchFrame(i.stack[0], r.leaf)) &&
        (!r.any || i.stack.some((f) => matchFrame(f, r.any))) &&
        (!r.side || r.side === side),
    );
    const label = !rule ? OTHER_ROW : typeof rule.row === "function" ? rule.row(i.stack, { rules, side }) : rule.row;
    add(rows, label, us);
    // What a row holds: its samples' own frames under the nearest named one.
    const named = i.stack.find((f) => /::|\.m?js$/.test(`${f.name} ${f.file}`) && f !== i.stack[0]);
    const detail = detailOf.get(label) ?? new Map();
    add(detail, `${key(i.stack[0])} < ${named ? short(named.name) : "–"} [${side ?? "?"}]`, us);
    detailOf.set(label, detail);
    // The hottest functions, by self time and by time with them anywhere on the stack.
    add(self, key(i.stack[0]), us);
    for (const k of new Set(i.stack.map(key))) add(total, k, us);
  }
  return { rows, detailOf, busy_us: busyUs, busy, idle, period_us: period, self, total };
}

/** Rows in the order of `rules.show` (SQL statements largest first), with µs per publish and share. */
function tabulate(rules, result, publishes) {
  const order = (label) => {
    if (label === OTHER_ROW) return rules.show.length + 1;
    const i = rules.show.findIndex((shown) => label === shown || (shown === "SQL:" && label.startsWith("SQL:")));
    return i < 0 ? rules.show.length : i;
  };
  return [...result.rows]
    .sort((a, b) => order(a[0]) - order(b[0]) || b[1] - a[1])
    .map(([row, us]) => ({
      row,
      us_per_publish: us / publishes,
      share: result.busy_us ? us / result.busy_us : null,
      // The row's largest parts: own frame < nearest named frame [side].
      parts: [...result.detailOf.get(row)]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 8)
        .map(([part, partUs]) => ({ part, us_per_publish: partUs / publishes })),
    }));
}

function topList(map, result, publishes, n) {
  return [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, us]) => ({ name, us_per_publish: us / publishes, share: us / result.busy_us }));
}

/**
 * The profile of one target from what `profileTarget` collected: rows, totals per publish
 * and the top functions.
 */
export function analyse(name, raw, { top = 30 } = {}) {
  const rules = RULES[name];
  const w = raw.window;
  const publishes = w.published;
  const [fromUs, toUs] = [w.from_ns, w.to_ns].map((ns) => Number(BigInt(ns) / 1000n));
  // V8 stamps samples with the monotonic clock in µs, as process.hrtime counts in ns: the
  // profile must have started between asking and the answer.
  const [asked, answered] = raw.start_ns.map((ns) => Number(BigInt(ns) / 1000n));
  const startTime = raw.profiles.worker.startTime;
  if (startTime < asked - 1000 || startTime > answered + 1000) {
    throw new Error(`${name}: the profile's clock (${startTime} µs at start) is not this process's monotonic clock (${asked}..${answered} µs)`);
  }
  const worker = classify(raw.profiles.worker, rules, raw.interval_us, fromUs, toUs);
  const entry = raw.profiles.entry
    ? classify(raw.profiles.entry, { ...rules, sides: [], rows: [] }, raw.entry_interval_us, fromUs, toUs)
    : null;
  const workerUs = worker.busy_us;
  const entryUs = entry ? entry.busy_us : 0;
  // The target's CPU time: the process's, less the profiler's sampling threads.
  const targetUs = w.cpu_us === null ? null : w.cpu_us - (w.sampler_us ?? 0);
  const perPublish = (x) => (x === null || x === undefined ? null : x / publishes);
  const off = raw.unprofiled;
  return {
    target: name,
    rate: raw.rate,
    seconds: raw.seconds,
    subscribers: raw.subscribers,
    published: publishes,
    delivered: raw.window.delivered,
    window_s: (toUs - fromUs) / 1e6,
    sampling: {
      requested_us: raw.interval_us,
      period_us: worker.period_us,
      busy_samples: worker.busy,
      idle_samples: worker.idle,
    },
    us_per_publish: {
      js: perPublish(workerUs),
      entry_worker: perPublish(entryUs),
      outside_js: targetUs === null ? null : perPublish(targetUs - workerUs - entryUs),
      process: perPublish(targetUs),
      main_thread: perPublish(w.main_thread_us),
      other_threads: targetUs === null ? null : perPublish(targetUs - w.main_thread_us),
      sampler: perPublish(w.sampler_us),
      process_unprofiled: off?.cpu_us != null && off.published_in_window ? off.cpu_us / off.published_in_window : null,
      main_thread_unprofiled: off?.main_thread_us != null && off.published_in_window ? off.main_thread_us / off.published_in_window : null,
    },
    window: w,
    unprofiled: off,
    rows: tabulate(rules, worker, publishes),
    top_self: topList(worker.self, worker, publishes, top),
    top_total: topList(worker.total, worker, publishes, top),
    error: raw.error ?? null,
  };
}

// ---------------------------------------------------------------------------------------
// Collecting

/** Sessions with the Worker's isolate and Miniflare's entry worker, from the inspector's list. */
async function openIsolates(port) {
  const list = await (await fetch(`http://127.0.0.1:${port}/json`, { signal: AbortSignal.timeout(10_000) })).json();
  const sessions = {};
  for (const [key, id] of Object.entries(ISOLATES)) {
    const found = list.filter((t) => id.test(t.id));
    if (key === "worker" && found.length !== 1) {
      throw new Error(`inspector lists ${found.length} Worker isolates (${list.map((t) => t.id).join(", ")})`);
    }
    if (found[0]) sessions[key] = await Inspector.open(found[0].webSocketDebuggerUrl, { timeoutMs: INSPECTOR_TIMEOUT_MS });
  }
  return sessions;
}

/** The threads of `pid`: { tid, comm }. */
function threadsOf(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`).map((tid) => ({ tid: Number(tid), comm: safeRead(`/proc/${pid}/task/${tid}/comm`).trim() }));
  } catch {
    return [];
  }
}

/** CPU time (µs, user + system) of one thread, 0 once it is gone. */
function threadCpuUs(pid, tid) {
  const stat = safeRead(`/proc/${pid}/task/${tid}/stat`);
  if (!stat) return 0;
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
}

/**
 * Runs the `users` scenario against one target in three equal steps with the profiler on
 * from before the first: the first step wakes the objects and lets V8 optimise, the
 * second is the profiled window (its samples are cut out of the one profile by their
 * timestamps), and the third, with the profiler stopped, gives the process's CPU time
 * without it. Answers the raw profiles and the windows' counts.
 */
async function profileTarget(name, opts) {
  // Every step runs whatever its p99; the first step is the settling, so none before it.
  const c = { scenario: "users", subscribers: opts.subscribers, rates: [opts.rate, opts.rate, opts.rate], p99_limit_ms: 1e9, settle_seconds: 0 };
  const raw = {
    target: name,
    rate: opts.rate,
    seconds: opts.seconds,
    subscribers: opts.subscribers,
    interval_us: opts.interval_us,
    entry_interval_us: Math.max(opts.interval_us, ENTRY_INTERVAL_US),
  };
  let target;
  let sessions = {};
  try {
    const port = await freePort();
    const inspectorPort = await freePort();
    target = await startTarget(name, port, c, opts, ["--inspector-port", String(inspectorPort)]);
    const warm = await warmUp(name, port);
    if (warm) throw new Error(warm);
    sessions = await openIsolates(inspectorPort);
    const all = (method) => Promise.all(Object.entries(sessions).map(async ([key, s]) => [key, await s.call(method)]));
    // workerd: the process whose threads are read; its main thread runs the JavaScript.
    const pid = target.servingPids[0] ?? target.pid;
    for (const [key, s] of Object.entries(sessions)) {
      await s.call("Profiler.enable");
      await s.call("Profiler.setSamplingInterval", { interval: key === "entry" ? raw.entry_interval_us : raw.interval_us });
    }
    // On before the load: code that V8 optimised before the profiler started can call into
    // the runtime (SQL, send, Response) unseen, the time landing on the JavaScript caller.
    const asked = process.hrtime.bigint();
    await all("Profiler.start");
    raw.start_ns = [String(asked), String(process.hrtime.bigint())];
    // V8's sampling threads wake every interval and would take their CPU time from the
    // pinned JavaScript thread: moved to the load generator's CPU, their own CPU time read
    // apart (it is the profiler's, not the target's).
    const samplers = threadsOf(pid).filter((t) => t.comm === SAMPLER_THREAD).map((t) => t.tid);
    if (opts.pin) for (const tid of samplers) execFileSync("taskset", ["-pc", String(LOADGEN_CPU), String(tid)], { stdio: "ignore" });

    // At each mark: the target's CPU time (/proc: all threads, the main thread, the
    // sampling threads) and the monotonic clock, which V8's timestamps also count.
    const marks = {};
    const mark = (label) =>
      (marks[label] = {
        cpu_us: sample(target.measurePid)?.cpu_us ?? null,
        main_us: threadCpuUs(pid, pid),
        sampler_us: samplers.reduce((sum, tid) => sum + threadCpuUs(pid, tid), 0),
        at: process.hrtime.bigint(),
      });
    let stopped = Promise.resolve();
    const steps = [];
    const onStep = (step) => {
      steps.push(step);
      // Each line arrives as the next step begins.
      if (steps.length === 1) mark("profiled_start");
      if (steps.length === 2) {
        mark("profiled_end");
        stopped = (async () => {
          raw.profiles = Object.fromEntries((await all("Profiler.stop")).map(([key, r]) => [key, r.profile]));
          mark("stopped");
          // Requests that queued while the profile was written out are done within a second.
          await new Promise((resolve) => setTimeout(resolve, 1000));
          if (steps.length === 2) mark("off_start");
        })();
      }
      if (steps.length === 3) mark("off_end");
    };
    const lg = await runLoadgen(target, port, c, opts, onStep);
    await stopped;
    if (lg.error) throw new Error(`${lg.error}\n${lg.loadgen_stderr.slice(-1000)}`);
    if (steps.length < 3 || !raw.profiles) throw new Error(`the load generator reported ${steps.length} of 3 steps`);
    if (!alive(target.measurePid)) throw new Error("the target died during the run");
    const diff = (from, to, key = "cpu_us") =>
      marks[from]?.[key] == null || marks[to]?.[key] == null ? null : marks[to][key] - marks[from][key];
    const ns = (label) => String(marks[label].at);
    const counts = (step) => ({ published: step.published, delivered: step.delivered, p50_ms: step.p50_ms, p99_ms: step.p99_ms });
    raw.window = {
      ...counts(steps[1]),
      from_ns: ns("profiled_start"),
      to_ns: ns("profiled_end"),
      cpu_us: diff("profiled_start", "profiled_end"),
      main_thread_us: diff("profiled_start", "profiled_end", "main_us"),
      sampler_us: diff("profiled_start", "profiled_end", "sampler_us"),
      sampler_moved: opts.pin,
    };
    // The third step's publishes in its window: the rate times the part of the step's
    // sending time the window covers (the step began as the second line arrived).
    const offSending = marks.off_start ? Number(marks.profiled_end.at + BigInt(opts.seconds) * 1_000_000_000n - marks.off_start.at) / 1e9 : 0;
    raw.unprofiled = {
      ...counts(steps[2]),
      published_in_window: offSending > 0.5 ? Math.round(opts.rate * offSending) : null,
      cpu_us: offSending > 0.5 ? diff("off_start", "off_end") : null,
      main_thread_us: offSending > 0.5 ? diff("off_start", "off_end", "main_us") : null,
      stop_ms: Number(marks.stopped.at - marks.profiled_end.at) / 1e6,
    };
  } catch (e) {
    raw.error = e.message;
  } finally {
    for (const s of Object.values(sessions)) s.close();
    if (target) await stopTarget(target);
  }
  return raw;
}

/**
 * Profiles each target in turn and answers { config, targets: { name: analysis } }.
 * `opts`: PROFILE_DEFAULTS' fields, plus `loadgen`, `pin` and optionally `saveDir`.
 */
export async function profilePublish(options) {
  const opts = { ...PROFILE_DEFAULTS, ...options };
  const result = { config: { ...PROFILE_DEFAULTS, ...pick(options, Object.keys(PROFILE_DEFAULTS)) }, targets: {} };
  for (const name of opts.targets) {
    console.log(`profile: ${name}, users/${opts.subscribers} at ${opts.rate}/s, ${opts.seconds} s profiled`);
    const raw = await profileTarget(name, opts);
    if (opts.saveDir) save(opts.saveDir, raw);
    try {
      if (raw.error) throw new Error(raw.error);
      result.targets[name] = analyse(name, raw);
    } catch (e) {
      result.targets[name] = { target: name, error: e.message };
      console.log(`    failed: ${e.message.split("\n")[0]}`);
    }
  }
  return result;
}

const pick = (o, keys) => Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));

function save(dir, raw) {
  mkdirSync(dir, { recursive: true });
  const { profiles = {}, ...rest } = raw;
  for (const [key, p] of Object.entries(profiles)) writeFileSync(join(dir, `${raw.target}.${key}.cpuprofile`), JSON.stringify(p));
  writeFileSync(join(dir, `${raw.target}.window.json`), `${JSON.stringify(rest, null, 2)}\n`);
}

function load(dir, name) {
  const raw = JSON.parse(readFileSync(join(dir, `${name}.window.json`), "utf8"));
  raw.profiles = {};
  for (const key of Object.keys(ISOLATES)) {
    try {
      raw.profiles[key] = JSON.parse(readFileSync(join(dir, `${name}.${key}.cpuprofile`), "utf8"));
    } catch {}
  }
  return raw;
}

// ---------------------------------------------------------------------------------------
// Text output

const fmt = (x, d = 0) => (x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d }));
const pct = (x) => (x === null || x === undefined ? "" : `${(x * 100).toFixed(1)}%`);

/** A target's table as text lines (the report renders the same numbers in Markdown). */
export function textTable(a) {
  if (a.error) return [`${a.target}: failed: ${a.error}`];
  const u = a.us_per_publish;
  const width = Math.max(...a.rows.map((r) => r.row.length), 60);
  const line = (label, us, share = "") => `  ${label.padEnd(width)} ${fmt(us, 1).padStart(8)} µs ${share.padStart(6)}`;
  return [
    `${a.target}: ${fmt(a.published)} publishes in ${fmt(a.window_s, 1)} s (p50 ${fmt(a.window.p50_ms, 1)} ms, p99 ${fmt(a.window.p99_ms, 1)} ms), ` +
      `${fmt(a.sampling.busy_samples)} busy samples every ${fmt(a.sampling.period_us)} µs`,
    ...a.rows.map((r) => line(r.row, r.us_per_publish, pct(r.share))),
    line("profiled JS total", u.js, "100%"),
    line("Miniflare's entry worker (another isolate; local only)", u.entry_worker),
    line("outside JS (workerd's own C++: sockets, HTTP, SQLite I/O)", u.outside_js),
    line("workerd process CPU (all threads but the profiler's)", u.process),
    line("  of which its main thread (JavaScript and the runtime's I/O)", u.main_thread),
    line("  of which its other threads", u.other_threads),
    line("the same process, next step, profiler stopped", u.process_unprofiled),
    line("  of which its main thread", u.main_thread_unprofiled),
    line("the profiler's sampling threads (not counted above)", u.sampler),
  ];
}

// ---------------------------------------------------------------------------------------
// Command line


function parseArgs(argv) {
  const opts = { pin: true, top: 0, explain: 0 };
  readFlags(argv, import.meta.url, (flag, value, list) => {
    switch (flag) {
      case "--rate": opts.rate = Number(value()); break;
      case "--seconds": opts.seconds = Number(value()); break;
      case "--users": opts.subscribers = Number(value()); break;
      case "--targets": opts.targets = list(); break;
      case "--interval": opts.interval_us = Number(value()); break;
      case "--out": opts.out = resolve(value()); break;
      case "--top": opts.top = Number(value()); break;
      case "--explain": opts.explain = Number(value()); break;
      case "--save-profiles": opts.saveDir = resolve(value()); break;
      case "--from": opts.from = resolve(value()); break;
      case "--loadgen": opts.loadgen = value(); break;
      case "--no-pin": opts.pin = false; break;
      default: return false;
    }
    return true;
  });
  const positive = (k, max) => opts[k] === undefined || (Number.isInteger(opts[k]) && opts[k] >= 1 && opts[k] <= max);
  if (!positive("rate", 100_000)) throw new Error("--rate must be a whole number of publishes/s");
  if (!positive("seconds", 600)) throw new Error("--seconds must be 1..600");
  if (!positive("subscribers", 100_000)) throw new Error("--users must be 1..100000");
  if (!positive("interval_us", 100_000)) throw new Error("--interval must be 1..100000 µs");
  for (const t of opts.targets ?? []) if (!RULES[t]) throw new Error(`--targets: no rules for ${t} (${Object.keys(RULES).join(", ")})`);
  opts.loadgen ??= process.env.LOADGEN ?? join(root, "target/release/loadgen");
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  let result;
  if (opts.from) {
    const targets = opts.targets ?? PROFILE_DEFAULTS.targets;
    result = { config: { from: opts.from }, targets: {} };
    for (const name of targets) result.targets[name] = analyse(name, load(opts.from, name));
  } else {
    result = await profilePublish(opts);
  }
  for (const a of Object.values(result.targets)) {
    console.log(textTable(a).join("\n"));
    if (opts.explain > 0 && !a.error) {
      for (const r of a.rows) {
        console.log(`  ${r.row}:`);
        for (const p of r.parts.slice(0, opts.explain)) console.log(`    ${fmt(p.us_per_publish, 1).padStart(8)} µs  ${p.part}`);
      }
    }
    if (opts.top > 0 && !a.error) {
      for (const [title, list] of [["self", a.top_self], ["inclusive", a.top_total]]) {
        console.log(`  top ${opts.top} by ${title} time:`);
        for (const f of list.slice(0, opts.top)) console.log(`    ${fmt(f.us_per_publish, 1).padStart(8)} µs ${pct(f.share).padStart(6)}  ${f.name}`);
      }
    }
  }
  if (opts.out) {
    writeFileSync(opts.out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`wrote ${opts.out}`);
  }
  if (Object.values(result.targets).some((a) => a.error)) process.exitCode = 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  runMain(main);
}
