// React binding. React is passed in (`useHerald(herald, React)`) so the SDK does not depend on it.

import type { Herald, Notification, Status } from "./index.js";

/** The two hooks used, typed loosely enough for any React version. */
export interface ReactHooks {
  useState<S>(initial: S): [S, (next: S | ((previous: S) => S)) => void];
  useEffect(effect: () => void | (() => void), deps?: readonly unknown[]): void;
}

export interface HeraldState {
  status: Status;
  unread: number;
  /** Newest first, at most 50: the inbox's first page, then whatever arrives live. */
  notifications: Notification[];
}

const LIMIT = 50;

export function useHerald(herald: Herald, react: ReactHooks): HeraldState {
  const [status, setStatus] = react.useState<Status>(herald.status);
  const [unread, setUnread] = react.useState(herald.unreadCount);
  const [notifications, setNotifications] = react.useState<Notification[]>([]);

  react.useEffect(() => {
    let mounted = true;
    const add = (items: Notification[]) => setNotifications((list) => newestFirst(list, items));
    // The first page (again after each reconnect, which also refreshes `read` flags).
    const load = () =>
      herald.fetchOlder({ limit: LIMIT }).then(
        (page) => mounted && add(page.items),
        () => {}, // the connection dropped; the next welcome loads again
      );
    const unsubscribe = [
      herald.on("status", setStatus),
      herald.on("unread", setUnread),
      herald.on("welcome", load),
      herald.on("notification", (item) => add([item])),
      herald.on("batch", (batch) => add(batch.items)),
      herald.on("reset", (page) => setNotifications(newestFirst([], page.items))),
      herald.on("read", ({ ids }) => setNotifications((list) => markRead(list, ids))),
      herald.on("deleted", ({ id }) => setNotifications((list) => list.filter((item) => item.id !== id))),
    ];
    // Catch up with whatever changed between render and this effect.
    setStatus(herald.status);
    setUnread(herald.unreadCount);
    if (herald.status === "open") void load();
    return () => {
      mounted = false;
      for (const off of unsubscribe) off();
    };
  }, [herald]);

  return { status, unread, notifications };
}

/** Merges by seq (the newer copy wins), newest first, capped. */
function newestFirst(list: Notification[], items: Notification[]): Notification[] {
  const bySeq = new Map(list.map((item) => [item.seq, item]));
  for (const item of items) bySeq.set(item.seq, item);
  return [...bySeq.values()].sort((a, b) => b.seq - a.seq).slice(0, LIMIT);
}

function markRead(list: Notification[], ids: string[]): Notification[] {
  const read = new Set(ids);
  return list.map((item) => (read.has(item.id) ? { ...item, read: true } : item));
}
