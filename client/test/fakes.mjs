// Test doubles: a clock whose timers run only when the test advances it, and a scripted
// WebSocket the test opens, feeds frames to and closes with a code.

import { Herald } from "../dist/herald.js";

export function fakeClock() {
  let now = 0;
  let nextId = 1;
  const timers = new Map();
  return {
    now: () => now,
    setTimeout(fn, ms) {
      timers.set(nextId, { at: now + ms, fn });
      return nextId++;
    },
    clearTimeout(id) {
      timers.delete(id);
    },
    /** Runs every timer due within `ms`, earliest first, moving the time along. */
    advance(ms) {
      const end = now + ms;
      for (;;) {
        const due = [...timers].filter(([, t]) => t.at <= end).sort(([a, x], [b, y]) => x.at - y.at || a - b)[0];
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].fn();
      }
      now = end;
    },
    /** How far ahead each pending timer is, soonest first. */
    pending() {
      return [...timers.values()].map((t) => t.at - now).sort((a, b) => a - b);
    },
  };
}

export function fakeSockets() {
  const sockets = [];
  class FakeSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.sent = [];
      this.closeCode = undefined;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      sockets.push(this);
    }
    send(data) {
      this.sent.push(data);
    }
    /** Called by the SDK; 1005 stands for "closed without a code". */
    close(code) {
      this.closeCode = code ?? 1005;
    }
    open() {
      this.onopen?.({});
    }
    deliver(...frames) {
      for (const frame of frames) this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
    }
    /** The server (or the network) closes the socket. */
    serverClose(code) {
      this.onclose?.({ code, reason: "" });
    }
    /** The socket fails without a close event (Node 22's WebSocket refused mid-handshake). */
    fail() {
      this.onerror?.({});
    }
    /** Sent JSON frames, heartbeats left out. */
    get frames() {
      return this.sent.filter((data) => data !== "ping").map((data) => JSON.parse(data));
    }
    get since() {
      return new URL(this.url).searchParams.get("since");
    }
  }
  return {
    FakeSocket,
    sockets,
    get last() {
      return sockets.at(-1);
    },
  };
}

/** Lets promise chains (token lookups, page answers) run. */
export const settle = () => new Promise((resolve) => setImmediate(resolve));

export const welcome = (seq = 0, unread_count = 0) => ({
  type: "welcome",
  user: "alice",
  session: "ses_1",
  seq,
  unread_count,
  heartbeat_ms: 25000,
});

export const item = (seq, extra = {}) => ({
  id: `ntf_${seq}`,
  seq,
  event: "task.updated",
  priority: "normal",
  created_at: 1795498326894 + seq,
  read: false,
  ...extra,
});

export const live = (seq, extra) => ({ type: "notification", ...item(seq, extra) });

export function collect(emitter, event) {
  const seen = [];
  emitter.on(event, (value) => seen.push(value));
  return seen;
}

/** A connected Herald over fakes; random() just under 1 makes each wait its ceiling. */
export async function start(options = {}) {
  const clock = fakeClock();
  const net = fakeSockets();
  const events = new EventTarget();
  const herald = new Herald({
    url: "https://herald.test",
    token: "tok",
    storage: null,
    clock,
    events,
    WebSocket: net.FakeSocket,
    random: () => 0.999999,
    ...options,
  });
  const statuses = collect(herald, "status");
  const errors = collect(herald, "error");
  herald.connect();
  await settle();
  return { herald, clock, net, events, statuses, errors };
}

/** Opens the current socket and plays the server's welcome. */
export function accept(socket, seq = 0, unread = 0) {
  socket.open();
  socket.deliver(welcome(seq, unread));
}

/** A token the SDK can read the `sub` of (the signature is never checked client-side). */
export function jwtFor(sub) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "HS256" })}.${part({ sub, exp: 2e9 })}.sig`;
}

/** A `localStorage` stand-in. */
export function memoryStorage(initial = {}) {
  const map = new Map(Object.entries(initial));
  return {
    getItem: (key) => map.get(key) ?? null,
    setItem: (key, value) => map.set(key, value),
  };
}
