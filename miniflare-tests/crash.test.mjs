// Durability under a crash: workerd is killed with SIGKILL in the middle of a publish
// burst; after a restart on the same state, every publish that was answered 202 is there.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ofType, startHerald, tokenFor } from "./harness.mjs";

/** The workerd processes this test process started (Miniflare spawns them directly). */
function workerdPids() {
  try {
    return execFileSync("pgrep", ["-P", String(process.pid), "workerd"], { encoding: "utf8" })
      .split("\n")
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

test("every publish answered 202 before a SIGKILL of workerd is replayed after a restart", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herald-crash-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const user = "crash-carl";

  const first = await startHerald({ persistDir: dir });
  const acked = [];
  let killed = false;
  const publishers = Array.from({ length: 8 }, async () => {
    while (!killed) {
      try {
        const res = await first.publish({ to: { users: [user] }, event: "burst" });
        if (res.status === 202) acked.push(res.body);
      } catch {
        // Connections cut by the kill; only answered publishes are promised.
      }
    }
  });
  while (acked.length < 150) await new Promise((r) => setTimeout(r, 5));
  const pids = workerdPids();
  assert.ok(pids.length > 0, "found the workerd process");
  for (const pid of pids) process.kill(pid, "SIGKILL");
  killed = true;
  await Promise.all(publishers);
  await first.stop().catch(() => {});

  const second = await startHerald({ persistDir: dir });
  t.after(() => second.stop());
  const client = await second.connect("/v1/connect?since=0", {
    headers: { Authorization: `Bearer ${tokenFor(user)}` },
  });
  await client.next(ofType("synced"));
  const replayed = new Map(
    client.frames.filter(ofType("batch")).flatMap((b) => b.items.map((n) => [n.seq, n.id])),
  );
  for (const answer of acked) {
    const { seq } = answer.recipients[0];
    assert.equal(replayed.get(seq), answer.id, `seq ${seq} answered 202 but was not replayed`);
  }
  // Seqs are dense: whatever was stored, nothing in between is missing.
  const seqs = [...replayed.keys()];
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1));
  assert.ok(seqs.length >= acked.length);
  await client.close();
});
