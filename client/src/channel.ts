// What Herald and a room handle have in common: a resumable stream of frames over one
// Connection, with duplicates dropped by seq.

import { Connection } from "./connection.js";
import { type CursorStore, SeqCursor } from "./cursor.js";
import { Emitter } from "./emitter.js";
import type { Runtime } from "./runtime.js";
import type { Batch, ClientFrame, HeraldError, Notification, ServerFrame, Status } from "./types.js";

/** Events every channel emits. */
export interface ChannelEvents {
  notification: Notification;
  message: Notification;
  batch: Batch;
  status: Status;
  error: HeraldError;
}

export abstract class Channel<E extends ChannelEvents> {
  protected readonly conn: Connection;
  protected readonly cursor: SeqCursor;
  private readonly emitter = new Emitter<E>();

  constructor(
    protected readonly runtime: Runtime,
    cursor: { store?: CursorStore; start?: number },
  ) {
    this.cursor = new SeqCursor(cursor.store, cursor.start);
    this.conn = new Connection(runtime, {
      url: (token) => this.url(this.cursor.forToken(token)),
      frame: (frame) => this.receive(frame),
      status: (status) => this.shared.emit("status", status),
      error: (error) => this.shared.emit("error", error),
      down: () => this.down(),
    });
  }

  get status(): Status {
    return this.conn.status;
  }

  /** Subscribes to an event; returns the function that unsubscribes. */
  on<K extends keyof E>(event: K, handler: (value: E[K]) => void): () => void {
    return this.emitter.on(event, handler);
  }

  protected emit<K extends keyof E>(event: K, value: E[K]): void {
    this.emitter.emit(event, value);
  }

  /** Sends a JSON frame; see Connection.send for `queue`. */
  protected send(frame: ClientFrame, queue: boolean): boolean {
    return this.conn.send(JSON.stringify(frame), queue);
  }

  /** The socket URL resuming after `since` (undefined: no replay). */
  protected abstract url(since: number | undefined): string;

  /** Sees every frame, after the shared bookkeeping below. */
  protected abstract handle(frame: ServerFrame): void;

  /** The socket went away; override to fail what waited on it. */
  protected down(): void {}

  /** The shared events, for code that does not know E. */
  private get shared(): Emitter<ChannelEvents> {
    return this.emitter as unknown as Emitter<ChannelEvents>;
  }

  private receive(frame: ServerFrame): void {
    switch (frame.type) {
      case "welcome":
        this.cursor.adopt(frame.seq);
        break;
      case "reset":
        this.cursor.reset(frame.latest_seq);
        break;
      case "notification":
      case "message":
        if (this.cursor.take([frame]).length > 0) this.shared.emit(frame.type, payload(frame));
        break;
      case "batch": {
        const items = this.cursor.take(frame.items);
        if (items.length > 0) this.shared.emit("batch", { reason: frame.reason, items });
        break;
      }
      case "error":
        this.shared.emit("error", payload(frame));
        break;
    }
    this.handle(frame);
  }
}

/** A frame's body without its `type` tag: what the app receives. */
export function payload<F extends { type: string }>(frame: F): Omit<F, "type"> {
  const body: Partial<F> = { ...frame };
  delete body.type;
  return body as Omit<F, "type">;
}
