// Options, their defaults, and what Herald and its rooms share: one resolved Runtime.

import type { StorageLike } from "./cursor.js";
import { systemClock, type Clock } from "./timers.js";

/** What the SDK needs from a WebSocket: the browser's, Node 22's global, or `ws`. */
export interface SocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason?: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

type SocketConstructor = new (url: string, protocols: string[]) => SocketLike;

export interface EventTargetLike {
  addEventListener(type: string, listener: () => void): void;
  removeEventListener(type: string, listener: () => void): void;
}

export interface BackoffOptions {
  /** First retry waits up to this long; each failed try doubles it. Default 1000. */
  baseMs?: number;
  /** Longest wait between tries. Default 30000. */
  capMs?: number;
  /** A connection that stays open this long starts the next backoff from scratch. Default 60000. */
  resetAfterMs?: number;
}

export interface HeraldOptions {
  /** The service's base URL, http(s):// (or ws(s)://), e.g. `https://herald.example.com`. */
  url: string;
  /** A user JWT. */
  token?: string;
  /** Called before every connect; wins over `token`. Needed to recover from an expired token. */
  getToken?: () => Promise<string>;
  /** Also listen to system-wide notices on a second socket (`/v1/broadcast/connect`), emitted as `broadcast`. */
  broadcast?: boolean;
  /** A name for this device (1–64 of `A–Z a–z 0–9 . _ : -`), echoed in `welcome`. */
  device?: string;
  /** Where resume cursors are kept, one per server and user (`herald:seq:<url>:<sub>`). Default: `localStorage` if any; null: nowhere. */
  storage?: StorageLike | null;
  backoff?: BackoffOptions;
  /** How often to send the heartbeat `ping`. Default 25000. */
  pingIntervalMs?: number;
  /** A `ping` (or the opening handshake) unanswered this long means the connection is dead. Default 10000. */
  pongTimeoutMs?: number;
  /** A WebSocket class; default `globalThis.WebSocket`. */
  WebSocket?: new (url: string, protocols: string[]) => unknown;
  /** Source of `online` / `offline` events; default `globalThis` where it has them (browsers). */
  events?: EventTargetLike | null;
  /** For tests: time and timers. */
  clock?: Clock;
  /** For tests: jitter source in [0, 1). */
  random?: () => number;
}

export interface Runtime {
  /** ws(s):// base URL, no trailing slash. */
  base: string;
  WebSocket: SocketConstructor;
  clock: Clock;
  random: () => number;
  events: EventTargetLike | null;
  backoff: Required<BackoffOptions>;
  pingIntervalMs: number;
  pongTimeoutMs: number;
  token(): string | Promise<string>;
  /** A fresh token can be had (`getToken`), so an expired one is not the end. */
  refreshable: boolean;
}

export function resolveRuntime(options: HeraldOptions): Runtime {
  const { token, getToken } = options;
  if (token === undefined && !getToken) throw new TypeError("Herald: pass `token` or `getToken`");
  const WebSocket = options.WebSocket ?? globalThis.WebSocket;
  if (!WebSocket) throw new TypeError("Herald: no global WebSocket; pass `WebSocket` (e.g. from the ws package)");
  return {
    base: socketBase(options.url),
    WebSocket: WebSocket as SocketConstructor,
    clock: options.clock ?? systemClock,
    random: options.random ?? Math.random,
    events: options.events === undefined ? defaultEvents() : options.events,
    backoff: { baseMs: 1000, capMs: 30000, resetAfterMs: 60000, ...options.backoff },
    pingIntervalMs: options.pingIntervalMs ?? 25000,
    pongTimeoutMs: options.pongTimeoutMs ?? 10000,
    token: getToken ? () => getToken() : () => token as string,
    refreshable: getToken !== undefined,
  };
}

/** `https://host/prefix` → `wss://host/prefix`; a path prefix (behind a proxy) is kept. */
function socketBase(url: string): string {
  const parsed = new URL(url);
  const schemes: Record<string, string> = { "http:": "ws:", "https:": "wss:", "ws:": "ws:", "wss:": "wss:" };
  const scheme = schemes[parsed.protocol];
  if (!scheme) throw new TypeError(`Herald: url must be http(s) or ws(s), got ${url}`);
  parsed.protocol = scheme;
  parsed.search = "";
  parsed.hash = "";
  return parsed.href.replace(/\/+$/, "");
}

export function socketUrl(base: string, path: string, query: Record<string, string | number | undefined>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) params.set(key, String(value));
  }
  const search = params.toString();
  return base + path + (search ? `?${search}` : "");
}

function defaultEvents(): EventTargetLike | null {
  const target = globalThis as Partial<EventTargetLike>;
  return typeof target.addEventListener === "function" ? (target as EventTargetLike) : null;
}
