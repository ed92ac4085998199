// The demo page in real headless Chromium (Debian's, driven by playwright-core) against
// the Worker in workerd: the connection dot, toasts and the unread badge, read state
// shared by two pages of one user, and recovery after the runtime is stopped and started
// again. Screenshots of each state go to a new directory under the system's temporary
// directory, whose path the test prints.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { freePort, launchChromium, startHerald } from "./harness.mjs";

test("the demo page: green dot, toast and badge, shared read state, red and green again across a restart", async (t) => {
  const artifacts = mkdtempSync(join(tmpdir(), "herald-browser-screenshots-"));
  t.diagnostic(`screenshots in ${artifacts}`);
  const dir = mkdtempSync(join(tmpdir(), "herald-browser-"));
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const start = () =>
    startHerald({ persistDir: dir, port, bindings: { DEV_MODE: "true", ALLOWED_ORIGINS: origin } });
  let herald = await start();
  const browser = await launchChromium();
  t.after(async () => {
    await browser.close();
    await herald.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const open = async () => {
    const page = await browser.newPage();
    await page.goto(`${origin}/demo?user=alice`);
    await page.waitForSelector('#dot[data-status="open"]', { timeout: 20_000 });
    return page;
  };
  const first = await open();
  await first.screenshot({ path: join(artifacts, "1-connected.png") });

  const published = await herald.publish({
    to: { users: ["alice"] },
    event: "task.updated",
    title: "Task 7 moved to Done",
  });
  assert.equal(published.status, 202);
  await first.waitForSelector(".toast >> text=Task 7 moved to Done");
  await first.waitForFunction(() => document.querySelector("#badge").textContent === "1");
  await first.screenshot({ path: join(artifacts, "2-toast-and-badge.png") });

  // Marking it read on a second page of the same user clears the first page's badge.
  const second = await open();
  await second.waitForSelector(`li[data-id="${published.body.id}"] button`);
  await second.click(`li[data-id="${published.body.id}"] button`);
  await first.waitForFunction(() => document.querySelector("#badge").hidden);
  await first.screenshot({ path: join(artifacts, "3-read-elsewhere.png") });
  await second.close();

  // A broadcast from the page's own form shows as a banner, not in the inbox. The
  // broadcast socket opens beside the user's: send again until it has been listening.
  await first.selectOption('#publish select[name="to"]', "*broadcast");
  await first.fill('#publish input[name="title"]', "Maintenance at 02:00");
  for (let tries = 0; ; tries++) {
    await first.click('#publish button[type="submit"]');
    const shown = await first
      .waitForSelector("#banner:not([hidden]) >> text=Maintenance at 02:00", { timeout: 2_000 })
      .catch(() => null);
    if (shown) break;
    assert.ok(tries < 10, "the broadcast banner never showed");
  }
  assert.equal(await first.locator("#inbox >> text=Maintenance at 02:00").count(), 0);
  await first.screenshot({ path: join(artifacts, "3b-broadcast-banner.png") });

  // The runtime goes away: the dot turns red.
  await herald.stop();
  await first.waitForSelector('#dot[data-status="reconnecting"]', { timeout: 30_000 });
  await first.screenshot({ path: join(artifacts, "4-runtime-down.png") });

  // Back on the same port and state; a notification published before the page has
  // reconnected arrives with the resume.
  herald = await start();
  const missed = await herald.publish({
    to: { users: ["alice"] },
    event: "task.updated",
    title: "Published while you were away",
  });
  assert.equal(missed.status, 202);
  await first.waitForSelector('#dot[data-status="open"]', { timeout: 60_000 });
  await first.waitForSelector(`li[data-id="${missed.body.id}"]`, { timeout: 20_000 });
  await first.waitForFunction(() => document.querySelector("#badge").textContent === "1");
  await first.screenshot({ path: join(artifacts, "5-back-with-missed.png") });
});
