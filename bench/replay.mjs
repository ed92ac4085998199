// Replay benchmark: how fast a device catches up with `?since=0` on a 10,000-item inbox,
// and how much SQLite storage one notification takes. Runs the built Worker in workerd
// (Miniflare) on 127.0.0.1 with on-disk state; prints a Markdown table.
// Usage: node bench/replay.mjs [items] [runs]
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ofType, startHerald, tokenFor } from "../miniflare-tests/harness.mjs";

const items = Number(process.argv[2] ?? 10_000);
const runs = Number(process.argv[3] ?? 5);
const user = "bench-reader";

function bytesUnder(dir) {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? bytesUnder(path) : statSync(path).size;
  }
  return total;
}

const dir = mkdtempSync(join(tmpdir(), "herald-bench-"));
const herald = await startHerald({ persistDir: dir, bindings: { INBOX_MAX_ITEMS: String(items) } });
try {
  // A realistic item: title, body, a little data.
  const message = (i) => ({
    to: { users: [user] },
    event: "task.updated",
    title: `Task ${i} moved to Done`,
    body: "Carol moved the task from In progress to Done.",
    data: { task: i, project: 42, column: "done" },
    actor: "carol",
  });
  const before = bytesUnder(dir);
  for (let i = 0; i < items; i += 100) {
    const res = await herald.publish({ messages: Array.from({ length: 100 }, (_, j) => message(i + j)) });
    if (res.status !== 202) throw new Error(`publish failed: ${res.status} ${JSON.stringify(res.body)}`);
  }
  const perItem = (bytesUnder(dir) - before) / items;

  const rates = [];
  for (let run = 0; run < runs; run++) {
    const started = performance.now();
    const client = await herald.connect("/v1/connect?since=0", {
      headers: { Authorization: `Bearer ${tokenFor(user)}` },
    });
    await client.next(ofType("synced"), { timeoutMs: 120_000 });
    const elapsed = performance.now() - started;
    const got = client.frames.filter(ofType("batch")).reduce((n, b) => n + b.items.length, 0);
    if (got !== items) throw new Error(`replayed ${got} of ${items}`);
    rates.push(items / (elapsed / 1000));
    await client.close();
  }
  rates.sort((a, b) => a - b);
  const median = rates[Math.floor(rates.length / 2)];
  console.log(`| measure | value |`);
  console.log(`|---|---|`);
  console.log(`| resume of ${items.toLocaleString("en")} items, median of ${runs} (items/s) | ${Math.round(median).toLocaleString("en")} |`);
  console.log(`| resume time, median (ms) | ${Math.round((items / median) * 1000)} |`);
  console.log(`| SQLite storage per notification (bytes, on disk incl. WAL) | ${Math.round(perItem)} |`);
} finally {
  await herald.stop();
  rmSync(dir, { recursive: true, force: true });
}
