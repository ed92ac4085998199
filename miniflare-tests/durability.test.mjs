// Durable before 202: what a publish acknowledged is on disk, so it is still there after
// the runtime is stopped and started again on the same state directory.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ofType, startHerald, tokenFor } from "./harness.mjs";

test("a notification published to an offline user survives a restart of workerd", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herald-durable-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  const first = await startHerald({ persistDir: dir });
  const res = await first.publish({ to: { users: ["offline-olga"] }, event: "task.created" });
  assert.equal(res.status, 202);
  assert.equal(res.body.recipients[0].seq, 1);
  await first.stop();

  const second = await startHerald({ persistDir: dir });
  t.after(() => second.stop());
  const client = await second.connect("/v1/connect", {
    headers: { Authorization: `Bearer ${tokenFor("offline-olga")}` },
  });
  const welcome = await client.next(ofType("welcome"));
  assert.equal(welcome.seq, 1, "the stored notification's seq survived");
  assert.equal(welcome.unread_count, 1);

  // Numbering continues after the restart instead of starting over.
  const next = await second.publish({ to: { users: ["offline-olga"] }, event: "task.updated" });
  assert.equal(next.body.recipients[0].seq, 2);
  assert.equal((await client.next(ofType("notification"))).seq, 2);
  await client.close();
});
