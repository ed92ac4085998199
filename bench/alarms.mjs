// Alarm lateness: how long after its deadline a hub's alarm actually runs, measured on
// batch windows (each publish opens a 200 ms window that the alarm closes). Runs the
// built Worker in workerd (Miniflare) on 127.0.0.1; prints a Markdown table.
// Usage: node bench/alarms.mjs [rounds]
import { ofType, startHerald, tokenFor } from "../miniflare-tests/harness.mjs";

const rounds = Number(process.argv[2] ?? 40);
const user = "bench-alarms";
const auth = { Authorization: `Bearer ${tokenFor(user)}` };

const herald = await startHerald();
try {
  const res = await herald.request("/v1/preferences", {
    method: "PUT",
    headers: { ...auth, "Content-Type": "application/json" },
    body: { batch_window_ms: 200 },
  });
  if (res.status !== 200) throw new Error(`preferences: ${res.status}`);
  const client = await herald.connect("/v1/connect", { headers: auth });
  await client.next(ofType("welcome"));
  for (let i = 1; i <= rounds; i++) {
    await herald.publish({ to: { users: [user] }, event: "bench.tick" });
    await client.nth(ofType("batch"), i, { timeoutMs: 10_000 });
  }
  await client.close();
  // late_ms is null for a run in a new instance (none here: the object stays awake).
  const late = herald.logs.filter((l) => l.event === "alarm" && l.late_ms !== null).map((l) => l.late_ms);
  late.sort((a, b) => a - b);
  const median = late[Math.floor(late.length / 2)];
  console.log(`| measure | value |`);
  console.log(`|---|---|`);
  console.log(`| alarms measured | ${late.length} |`);
  console.log(`| alarm lateness, median (ms) | ${median} |`);
  console.log(`| alarm lateness, worst (ms) | ${late.at(-1)} |`);
} finally {
  await herald.stop();
}
