// Turns the raw results of bench/run.mjs into bench/results/<name>.md (the issue's
// targets checked first, then tables of medians across rounds per scenario, Herald/peer
// ratios where peers ran the same case, Herald-only tables where they did not), keeps the
// raw JSON next to it (<name>.json), and draws SVG plots by hand: latency percentiles vs
// publish rate per target (<name>-latency-<target>.svg) and deliveries/s vs subscribers
// (<name>-throughput.svg), both for the stepped-rate scenarios. When bench/profile.mjs
// ran (`publish_profile` in the JSON), a "Profile of one publish" section shows where the
// CPU time of one publish goes in Herald and in the JS DO inbox.
//
// Used by run.mjs (writeRaw after every run, writeReport at the end); can also be run on
// its own to redraw a report from its JSON:
//   node bench/report.mjs bench/results/<name>.json
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const TARGET_ORDER = ["herald", "jsdo", "jsdo-inbox", "socketio", "ws", "django"];
export const TARGET_LABEL = {
  herald: "Herald (Rust/wasm DO)",
  jsdo: "JS Durable Object",
  "jsdo-inbox": "JS DO inbox (SQLite, per user)",
  socketio: "Socket.IO 4 (recovery on)",
  ws: "Node ws",
  django: "Django Channels (channels_redis)",
};
const TARGET_COLOR = { herald: "#d9480f", jsdo: "#1971c2", "jsdo-inbox": "#0c8599", socketio: "#2f9e44", ws: "#7048e8", django: "#0b7a4b" };
// Scenarios measured in rate steps (latency plots, the steps tables), and those summarised
// per case and target; `resume` and `coldwake` have tables of their own.
const STEPPED = ["fanout", "devices", "users"];
const PER_CASE = [...STEPPED, "connect"];

// Issue 7's targets, checked at the top of every report. The fan-out, latency and memory
// targets compare Herald with its peers: the thresholds here ask Herald to at least match
// them; the resume and cold-wake targets are absolute.
export const GOALS = {
  // The room size the fan-out targets are stated for.
  subscribers: 1000,
  // Herald's deliveries/s at p99 ≤ the limit, divided by the peer's: at least this.
  minDeliveriesRatio: 1,
  // p99 at 20,000 deliveries/s: 1,000 subscribers × this many publishes/s.
  p99Rate: 20,
  // Herald's p99 there, divided by the JS Durable Object's: at most this.
  maxP99Ratio: 1.1,
  // Herald's memory per connection divided by the JS Durable Object's: at most this.
  maxMemoryRatio: 1,
  resumeItems: 10_000,
  resumeMs: 1000,
  coldWakeMs: 50,
};
const PCT = [
  { key: "p50_ms", label: "p50", color: "#2f9e44", dash: "" },
  { key: "p90_ms", label: "p90", color: "#1971c2", dash: "" },
  { key: "p99_ms", label: "p99", color: "#d9480f", dash: "" },
  { key: "max_ms", label: "max", color: "#495057", dash: "5 3" },
];

// ---------------------------------------------------------------------------------------
// Numbers

export function median(values) {
  const v = values.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

function fmt(x, digits = null) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "–";
  const d = digits ?? (Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2);
  return x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
}

function fmtRatio(x) {
  if (x === null || !Number.isFinite(x)) return "–";
  return `${x >= 10 ? x.toFixed(1) : x.toFixed(2)}×`;
}

const ratio = (a, b) => (a !== null && b !== null && b !== 0 ? a / b : null);
const caseKey = (c) => `${c.scenario}/${c.subscribers}`;
const count = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "?");
export function caseLabel(c) {
  switch (c.scenario) {
    case "devices":
      return `devices, one user × ${count(c.subscribers)} sockets`;
    case "connect":
      return `connect, ${count(c.subscribers)} sockets`;
    case "users":
      return `users, ${count(c.subscribers)} × 1 socket`;
    case "resume":
      return `resume, ${count(c.items)} items`;
    case "coldwake":
      return `coldwake, ${count(c.idle_seconds)} s idle`;
    default:
      return `${c.scenario}, ${count(c.subscribers)} subscribers`;
  }
}
const ok = (run) => !run.error && run.steps.length > 0;

/** Steps that count for "deliveries/s at p99 ≤ limit": within the limit and ≥ 99 % delivered. */
function qualifies(step, limitMs) {
  return (
    typeof step.p99_ms === "number" &&
    step.p99_ms <= limitMs &&
    step.expected > 0 &&
    step.delivered >= 0.99 * step.expected
  );
}

/**
 * The per-case part of the report, computed from the raw data: per case (scenario +
 * subscribers, for the scenarios in PER_CASE) and target, the medians across rounds per
 * rate, and per-run summaries.
 */
export function summarize(data) {
  const limitMs = data.config?.p99_limit_ms ?? 100;
  const cases = [];
  const seen = new Map();
  const perCaseRuns = data.runs.filter((r) => PER_CASE.includes(r.scenario));
  for (const run of perCaseRuns) {
    const key = caseKey(run);
    if (!seen.has(key)) {
      seen.set(key, { scenario: run.scenario, subscribers: run.subscribers, rates: [] });
      cases.push(seen.get(key));
    }
    const cs = seen.get(key);
    const rates = [...(run.rates ?? []), ...run.steps.map((s) => s.rate)].filter((x) => typeof x === "number");
    cs.rates = [...new Set([...cs.rates, ...rates])].sort((a, b) => a - b);
  }
  cases.sort((a, b) => PER_CASE.indexOf(a.scenario) - PER_CASE.indexOf(b.scenario) || a.subscribers - b.subscribers);
  const targets = TARGET_ORDER.filter((t) => perCaseRuns.some((r) => r.target === t)).concat(
    [...new Set(perCaseRuns.map((r) => r.target))].filter((t) => !TARGET_ORDER.includes(t)),
  );

  const byCase = new Map();
  for (const c of cases) {
    const perTarget = new Map();
    for (const target of targets) {
      const runs = perCaseRuns.filter((r) => r.target === target && caseKey(r) === caseKey(c));
      if (runs.length === 0) continue; // a case the target was not run in
      const good = runs.filter(ok);
      const rates = [...new Set(good.flatMap((r) => r.steps.map((s) => s.rate)))]
        .filter((x) => typeof x === "number")
        .sort((a, b) => a - b);
      const perRate = rates.map((rate) => {
        const steps = good.map((r) => r.steps.find((s) => s.rate === rate)).filter(Boolean);
        const m = (k) => median(steps.map((s) => s[k]));
        return {
          rate,
          n: steps.length,
          published: m("published"),
          expected: m("expected"),
          delivered: m("delivered"),
          delivered_pct: median(steps.map((s) => (s.expected > 0 ? (100 * s.delivered) / s.expected : null))),
          deliveries_per_s: m("deliveries_per_s"),
          p50_ms: m("p50_ms"),
          p90_ms: m("p90_ms"),
          p99_ms: m("p99_ms"),
          max_ms: m("max_ms"),
          late_sends: m("late_sends"),
          cpu_us_per_delivery: m("cpu_us_per_delivery"),
        };
      });
      const best = good.map((r) => {
        const within = r.steps.filter((s) => qualifies(s, limitMs)).map((s) => s.deliveries_per_s);
        return within.length ? Math.max(...within) : 0;
      });
      perTarget.set(target, {
        runs: runs.length,
        failed: runs.length - good.length,
        perRate,
        best_dps: good.length ? median(best) : null,
        cpu_us_per_delivery: median(good.map((r) => r.metrics?.cpu_us_per_delivery)),
        cpu_us_per_delivery_all: median(good.map((r) => r.metrics?.cpu_us_per_delivery_all)),
        mem_kb_per_conn: median(good.map((r) => r.metrics?.mem_kb_per_conn)),
        mem_kb_per_conn_peak: median(good.map((r) => r.metrics?.mem_kb_per_conn_peak)),
        rss_before_kb: median(good.map((r) => r.metrics?.rss_before_kb)),
        connect_p50_ms: median(good.map((r) => r.steps[0]?.connect_p50_ms)),
        connect_p99_ms: median(good.map((r) => r.steps[0]?.connect_p99_ms)),
        connect_max_ms: median(good.map((r) => r.steps[0]?.connect_max_ms)),
        connected: median(good.map((r) => r.steps[0]?.connected)),
        connect_total_ms: median(good.map((r) => r.steps[0]?.total_ms)),
      });
    }
    byCase.set(caseKey(c), perTarget);
  }
  return { limitMs, cases, targets, byCase };
}

/**
 * `resume` runs, per stored item count: every replay of every round pooled, and their
 * median. A replay that missed items makes its run fail (the load generator exits 1).
 */
export function summarizeResume(data) {
  const runs = data.runs.filter((r) => r.scenario === "resume");
  const sizes = [...new Set(runs.map((r) => r.items ?? r.steps[0]?.items))].filter((x) => typeof x === "number").sort((a, b) => a - b);
  return sizes.map((items) => {
    const mine = runs.filter((r) => (r.items ?? r.steps[0]?.items) === items);
    const good = mine.filter(ok);
    const replays = good.flatMap((r) => r.steps[0].repeats ?? []);
    return {
      items,
      runs: mine.length,
      failed: mine.length - good.length,
      replays: replays.length,
      complete: replays.length > 0 && replays.every((m) => m.items === items),
      ms: replays.map((m) => m.ms),
      median_ms: median(replays.map((m) => m.ms)),
      median_items_per_s: median(replays.map((m) => m.items_per_s)),
      store_ms: median(good.map((r) => r.steps[0].store_ms)),
    };
  });
}

/** `coldwake` runs per target: every repeat of every round pooled, and the medians. */
export function summarizeColdwake(data) {
  const runs = data.runs.filter((r) => r.scenario === "coldwake");
  const targets = TARGET_ORDER.filter((t) => runs.some((r) => r.target === t));
  return targets.map((target) => {
    const mine = runs.filter((r) => r.target === target);
    const good = mine.filter(ok);
    const wakes = good.flatMap((r) => r.steps[0].repeats ?? []);
    return {
      target,
      runs: mine.length,
      failed: mine.length - good.length,
      idle_seconds: median(good.map((r) => r.steps[0].idle_seconds)),
      publish_to: good[0]?.steps[0].publish_to ?? null,
      cold_ms: wakes.map((w) => w.cold_ms),
      warm_ms: wakes.map((w) => w.warm_ms),
      median_cold_ms: median(wakes.map((w) => w.cold_ms)),
      median_warm_ms: median(wakes.map((w) => w.warm_ms)),
    };
  });
}

const verdict = (met) => (met === null ? "not measured" : met ? "**yes**" : "**no**");

/**
 * The rows of the targets table: what was measured against each of GOALS, the threshold,
 * and whether it was met (null when the run did not measure it).
 */
export function goals(summary, resume, coldwake) {
  const rows = [];
  // Issue 16's: the per-user path against what a team would run instead.
  const compare = (key, peer, field, { what, max, min }) => {
    const h = summary.byCase.get(key)?.get("herald")?.[field] ?? null;
    const o = summary.byCase.get(key)?.get(peer)?.[field] ?? null;
    const r = ratio(h, o);
    rows.push({
      what,
      value: r === null ? "–" : `${fmtRatio(r)} (${fmt(h, field === "best_dps" ? 0 : undefined)} / ${fmt(o, field === "best_dps" ? 0 : undefined)})`,
      threshold: max !== undefined ? `≤ ${fmtRatio(max)}` : `≥ ${fmtRatio(min)}`,
      met: r === null ? null : max !== undefined ? r <= max : r >= min,
    });
  };
  const users = summary.cases.find((c) => c.scenario === "users");
  if (users) {
    const key = caseKey(users);
    const dps = `\`users\` (${caseLabel(users)}): deliveries/s at p99 ≤ ${summary.limitMs} ms, Herald`;
    compare(key, "jsdo-inbox", "best_dps", { what: `${dps} / ${TARGET_LABEL["jsdo-inbox"]}`, min: 1 });
    compare(key, "socketio", "best_dps", { what: `${dps} / ${TARGET_LABEL.socketio}`, min: 1 });
    compare(key, "django", "best_dps", { what: `${dps} / ${TARGET_LABEL.django}`, min: 1 });
    compare(key, "jsdo-inbox", "cpu_us_per_delivery", {
      what: `\`users\`: CPU µs per publish, Herald / ${TARGET_LABEL["jsdo-inbox"]}`,
      max: 1,
    });
  }
  const devices = summary.cases.find((c) => c.scenario === "devices");
  if (devices) {
    compare(caseKey(devices), "jsdo-inbox", "best_dps", {
      what: `\`devices\` (${caseLabel(devices)}): deliveries/s at p99 ≤ ${summary.limitMs} ms, Herald / ${TARGET_LABEL["jsdo-inbox"]}`,
      min: 1,
    });
  }
  const connect = summary.cases.filter((c) => c.scenario === "connect").sort((a, b) => b.subscribers - a.subscribers)[0];
  if (connect) {
    compare(caseKey(connect), "jsdo", "connect_p50_ms", {
      what: `Room connect p50 (${caseLabel(connect)}, 64 at a time), Herald / JS Durable Object`,
      max: 1.5,
    });
  }
  const fanout = summary.byCase.get(`fanout/${GOALS.subscribers}`);
  const herald = fanout?.get("herald");
  const room = `Room fan-out, ${count(GOALS.subscribers)} subscribers`;
  for (const peer of ["jsdo", "socketio"]) {
    const other = fanout?.get(peer);
    const r = ratio(herald?.best_dps ?? null, other?.best_dps ?? null);
    rows.push({
      what: `${room}: deliveries/s at p99 ≤ ${summary.limitMs} ms, Herald / ${TARGET_LABEL[peer]}`,
      value: r === null ? "–" : `${fmtRatio(r)} (${fmt(herald.best_dps, 0)} / ${fmt(other.best_dps, 0)})`,
      threshold: `≥ ${fmtRatio(GOALS.minDeliveriesRatio)}`,
      met: r === null ? null : r >= GOALS.minDeliveriesRatio,
    });
  }

  const at = (t) => fanout?.get(t)?.perRate.find((x) => x.rate === GOALS.p99Rate)?.p99_ms ?? null;
  const [hp99, jp99] = [at("herald"), at("jsdo")];
  const p99Ratio = ratio(hp99, jp99);
  rows.push({
    what:
      `p99 at ${count(GOALS.subscribers * GOALS.p99Rate)} deliveries/s ` +
      `(${count(GOALS.subscribers)} subscribers × ${GOALS.p99Rate}/s), Herald vs JS Durable Object`,
    value: p99Ratio === null ? "–" : `${fmt(hp99)} vs ${fmt(jp99)} ms (${fmtRatio(p99Ratio)})`,
    threshold: `Herald ≤ ${fmtRatio(GOALS.maxP99Ratio)} JS DO`,
    met: p99Ratio === null ? null : p99Ratio <= GOALS.maxP99Ratio,
  });

  // Memory from the largest connect case (sockets held open, nothing else going on), or
  // else from the fan-out case.
  const memoryCases = [
    ...summary.cases.filter((c) => c.scenario === "connect").sort((a, b) => b.subscribers - a.subscribers),
    ...summary.cases.filter((c) => c.scenario === "fanout" && c.subscribers === GOALS.subscribers),
  ];
  const memory = memoryCases
    .map((c) => ({ c, h: summary.byCase.get(caseKey(c)).get("herald"), j: summary.byCase.get(caseKey(c)).get("jsdo") }))
    .find(({ h, j }) => ratio(h?.mem_kb_per_conn ?? null, j?.mem_kb_per_conn ?? null) !== null);
  const memRatio = memory ? ratio(memory.h.mem_kb_per_conn, memory.j.mem_kb_per_conn) : null;
  rows.push({
    what: `Memory per connection, Herald / JS Durable Object${memory ? ` (${caseLabel(memory.c)})` : ""}`,
    value: memory ? `${fmtRatio(memRatio)} (${fmt(memory.h.mem_kb_per_conn)} / ${fmt(memory.j.mem_kb_per_conn)} KB)` : "–",
    threshold: `≤ ${fmtRatio(GOALS.maxMemoryRatio)}`,
    met: memory ? memRatio <= GOALS.maxMemoryRatio : null,
  });

  const replay = resume.find((r) => r.items === GOALS.resumeItems);
  rows.push({
    what: `Resume of ${count(GOALS.resumeItems)} items (\`?since=0\` until \`synced\`), median`,
    value: replay?.median_ms != null ? `${fmt(replay.median_ms)} ms${replay.complete ? "" : " (items missing)"}` : "–",
    threshold: `< ${count(GOALS.resumeMs)} ms`,
    met: replay?.median_ms != null ? replay.complete && replay.median_ms < GOALS.resumeMs : null,
  });

  const wake = coldwake.find((w) => w.target === "herald");
  rows.push({
    what: "Cold wake: publish to delivery through an evicted user object, Herald, median",
    value: wake?.median_cold_ms != null ? `${fmt(wake.median_cold_ms)} ms (warm ${fmt(wake.median_warm_ms)} ms)` : "–",
    threshold: `< ${count(GOALS.coldWakeMs)} ms`,
    met: wake?.median_cold_ms != null ? wake.median_cold_ms < GOALS.coldWakeMs : null,
  });
  return rows;
}

/** p99 of two targets at the highest rate both measured (medians across rounds). */
function p99AtCommonRate(a, b) {
  const rates = a.perRate
    .filter((x) => x.p99_ms !== null)
    .map((x) => x.rate)
    .filter((rate) => b.perRate.some((y) => y.rate === rate && y.p99_ms !== null));
  if (rates.length === 0) return null;
  const rate = Math.max(...rates);
  return {
    rate,
    a: a.perRate.find((x) => x.rate === rate).p99_ms,
    b: b.perRate.find((x) => x.rate === rate).p99_ms,
  };
}

// ---------------------------------------------------------------------------------------
// SVG, by hand

const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function logTicks(min, max) {
  const ticks = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= min * 0.999 && v <= max * 1.001) ticks.push({ v, major: m === 1 });
    }
  }
  return ticks;
}

function niceTicks(max, count = 5) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const ticks = [];
  for (let v = 0; v <= max + step * 0.5 && ticks.length < 20; v += step) ticks.push(v);
  if (ticks[ticks.length - 1] < max) ticks.push(ticks[ticks.length - 1] + step);
  return ticks;
}

function si(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  if (v >= 1 || v === 0) return `${+v.toFixed(1)}`;
  return `${+v.toPrecision(2)}`;
}

const TEXT = `font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"`;

function svgDoc(width, height, body) {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${TEXT} font-size="12">
<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>
${body}
</svg>
`;
}

const legendWidth = (items) => items.reduce((w, it) => w + 40 + it.label.length * 7, 0);

function legend(items, x, y) {
  let out = "";
  let cx = x;
  for (const it of items) {
    out += `<line x1="${cx}" y1="${y}" x2="${cx + 22}" y2="${y}" stroke="${it.color}" stroke-width="2.5"${it.dash ? ` stroke-dasharray="${it.dash}"` : ""}/>`;
    if (it.marker !== false) out += `<circle cx="${cx + 11}" cy="${y}" r="3" fill="${it.color}"/>`;
    out += `<text x="${cx + 28}" y="${y + 4}" fill="#212529">${esc(it.label)}</text>\n`;
    cx += 40 + it.label.length * 7;
  }
  return out;
}

/**
 * One panel: log-scale x (`xs`), log-scale or linear y; `series` = [{color, dash, points:[[x,y]]}].
 */
function panel({ x0, y0, w, h, title, xLabel, yLabel, xTicks, xLog = true, yLog, yMin, yMax, series, hline }) {
  const xs = xTicks.length ? xTicks : [1, 10];
  let xmin = Math.min(...xs);
  let xmax = Math.max(...xs);
  if (xmin === xmax) {
    xmin = xLog ? xmin / 2 : xmin - 1;
    xmax = xLog ? xmax * 2 : xmax + 1;
  }
  const pad = xLog ? 1.25 : 0;
  const lx = (v) => Math.log10(v);
  const X = xLog
    ? (v) => x0 + ((lx(v) - lx(xmin / pad)) / (lx(xmax * pad) - lx(xmin / pad))) * w
    : (v) => x0 + ((v - xmin) / (xmax - xmin)) * w;
  const Y = yLog
    ? (v) => y0 + h - ((lx(Math.max(v, yMin)) - lx(yMin)) / (lx(yMax) - lx(yMin))) * h
    : (v) => y0 + h - ((v - yMin) / (yMax - yMin)) * h;
  let out = `<g>\n<text x="${x0 + w / 2}" y="${y0 - 10}" text-anchor="middle" font-size="13" font-weight="600" fill="#212529">${esc(title)}</text>\n`;
  out += `<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="#f8f9fa" stroke="#adb5bd"/>\n`;
  const yTicks = yLog ? logTicks(yMin, yMax) : niceTicks(yMax).map((v) => ({ v, major: true }));
  const labelAll = !yLog || (h / (lx(yMax) - lx(yMin))) >= 60; // room for 1-2-5 labels per decade
  for (const t of yTicks) {
    const y = Y(t.v);
    out += `<line x1="${x0}" y1="${y}" x2="${x0 + w}" y2="${y}" stroke="${t.major ? "#ced4da" : "#e9ecef"}"/>`;
    if (t.major || labelAll) out += `<text x="${x0 - 6}" y="${y + 4}" text-anchor="end" fill="#495057">${si(t.v)}</text>`;
    out += "\n";
  }
  for (const v of xTicks) {
    const x = X(v);
    out += `<line x1="${x}" y1="${y0}" x2="${x}" y2="${y0 + h}" stroke="#e9ecef"/>`;
    out += `<text x="${x}" y="${y0 + h + 16}" text-anchor="middle" fill="#495057">${si(v)}</text>\n`;
  }
  out += `<text x="${x0 + w / 2}" y="${y0 + h + 36}" text-anchor="middle" fill="#212529">${esc(xLabel)}</text>\n`;
  out += `<text transform="translate(${x0 - 48} ${y0 + h / 2}) rotate(-90)" text-anchor="middle" fill="#212529">${esc(yLabel)}</text>\n`;
  if (hline && hline.v >= yMin && hline.v <= yMax) {
    const y = Y(hline.v);
    out += `<line x1="${x0}" y1="${y}" x2="${x0 + w}" y2="${y}" stroke="#e03131" stroke-width="1.2" stroke-dasharray="6 4"/>`;
    out += `<text x="${x0 + 4}" y="${y - 5}" fill="#e03131">${esc(hline.label)}</text>\n`;
  }
  for (const s of series) {
    const pts = s.points.filter(([x, y]) => x !== null && y !== null && Number.isFinite(y));
    if (pts.length === 0) continue;
    const d = pts.map(([x, y], i) => `${i ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ");
    out += `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""}/>`;
    for (const [x, y] of pts) out += `<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="3" fill="${s.color}"/>`;
    out += "\n";
  }
  if (series.every((s) => s.points.every(([, y]) => y === null))) {
    out += `<text x="${x0 + w / 2}" y="${y0 + h / 2}" text-anchor="middle" fill="#868e96">no data</text>\n`;
  }
  return `${out}</g>\n`;
}

/** Latency percentiles (p50/p90/p99/max) vs publish rate for one target, one panel per case. */
export function latencySvg(summary, target, title) {
  // Every case with rates, on the same axes for every target so the plots compare.
  const cases = summary.cases.filter((c) => c.rates.length > 0);
  const pw = 300;
  const ph = 260;
  const left = 70;
  const gap = 80;
  const width = left + Math.max(1, cases.length) * (pw + gap) - gap + 30;
  const height = 60 + 30 + ph + 60;
  const all = [...summary.byCase.values()]
    .flatMap((perTarget) => [...perTarget.values()])
    .flatMap((t) => t.perRate.flatMap((r) => PCT.map((p) => r[p.key])))
    .filter((v) => typeof v === "number" && v > 0);
  const yMin = Math.min(0.1, ...all.map((v) => 10 ** Math.floor(Math.log10(v))));
  const yMax = Math.max(1000, ...all.map((v) => 10 ** Math.ceil(Math.log10(v))));
  let body = `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="700" fill="#212529">${esc(title)}</text>\n`;
  body += legend(PCT.map((p) => ({ label: p.label, color: p.color, dash: p.dash })), left, 48);
  body += `<text x="${left}" y="${height - 8}" font-size="11" fill="#868e96">Rates with no point: not reached (the load generator stops stepping once p99 exceeds ${summary.limitMs} ms).</text>\n`;
  cases.forEach((c, i) => {
    const t = summary.byCase.get(caseKey(c)).get(target) ?? { perRate: [] };
    body += panel({
      x0: left + i * (pw + gap),
      y0: 90,
      w: pw,
      h: ph,
      title: caseLabel(c),
      xLabel: "publishes per second (log)",
      yLabel: "latency, ms (log)",
      xTicks: c.rates,
      yLog: true,
      yMin,
      yMax,
      hline: { v: summary.limitMs, label: `${summary.limitMs} ms` },
      series: PCT.map((p) => ({
        color: p.color,
        dash: p.dash,
        points: t.perRate.map((r) => [r.rate, r[p.key] > 0 ? r[p.key] : null]),
      })),
    });
  });
  if (cases.length === 0) body += `<text x="${width / 2}" y="${90 + ph / 2}" text-anchor="middle" fill="#868e96">no data</text>`;
  return svgDoc(width, height, body);
}

/** Best deliveries/s within the p99 limit vs subscribers, one line per target, per scenario. */
export function throughputSvg(summary, title) {
  const scenarios = STEPPED.filter((s) => summary.cases.some((c) => c.scenario === s));
  const pw = 460;
  const ph = 280;
  const left = 80;
  const gap = 100;
  const items = summary.targets.map((t) => ({ label: TARGET_LABEL[t] ?? t, color: TARGET_COLOR[t] ?? "#343a40" }));
  const width = Math.max(left + Math.max(1, scenarios.length) * (pw + gap) - gap + 30, left + legendWidth(items) + 20);
  const height = 60 + 30 + ph + 60;
  let body = `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="700" fill="#212529">${esc(title)}</text>\n`;
  body += legend(items, left, 48);
  scenarios.forEach((scenario, i) => {
    const cases = summary.cases.filter((c) => c.scenario === scenario);
    const subs = cases.map((c) => c.subscribers);
    const values = cases.flatMap((c) => summary.targets.map((t) => summary.byCase.get(caseKey(c)).get(t)?.best_dps ?? null));
    const yMax = niceTicks(Math.max(1, ...values.filter((v) => v !== null))).at(-1);
    body += panel({
      x0: left + i * (pw + gap),
      y0: 90,
      w: pw,
      h: ph,
      title: `${scenario}: deliveries/s with p99 ≤ ${summary.limitMs} ms (median of rounds)`,
      xLabel: "subscribers (log)",
      yLabel: "deliveries per second",
      xTicks: subs,
      yLog: false,
      yMin: 0,
      yMax,
      series: summary.targets.map((t) => ({
        color: TARGET_COLOR[t] ?? "#343a40",
        points: cases.map((c) => [c.subscribers, summary.byCase.get(caseKey(c)).get(t)?.best_dps ?? null]),
      })),
    });
  });
  return svgDoc(width, height, body);
}

// ---------------------------------------------------------------------------------------
// Markdown

function table(header, rows) {
  return [
    `| ${header.join(" | ")} |`,
    `|${header.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

export function markdown(data, summary, files) {
  const { limitMs, cases, targets, byCase } = summary;
  const resume = summarizeResume(data);
  const coldwake = summarizeColdwake(data);
  const peers = targets.filter((t) => t !== "herald");
  const label = (t) => TARGET_LABEL[t] ?? t;
  const c = data.config ?? {};
  const lines = [];
  lines.push(`# Herald vs peers: ${data.name}`);
  lines.push("");
  lines.push(
    `Profile \`${data.profile}\`, ${c.rounds} round${c.rounds === 1 ? "" : "s"}, targets alternated within each round, ` +
      `${c.seconds} s per rate step, p99 limit ${limitMs} ms. Started ${data.started_at}` +
      (data.finished_at ? `, finished ${data.finished_at}` : " (not finished)") + "." +
      (c.only ? ` Only the cases ${c.only.map((x) => `\`${x}\``).join(", ")} were run.` : ""),
  );
  lines.push("");
  const h = data.host ?? {};
  lines.push(
    `Host: ${h.cpu_model ?? "?"} × ${h.cpus ?? "?"} CPUs, Linux ${h.kernel ?? "?"}, Node ${data.node ?? "?"}; ` +
      `${Object.entries(data.versions ?? {}).map(([k, v]) => `${k} ${v}`).join(", ")}. ` +
      (c.pinned === false
        ? `Each target runs in its own process and the load generator (\`${c.loadgen ?? "loadgen"}\`) ` +
          "beside it, unpinned (--no-pin): figures from a shared machine; everything on 127.0.0.1."
        : `Each target runs in its own process pinned to CPU ${c.target_cpu ?? 0} ` +
          `(workerd, the child of the Miniflare process, pinned too), the load generator ` +
          `(\`${c.loadgen ?? "loadgen"}\`) pinned to CPU ${c.loadgen_cpu ?? 1}; everything on 127.0.0.1.`),
  );
  lines.push("");

  lines.push("## Targets");
  lines.push("");
  lines.push(
    table(
      ["target", "measured", "threshold", "met"],
      goals(summary, resume, coldwake).map((g) => [g.what, g.value, g.threshold, verdict(g.met)]),
    ),
  );
  lines.push("");

  lines.push("How to read it:");
  lines.push("");
  lines.push(
    `- Every number is the median across rounds; \`n\` is how many rounds measured that step ` +
      `(the load generator stops stepping up once p99 exceeds ${limitMs} ms).`,
  );
  lines.push(
    `- *Best deliveries/s*: the highest deliveries/s of a step with p99 ≤ ${limitMs} ms and ≥ 99 % of ` +
      `the expected deliveries, per round (0 if none), then the median.`,
  );
  lines.push(
    "- Herald may coalesce a hot room's notifications into one `batch` frame (reason `burst`); " +
      "every item counts as one delivery, with its own latency. The peers send one frame per publish.",
  );
  lines.push(
    "- *CPU µs/delivery*: user+system CPU time of the target's process (workerd for Herald and " +
      "the JS Durable Object, the Node process for Socket.IO and ws) from the end of the first " +
      "step to the end of the last, divided by the deliveries of the steps in between (the " +
      "first step's share, which includes connecting, is left out; with one step, the whole run).",
  );
  lines.push(
    "- *KB/conn*: RSS of that process when the first step ended (for `connect`: with every socket " +
      "open) minus its RSS before the load generator started (after one warm-up publish), divided " +
      "by the sockets. *peak* uses the highest RSS seen during the run instead.",
  );
  lines.push("");

  const summaryTable = (scenario) => {
    const rows = [];
    for (const cs of cases.filter((x) => x.scenario === scenario)) {
      for (const t of targets) {
        const s = byCase.get(caseKey(cs)).get(t);
        if (!s) continue;
        rows.push([
          `${caseLabel(cs)}: ${label(t)}`,
          fmt(s.best_dps, 0),
          fmt(s.cpu_us_per_delivery),
          fmt(s.mem_kb_per_conn),
          fmt(s.mem_kb_per_conn_peak),
          fmt(s.rss_before_kb / 1024, 1),
          fmt(s.connect_p50_ms),
          fmt(s.connect_p99_ms),
          `${s.runs - s.failed}/${s.runs}`,
        ]);
      }
    }
    return table(
      ["case: target", `best deliveries/s (p99 ≤ ${limitMs} ms)`, "CPU µs/delivery", "KB/conn", "KB/conn (peak)", "idle RSS MB", "connect p50 ms", "connect p99 ms", "runs ok"],
      rows,
    );
  };
  const present = (scenario) => cases.some((x) => x.scenario === scenario);

  if (present("fanout")) {
    lines.push("## Room fan-out");
    lines.push("");
    lines.push(
      "Every subscriber in one room (Herald: each a user of its own on `/v1/rooms/{room}/connect`), " +
        "publishes to the room at stepped open-loop rates.",
    );
    lines.push("");
    lines.push(summaryTable("fanout"));
    lines.push("");
  }
  if (present("users")) {
    lines.push("## Many users");
    lines.push("");
    lines.push(
      "Many users with one socket each (Herald: `/v1/connect`, each user its own object; " +
        "`jsdo-inbox`: an object per user storing every notification in SQLite before its 202; " +
        "Socket.IO: a room `notifications-<id>` per user), open-loop publishes each to one user " +
        "picked at random: the common case. One delivery per publish, so CPU µs/delivery is " +
        "CPU µs per publish.",
    );
    lines.push("");
    lines.push(summaryTable("users"));
    lines.push("");
  }
  if (present("devices")) {
    lines.push("## One user's devices");
    lines.push("");
    lines.push(
      "One user with several sockets (Herald: `/v1/connect?device=d1…`), publishes to the user " +
        "(`to.users`) at stepped open-loop rates: every publish is stored in the user's inbox and " +
        "pushed to every device. For the peers the same as fan-out to that many subscribers. " +
        "With this few sockets, KB/conn is mostly noise.",
    );
    lines.push("");
    lines.push(summaryTable("devices"));
    lines.push("");
  }

  const stepped = cases.filter((x) => STEPPED.includes(x.scenario));
  if (targets.includes("herald") && peers.length && stepped.length) {
    lines.push("## Herald / peer ratios");
    lines.push("");
    lines.push(
      "Herald's value divided by the peer's. Deliveries/s: above 1× Herald does more. " +
        "p99, CPU and memory: below 1× Herald needs less.",
    );
    lines.push("");
    const rows = [];
    for (const cs of stepped) {
      const hs = byCase.get(caseKey(cs)).get("herald");
      for (const p of peers) {
        const ps = byCase.get(caseKey(cs)).get(p);
        if (!hs || !ps) continue;
        const common = p99AtCommonRate(hs, ps);
        rows.push([
          `${caseLabel(cs)}: Herald / ${label(p)}`,
          `${fmtRatio(ratio(hs.best_dps, ps.best_dps))} (${fmt(hs.best_dps, 0)} / ${fmt(ps.best_dps, 0)})`,
          common
            ? `${fmtRatio(ratio(common.a, common.b))} at ${fmt(common.rate, 0)}/s (${fmt(common.a)} / ${fmt(common.b)} ms)`
            : "–",
          `${fmtRatio(ratio(hs.cpu_us_per_delivery, ps.cpu_us_per_delivery))} (${fmt(hs.cpu_us_per_delivery)} / ${fmt(ps.cpu_us_per_delivery)})`,
          `${fmtRatio(ratio(hs.mem_kb_per_conn, ps.mem_kb_per_conn))} (${fmt(hs.mem_kb_per_conn)} / ${fmt(ps.mem_kb_per_conn)} KB)`,
        ]);
      }
    }
    lines.push(
      table(
        ["case", `deliveries/s at p99 ≤ ${limitMs} ms`, "p99 at the highest common rate", "CPU µs per delivery", "memory per connection"],
        rows,
      ),
    );
    lines.push("");
  }

  if (present("connect")) {
    lines.push("## Connect");
    lines.push("");
    lines.push(
      "Opening the sockets (Herald: into one room, ready once `welcome` arrived), " +
        "64 at a time; memory sampled while all of them are open.",
    );
    lines.push("");
    const rows = [];
    const ratios = [];
    for (const cs of cases.filter((x) => x.scenario === "connect")) {
      const hs = byCase.get(caseKey(cs)).get("herald");
      for (const t of targets) {
        const s = byCase.get(caseKey(cs)).get(t);
        if (!s) continue;
        rows.push([
          `${caseLabel(cs)}: ${label(t)}`,
          fmt(s.connected, 0),
          fmt(s.connect_p50_ms),
          fmt(s.connect_p99_ms),
          fmt(s.connect_max_ms),
          fmt(s.connect_total_ms, 0),
          fmt(s.mem_kb_per_conn),
          fmt(s.rss_before_kb / 1024, 1),
          `${s.runs - s.failed}/${s.runs}`,
        ]);
        if (hs && t !== "herald") {
          ratios.push([
            `${caseLabel(cs)}: Herald / ${label(t)}`,
            `${fmtRatio(ratio(hs.mem_kb_per_conn, s.mem_kb_per_conn))} (${fmt(hs.mem_kb_per_conn)} / ${fmt(s.mem_kb_per_conn)} KB)`,
            `${fmtRatio(ratio(hs.connect_p99_ms, s.connect_p99_ms))} (${fmt(hs.connect_p99_ms)} / ${fmt(s.connect_p99_ms)} ms)`,
          ]);
        }
      }
    }
    lines.push(
      table(["case: target", "connected", "connect p50 ms", "connect p99 ms", "connect max ms", "all open after ms", "KB/conn", "idle RSS MB", "runs ok"], rows),
    );
    lines.push("");
    if (ratios.length) {
      lines.push(table(["case", "memory per connection", "connect p99"], ratios));
      lines.push("");
    }
  }

  if (resume.length) {
    lines.push("## Resume (Herald only)");
    lines.push("");
    lines.push(
      "One user's inbox filled through `POST /v1/publish` (100 messages per request), then a " +
        "socket opened with `?since=0`, timed from the upgrade request until `synced`; every " +
        "replay of every round pooled. The server runs with `INBOX_MAX_ITEMS` raised to the item " +
        "count (the default keeps 1,000). The peers have no stored inbox to resume from.",
    );
    lines.push("");
    lines.push(
      table(
        ["items", "replays", "each, ms", "median ms", "median items/s", "all items replayed", "storing them took, ms", "runs ok"],
        resume.map((r) => [
          count(r.items),
          String(r.replays),
          r.ms.map((x) => fmt(x)).join(", ") || "–",
          fmt(r.median_ms),
          fmt(r.median_items_per_s, 0),
          r.replays ? (r.complete ? "yes" : "no") : "–",
          fmt(r.store_ms, 0),
          `${r.runs - r.failed}/${r.runs}`,
        ]),
      ),
    );
    lines.push("");
  }

  if (coldwake.length) {
    lines.push("## Cold wake");
    lines.push("");
    lines.push(
      "One subscriber, silent but for one `ping` halfway (answered by the runtime without waking " +
        "the object) until workerd has evicted the object (about 10 s after its last event); then " +
        "one publish (*cold*: the object starts again) and at once a second (*warm*), each timed " +
        "from just before the publish request until the subscriber has it; a fresh socket per " +
        "repeat, every repeat of every round pooled. Herald publishes to the user's inbox " +
        "(`to.users`, a user socket), the common path; the JS Durable Object to its one room.",
    );
    lines.push("");
    const rows = coldwake.map((w) => [
      label(w.target),
      w.publish_to ?? "–",
      fmt(w.idle_seconds, 0),
      w.cold_ms.map((x) => fmt(x)).join(", ") || "–",
      w.warm_ms.map((x) => fmt(x)).join(", ") || "–",
      fmt(w.median_cold_ms),
      fmt(w.median_warm_ms),
      `${w.runs - w.failed}/${w.runs}`,
    ]);
    lines.push(table(["target", "publishes to", "idle s", "cold, each ms", "warm, each ms", "cold median ms", "warm median ms", "runs ok"], rows));
    lines.push("");
    const hw = coldwake.find((w) => w.target === "herald");
    const jw = coldwake.find((w) => w.target === "jsdo");
    if (hw && jw) {
      lines.push(
        `Herald / JS Durable Object: cold ${fmtRatio(ratio(hw.median_cold_ms, jw.median_cold_ms))}, ` +
          `warm ${fmtRatio(ratio(hw.median_warm_ms, jw.median_warm_ms))}.`,
      );
      lines.push("");
    }
  }

  if (data.publish_profile) lines.push(...profileSection(data.publish_profile, label));

  if (files.throughput || Object.keys(files.latency ?? {}).length) {
    lines.push("## Plots");
    lines.push("");
    if (files.throughput) lines.push(`![deliveries per second vs subscribers](${files.throughput})`, "");
    for (const t of targets) {
      if (files.latency?.[t]) lines.push(`![latency percentiles vs rate: ${label(t)}](${files.latency[t]})`, "");
    }
  }

  if (stepped.length) {
    lines.push("## Steps (medians across rounds)");
    for (const cs of stepped) {
      lines.push("");
      lines.push(`### ${caseLabel(cs)}`);
      lines.push("");
      const rows = [];
      for (const t of targets) {
        const s = byCase.get(caseKey(cs)).get(t);
        if (!s) continue;
        if (s.perRate.length === 0) rows.push([label(t), "–", "0", ...Array(9).fill("–")]);
        for (const r of s.perRate) {
          rows.push([
            label(t),
            fmt(r.rate, 0),
            String(r.n),
            fmt(r.deliveries_per_s, 0),
            fmt(r.delivered_pct, 1),
            fmt(r.p50_ms),
            fmt(r.p90_ms),
            fmt(r.p99_ms),
            fmt(r.max_ms),
            fmt(r.late_sends, 0),
            fmt(r.cpu_us_per_delivery),
            r.p99_ms !== null && r.p99_ms <= limitMs ? "yes" : "no",
          ]);
        }
      }
      lines.push(
        table(
          ["target", "rate/s", "n", "deliveries/s", "delivered %", "p50 ms", "p90 ms", "p99 ms", "max ms", "late sends", "CPU µs/delivery ¹", `p99 ≤ ${limitMs}`],
          rows,
        ),
      );
    }
    lines.push("");
    lines.push(
      "¹ CPU of the target during that step divided by its deliveries; the first step's also " +
        "carries connecting the subscribers (and the wait before the first publish).",
    );
    lines.push("");
  }

  const failed = data.runs.filter((r) => !ok(r));
  if (failed.length) {
    lines.push("## Failed runs");
    lines.push("");
    for (const r of failed) {
      lines.push(`- round ${r.round}, ${caseLabel(r)}, ${r.target}: ${String(r.error ?? "no steps reported").split("\n")[0]}`);
    }
    lines.push("");
  }
  lines.push(`Raw data: [${files.json}](${files.json}) (every step of every round, with CPU and RSS samples).`);
  lines.push("");
  return lines.join("\n");
}

/** A table cell: no pipes, and nothing Markdown would take for HTML. */
const cell = (text) => String(text).replace(/\|/g, "\\|").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const pct = (x) => (x === null || x === undefined ? "" : `${fmt(x * 100, 1)} %`);

/** "Profile of one publish": bench/profile.mjs's tables, one target after the other. */
function profileSection(profile, label) {
  const cfg = profile.config ?? {};
  const all = Object.values(profile.targets ?? {});
  const done = all.filter((a) => !a.error);
  const lines = ["## Profile of one publish", ""];
  lines.push(
    `Where the CPU time of one publish to one user goes: the \`users\` scenario (${count(cfg.subscribers)} users ` +
      `with a socket each, every publish POSTed to one random user) at ${count(cfg.rate)} publishes/s in three ` +
      `steps of ${cfg.seconds} s, the second profiled with V8's sampling profiler in workerd (asked for a sample ` +
      `every ${cfg.interval_us} µs), the third with it stopped. Each target in a run of its own after the cases ` +
      "above, started like them; the profiler's sampling threads moved to the load generator's CPU.",
  );
  lines.push("");
  for (const a of all) {
    lines.push(`### ${label(a.target)}`);
    lines.push("");
    if (a.error) {
      lines.push(`Not measured: ${cell(String(a.error).split("\n")[0])}`, "");
      continue;
    }
    const u = a.us_per_publish;
    lines.push(
      `${count(a.published)} publishes in ${fmt(a.window_s, 1)} s, ${count(a.delivered)} delivered ` +
        `(p50 ${fmt(a.window?.p50_ms)} ms, p99 ${fmt(a.window?.p99_ms)} ms); ${count(a.sampling.busy_samples)} samples of ` +
        `the Worker's isolate (one every ${fmt(a.sampling.period_us, 0)} µs while it runs).`,
    );
    lines.push("");
    lines.push(
      table(
        ["where the time goes", "µs per publish", "share of the profiled JS"],
        [
          ...a.rows.map((r) => [cell(r.row), fmt(r.us_per_publish, 1), pct(r.share)]),
          ["**profiled JS (the Worker's isolate), total**", `**${fmt(u.js, 0)}**`, "100 %"],
          ["Miniflare's entry worker (another isolate in the process; local only)", fmt(u.entry_worker, 0), ""],
          ["outside JS (workerd's own C++: sockets, HTTP, SQLite I/O not on the JS stack)", fmt(u.outside_js, 0), ""],
          ["**workerd process CPU** (/proc, all threads but the profiler's)", `**${fmt(u.process, 0)}**`, ""],
          ["the same in the next step, profiler stopped", fmt(u.process_unprofiled, 0), ""],
        ],
      ),
    );
    lines.push("");
    if (a.top_self?.length) {
      lines.push("<details><summary>Hottest functions (self time)</summary>", "");
      lines.push(
        table(
          ["function", "µs per publish", "share"],
          a.top_self.slice(0, 15).map((f) => [`\`${f.name.replace(/`/g, "'").replace(/\|/g, "\\|")}\``, fmt(f.us_per_publish, 1), pct(f.share)]),
        ),
      );
      lines.push("", "</details>", "");
    }
  }
  const h = done.find((a) => a.target === "herald");
  const j = done.find((a) => a.target === "jsdo-inbox");
  if (h && j) {
    lines.push(
      `Herald / JS DO inbox: profiled JS ${fmtRatio(ratio(h.us_per_publish.js, j.us_per_publish.js))}, ` +
        `workerd process CPU ${fmtRatio(ratio(h.us_per_publish.process, j.us_per_publish.process))} ` +
        `(profiler stopped: ${fmtRatio(ratio(h.us_per_publish.process_unprofiled, j.us_per_publish.process_unprofiled))}).`,
    );
    lines.push("");
  }
  lines.push("How to read it:");
  lines.push("");
  lines.push(
    "- A row is the time of the samples sorted into it divided by the publishes of the profiled step. " +
      "Each sample is weighed by the time since the one before it, at most one sampling period (V8 " +
      "samples only while the isolate is entered, so a longer gap was spent elsewhere). The Worker and " +
      "its Durable Objects share one isolate, so the rows cover both sides of the call.",
  );
  lines.push(
    "- Each sample goes to the first rule of `bench/profile.mjs` (`RULES`) that its stack matches: " +
      "logging, object start-up and SQL before anything else on the stack, then by the functions on it; " +
      "Worker and object rows go by the async task (Rust future) the sample ran in. An `SQL:` row is one " +
      "statement's call site: the nearest Herald function that issued it and its caller " +
      "(`← (UserHub task)`: the caller was inlined into the task).",
  );
  // workerd evicts an object about 10 s after its last event; publishes to random users
  // reach a given one as a Poisson process.
  const evicted = cfg.rate && cfg.subscribers ? Math.exp((-cfg.rate * 10) / cfg.subscribers) : null;
  lines.push(
    "- *The stub's fetch inside workerd*: the time in the Worker's `stub.fetch()` call itself, most of " +
      "it workerd waking an object it had evicted (about 10 s after the object's last event), which it " +
      `does inside that call: at this rate over this many users about ${pct(evicted)} of publishes find ` +
      "their object evicted (`node bench/profile.mjs --users 100` shows the call without wake-ups). The " +
      "object's constructor and schema (*object start-up*) and Herald's first read of the inbox's " +
      "figures (`SqlInbox::load`) are the rest of a wake-up.",
  );
  lines.push(
    "- A sample is time with the isolate entered, not CPU time: a wait inside a runtime call (a disk " +
      "read while an object wakes) counts as the call's. *Outside JS* is the process's CPU time over the " +
      "profiled step (/proc) less the profiled JS and the entry worker: the HTTP and WebSocket I/O, " +
      "storage work done between JavaScript turns (SQLite commits), and the profiler's signal handling " +
      "on the main thread (every sample interrupts it), which the *profiler stopped* line leaves out. The " +
      "entry worker is Miniflare's relay in front of every request; it does not exist in production.",
  );
  lines.push(
    "- *Logging* is dearer here than without the profiler: with an inspector attached, V8 keeps " +
      "each `console.log` message (and its stack) for the inspector. Herald writes a line per object " +
      "wake-up (`hub_wake`) and alarm run, not per stored publish.",
  );
  lines.push("");
  return lines;
}

// ---------------------------------------------------------------------------------------
// Files

function writeAtomic(path, text) {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

/** Writes <outDir>/<name>.json (the raw data); run.mjs calls it after every run. */
export function writeRaw(data, outDir) {
  mkdirSync(outDir, { recursive: true });
  const path = join(outDir, `${data.name}.json`);
  writeAtomic(path, `${JSON.stringify(data, null, 1)}\n`);
  return path;
}

/** Writes the raw JSON, the SVG plots and the Markdown report; returns their paths. */
export function writeReport(data, outDir) {
  mkdirSync(outDir, { recursive: true });
  const summary = summarize(data);
  const jsonPath = writeRaw(data, outDir);
  const files = { json: basename(jsonPath), latency: {} };
  const written = [jsonPath];
  const stepped = summary.cases.filter((c) => STEPPED.includes(c.scenario));
  if (stepped.length) {
    files.throughput = `${data.name}-throughput.svg`;
    writeAtomic(join(outDir, files.throughput), throughputSvg(summary, `Deliveries per second vs subscribers (${data.name})`));
    written.push(join(outDir, files.throughput));
  }
  const plotted = summary.targets.filter((t) => stepped.some((c) => summary.byCase.get(caseKey(c)).has(t)));
  for (const t of plotted) {
    files.latency[t] = `${data.name}-latency-${t}.svg`;
    writeAtomic(join(outDir, files.latency[t]), latencySvg(summary, t, `${TARGET_LABEL[t] ?? t}: latency percentiles vs publish rate (median of rounds)`));
    written.push(join(outDir, files.latency[t]));
  }
  const mdPath = join(outDir, `${data.name}.md`);
  writeAtomic(mdPath, markdown(data, summary, files));
  written.unshift(mdPath);
  return written;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const input = process.argv[2];
  if (!input) {
    console.error("usage: node bench/report.mjs bench/results/<name>.json");
    process.exit(2);
  }
  const data = JSON.parse(readFileSync(input, "utf8"));
  for (const path of writeReport(data, dirname(resolve(input)))) console.log(path);
}
