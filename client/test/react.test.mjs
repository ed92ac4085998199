// useHerald with a minimal stand-in for React's useState/useEffect.

import assert from "node:assert/strict";
import test from "node:test";

import { useHerald } from "../dist/react.js";
import { accept, item, live, settle, start } from "./fakes.mjs";

/** Enough of React for one component: state slots by call order, effects run once on mount. */
function fakeReact() {
  const slots = [];
  let slot = 0;
  const effects = [];
  const react = {
    useState(initial) {
      const i = slot++;
      if (!(i in slots)) slots[i] = initial;
      return [slots[i], (next) => (slots[i] = typeof next === "function" ? next(slots[i]) : next)];
    },
    useEffect(effect) {
      effects.push(effect);
    },
  };
  let cleanup;
  return {
    render(herald) {
      slot = 0;
      effects.length = 0;
      const state = useHerald(herald, react);
      cleanup ??= effects[0]();
      return state;
    },
    unmount: () => cleanup(),
  };
}

test("useHerald loads the first page, then follows live items, reads and deletions", async () => {
  const { herald, net } = await start();
  const view = fakeReact();
  assert.deepEqual(view.render(herald), { status: "connecting", unread: 0, notifications: [] });

  accept(net.last, 2, 2);
  const [fetch] = net.last.frames;
  assert.equal(fetch.type, "fetch");
  net.last.deliver({ type: "page", ref: fetch.ref, items: [item(2), item(1)], unread_count: 2, latest_seq: 2 });
  await settle();
  net.last.deliver(live(3), { type: "batch", reason: "window", items: [item(4), item(5)] });
  net.last.deliver({ type: "read", ids: ["ntf_1"], unread_count: 4 }, { type: "deleted", id: "ntf_2", seq: 2, unread_count: 4 });

  const state = view.render(herald);
  assert.equal(state.status, "open");
  assert.equal(state.unread, 4);
  assert.deepEqual(state.notifications.map((n) => n.seq), [5, 4, 3, 1]);
  assert.equal(state.notifications.at(-1).read, true);

  view.unmount();
  net.last.deliver(live(6));
  assert.equal(view.render(herald).notifications.length, 4, "unsubscribed on unmount");
});

test("useHerald keeps at most 50, newest first", async () => {
  const { herald, net } = await start();
  const view = fakeReact();
  view.render(herald);
  accept(net.last);
  const items = Array.from({ length: 60 }, (_, i) => item(i + 1));
  net.last.deliver({ type: "batch", reason: "replay", items });
  const { notifications } = view.render(herald);
  assert.equal(notifications.length, 50);
  assert.equal(notifications[0].seq, 60);
  assert.equal(notifications.at(-1).seq, 11);
});
