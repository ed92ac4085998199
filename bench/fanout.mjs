// Room fan-out: time from a room publish until the last of N sockets has it, with all
// sockets in one object and spread over shard objects. Runs the built Worker in workerd
// (Miniflare) on 127.0.0.1; prints a Markdown table.
// Usage: node bench/fanout.mjs [sockets] [runs]
import { ofType, startHerald, tokenFor } from "../miniflare-tests/harness.mjs";

const sockets = Number(process.argv[2] ?? 1000);
const runs = Number(process.argv[3] ?? 5);
const room = "project:fanout";

async function measure(shardSize) {
  const herald = await startHerald({ bindings: { ROOM_SHARD_SIZE: String(shardSize) } });
  const clients = [];
  try {
    for (let i = 0; i < sockets; i += 50) {
      const batch = Array.from({ length: Math.min(50, sockets - i) }, async (_, j) => {
        const token = tokenFor(`u${i + j}`, { claims: { rooms: [room] } });
        const client = await herald.connect(`/v1/rooms/${room}/connect`, {
          headers: { Authorization: `Bearer ${token}` },
        });
        await client.next(ofType("welcome"));
        return client;
      });
      clients.push(...(await Promise.all(batch)));
    }
    const times = [];
    for (let run = 1; run <= runs; run++) {
      const started = performance.now();
      const res = await herald.publish({ to: { room }, event: "bench.fanout" });
      if (res.status !== 202) throw new Error(`publish: ${res.status}`);
      await Promise.all(clients.map((c) => c.nth(ofType("notification"), run, { timeoutMs: 60_000 })));
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    return times[Math.floor(times.length / 2)];
  } finally {
    for (const c of clients) c.ws.terminate();
    await herald.stop();
  }
}

const one = await measure(sockets);
const shardSize = Math.ceil(sockets / 4);
const sharded = await measure(shardSize);
console.log(`| measure | value |`);
console.log(`|---|---|`);
console.log(`| fan-out of one room publish to ${sockets.toLocaleString("en")} sockets in one object, median of ${runs} (ms) | ${Math.round(one)} |`);
console.log(`| the same across a root and 3 shards (${shardSize} sockets each), median (ms) | ${Math.round(sharded)} |`);
