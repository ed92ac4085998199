// One logical connection that outlives its sockets: token, heartbeat, backoff, close codes,
// online/offline. Herald and every room handle each own one.

import type { Runtime, SocketLike } from "./runtime.js";
import { Timers } from "./timers.js";
import type { HeraldError, ServerFrame, Status } from "./types.js";

const PROTOCOL = "herald.v1";
const NORMAL_CLOSURE = 1000;
/** What a socket that failed without a close frame reports. */
const ABNORMAL_CLOSURE = 1006;
const TOKEN_EXPIRED = 4001;

/**
 * Frames queued while disconnected. Bounded: the server closes a socket that sends more
 * than 40 frames in a burst with 4008, which must not be retried.
 */
const OUTBOX_LIMIT = 20;

export interface ConnectionHooks {
  /** The URL for the next socket with `token` (it carries that user's resume cursor). */
  url(token: string): string;
  frame(frame: ServerFrame): void;
  status(status: Status): void;
  error(error: HeraldError): void;
  /** The current socket is gone; anything waiting on it will not be answered. */
  down(): void;
}

export class Connection {
  private state: Status = "closed";
  private socket: SocketLike | null = null;
  /** Failed tries since the last stable connection: the backoff exponent. */
  private attempt = 0;
  /** Bumped to abandon a connect that is still waiting for its token. */
  private generation = 0;
  private readonly timers: Timers;
  private readonly outbox: string[] = [];
  private readonly onOnline = () => this.online();
  private readonly onOffline = () => this.offline();

  constructor(
    private readonly runtime: Runtime,
    private readonly hooks: ConnectionHooks,
  ) {
    this.timers = new Timers(runtime.clock);
  }

  get status(): Status {
    return this.state;
  }

  start(): void {
    if (this.state !== "closed") return;
    this.listen(true);
    this.setStatus("connecting");
    this.connect();
  }

  /** Closes for good: no reconnect until `start` is called again. */
  stop(): void {
    if (this.state !== "closed") this.halt();
  }

  /**
   * Sends at once when open. Otherwise `queue` keeps the frame for the next socket (up to
   * OUTBOX_LIMIT); returns false when the frame was dropped.
   */
  send(frame: string, queue: boolean): boolean {
    if (this.socket && this.state === "open") {
      this.socket.send(frame);
      return true;
    }
    if (!queue || this.state === "closed" || this.outbox.length >= OUTBOX_LIMIT) return false;
    this.outbox.push(frame);
    return true;
  }

  private connect(): void {
    const generation = ++this.generation;
    const current = () => generation === this.generation;
    Promise.resolve()
      .then(() => this.runtime.token())
      .then(
        (token) => current() && this.open(token),
        (error: unknown) => {
          if (!current()) return;
          this.hooks.error({ code: "token_unavailable", message: String(error) });
          this.retry();
        },
      );
  }

  private open(token: string): void {
    // The token rides in the subprotocol list: browsers cannot set an Authorization header.
    const socket = new this.runtime.WebSocket(this.hooks.url(token), [PROTOCOL, `bearer.${token}`]);
    socket.onopen = () => this.opened();
    socket.onmessage = (event) => this.received(event.data);
    socket.onclose = (event) => this.closed(event.code);
    // Browsers follow an error with a close; Node 22's WebSocket, refused during the
    // handshake, fires only the error. Either way the socket is done.
    socket.onerror = () => this.closed(ABNORMAL_CLOSURE);
    this.socket = socket;
    // A handshake can hang as silently as a dead link (half-open TCP, a stuck proxy).
    this.expectAnswer();
  }

  private opened(): void {
    this.timers.clear("answer");
    this.timers.set("stable", this.runtime.backoff.resetAfterMs, () => {
      this.attempt = 0;
    });
    this.schedulePing();
    for (const frame of this.outbox.splice(0)) this.socket?.send(frame);
    this.setStatus("open");
  }

  private received(data: unknown): void {
    if (typeof data !== "string") return;
    // Any frame proves the link alive, not only the pong.
    this.timers.clear("answer");
    if (data === "pong") return;
    const frame = parse(data);
    if (frame) this.hooks.frame(frame);
  }

  private closed(code: number): void {
    this.release();
    if (code === TOKEN_EXPIRED && this.runtime.refreshable) {
      // Not a failure: the token ran out. A fresh one works at once.
      this.setStatus("reconnecting");
      this.connect();
    } else if (code === TOKEN_EXPIRED) {
      this.fail({ code: "token_expired", message: "the token expired; pass getToken to renew it", closeCode: code });
    } else if (code >= 4000 && code <= 4099) {
      // 40xx: the same token would be refused again (rate limited, too many devices, …).
      this.fail({ code: "closed", message: `the server closed the connection with ${code}`, closeCode: code });
    } else {
      this.retry();
    }
  }

  /** Full jitter: a random wait up to an exponentially growing, capped ceiling. */
  private retry(): void {
    const { baseMs, capMs } = this.runtime.backoff;
    const ceiling = Math.min(capMs, baseMs * 2 ** this.attempt);
    this.attempt += 1;
    this.setStatus("reconnecting");
    this.timers.set("retry", this.runtime.random() * ceiling, () => this.connect());
  }

  private schedulePing(): void {
    this.timers.set("ping", this.runtime.pingIntervalMs, () => {
      this.socket?.send("ping");
      this.expectAnswer();
      this.schedulePing();
    });
  }

  /** Starts the clock for the server to answer, unless it is already running. */
  private expectAnswer(): void {
    if (!this.timers.has("answer")) this.timers.set("answer", this.runtime.pongTimeoutMs, () => this.dead());
  }

  /** No answer: the socket may never report its own close (a dead TCP path), so drop it now. */
  private dead(): void {
    this.release()?.close();
    this.retry();
  }

  private offline(): void {
    this.generation++;
    this.timers.clear("retry");
    this.release()?.close();
    this.setStatus("offline");
  }

  private online(): void {
    // Only when idle: a socket (or a token request) already under way is left to finish.
    if (this.state !== "offline" && !this.timers.has("retry")) return;
    this.timers.clear("retry");
    this.setStatus("reconnecting");
    this.connect();
  }

  private fail(error: HeraldError): void {
    this.halt();
    this.hooks.error(error);
  }

  private halt(): void {
    this.generation++;
    this.timers.clearAll();
    this.release()?.close(NORMAL_CLOSURE);
    this.outbox.length = 0;
    this.listen(false);
    this.setStatus("closed");
  }

  /** Forgets the current socket: its events no longer reach us. Returns it for closing. */
  private release(): SocketLike | null {
    const socket = this.socket;
    if (!socket) return null;
    this.socket = null;
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    this.timers.clear("ping");
    this.timers.clear("answer");
    this.timers.clear("stable");
    this.hooks.down();
    return socket;
  }

  private listen(on: boolean): void {
    const target = this.runtime.events;
    if (!target) return;
    const method = on ? "addEventListener" : "removeEventListener";
    target[method]("online", this.onOnline);
    target[method]("offline", this.onOffline);
  }

  private setStatus(status: Status): void {
    if (status === this.state) return;
    this.state = status;
    this.hooks.status(status);
  }
}

function parse(text: string): ServerFrame | undefined {
  try {
    const frame: unknown = JSON.parse(text);
    const typed = typeof frame === "object" && frame !== null && typeof (frame as { type?: unknown }).type === "string";
    return typed ? (frame as ServerFrame) : undefined;
  } catch {
    // Not JSON: nothing the protocol sends, so nothing to act on.
    return undefined;
  }
}
