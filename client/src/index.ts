// Herald client SDK: live notifications over one WebSocket, resumed across reconnects.

import { BroadcastFeed } from "./broadcast.js";
import { Channel, payload, type ChannelEvents } from "./channel.js";
import { cursorStore } from "./cursor.js";
import { RoomHandle } from "./room.js";
import { resolveRuntime, socketUrl, type HeraldOptions } from "./runtime.js";
import type {
  Deletion,
  Notification,
  Page,
  PageQuery,
  Preferences,
  Presence,
  ReadChange,
  ServerFrame,
  Welcome,
} from "./types.js";

export type { HeraldOptions, BackoffOptions, EventTargetLike } from "./runtime.js";
export type { StorageLike } from "./cursor.js";
export type { Clock } from "./timers.js";
export type { RoomHandle, RoomEvents } from "./room.js";
export type * from "./types.js";

/** What a `reset` refetches: the newest page of the inbox. */
const RESET_PAGE = 50;

/** The server takes at most this many ids per `read` frame. */
const READ_CHUNK = 100;

const ROOM_NAME = /^[A-Za-z0-9._:-]{1,128}$/;

export interface HeraldEvents extends ChannelEvents {
  unread: number;
  read: ReadChange;
  deleted: Deletion;
  presence: Presence;
  /** The newest page, refetched because the server could not replay what was missed. */
  reset: Page;
  preferences: Preferences;
  welcome: Welcome;
  /** A system-wide notice (`room: "broadcast"`), once each, resumed across reconnects like the inbox. */
  broadcast: Notification;
}

interface PendingPage {
  resolve(page: Page): void;
  reject(error: Error): void;
}

export class Herald extends Channel<HeraldEvents> {
  private unread = 0;
  private refs = 0;
  private readonly pages = new Map<string, PendingPage>();
  private readonly rooms = new Set<RoomHandle>();
  private readonly device: string | undefined;
  private readonly broadcasts: BroadcastFeed | undefined;

  constructor(options: HeraldOptions) {
    const runtime = resolveRuntime(options);
    super(runtime, { store: cursorStore(options.storage, runtime.base) });
    this.device = options.device;
    if (options.broadcast) {
      const channel = new BroadcastFeed(runtime, cursorStore(options.storage, `${runtime.base}#broadcast`));
      channel.on("notification", (n) => this.emit("broadcast", n));
      channel.on("batch", ({ items }) => items.forEach((n) => this.emit("broadcast", n)));
      channel.on("error", (error) => this.emit("error", error));
      this.broadcasts = channel;
    }
  }

  /** Opens the connection (and the broadcast one); they then stay up, reconnecting as needed, until `close`. */
  connect(): void {
    this.conn.start();
    this.broadcasts?.start();
  }

  /** Closes the connections and every room joined through this client, for good. */
  close(): void {
    for (const room of [...this.rooms]) room.leave();
    this.broadcasts?.stop();
    this.conn.stop();
  }

  /** The last unread count the server reported. */
  get unreadCount(): number {
    return this.unread;
  }

  /** Marks items read on every device. Sent later if disconnected; false if it could not be. */
  markRead(ids: string[]): boolean {
    let queued = true;
    for (let i = 0; i < ids.length; i += READ_CHUNK) {
      queued = this.send({ type: "read", ids: ids.slice(i, i + READ_CHUNK) }, true) && queued;
    }
    return queued;
  }

  markAllRead(): boolean {
    return this.send({ type: "read", all: true }, true);
  }

  /** Tells the server this device has everything up to `seq`. */
  ack(seq: number): boolean {
    return this.send({ type: "ack", seq }, true);
  }

  /** Focus mode until a time (ms since the epoch; at most 7 days ahead), or off with null. */
  setFocus(untilMs: number | null): boolean {
    return this.send(untilMs === null ? { type: "focus", on: false } : { type: "focus", on: true, until: untilMs }, true);
  }

  /** One inbox page (newest first; oldest first with `after`). Rejects if the socket closes first. */
  fetchOlder(query: PageQuery = {}): Promise<Page> {
    const ref = `page-${++this.refs}`;
    return new Promise((resolve, reject) => {
      if (!this.send({ type: "fetch", ...query, ref }, false)) {
        reject(new Error("Herald: not connected"));
        return;
      }
      this.pages.set(ref, { resolve, reject });
    });
  }

  /** Opens a socket to a room (the token must grant it); `since` resumes its history. */
  joinRoom(room: string, { since }: { since?: number } = {}): RoomHandle {
    if (!ROOM_NAME.test(room)) throw new TypeError(`Herald: bad room name ${JSON.stringify(room)}`);
    const handle: RoomHandle = new RoomHandle(this.runtime, room, since, () => this.rooms.delete(handle));
    this.rooms.add(handle);
    return handle;
  }

  protected url(since: number | undefined): string {
    return socketUrl(this.runtime.base, "/v1/connect", { since, device: this.device });
  }

  protected handle(frame: ServerFrame): void {
    switch (frame.type) {
      case "welcome":
        this.setUnread(frame.unread_count);
        this.emit("welcome", payload(frame));
        break;
      case "unread_count":
        this.setUnread(frame.unread_count);
        break;
      case "read":
        this.setUnread(frame.unread_count);
        this.emit("read", payload(frame));
        break;
      case "deleted":
        this.setUnread(frame.unread_count);
        this.emit("deleted", payload(frame));
        break;
      case "page":
        this.setUnread(frame.unread_count);
        this.answer(frame);
        break;
      case "reset":
        this.refetch();
        break;
      case "preferences":
        this.emit("preferences", payload(frame));
        break;
      case "presence":
        this.emit("presence", payload(frame));
        break;
    }
  }

  protected down(): void {
    for (const pending of this.pages.values()) pending.reject(new Error("Herald: connection closed"));
    this.pages.clear();
  }

  private setUnread(count: number): void {
    if (count === this.unread) return;
    this.unread = count;
    this.emit("unread", count);
  }

  private answer(frame: Extract<ServerFrame, { type: "page" }>): void {
    const { type: _type, ref = "", ...page } = frame;
    const pending = this.pages.get(ref);
    if (!pending) return;
    this.pages.delete(ref);
    pending.resolve(page);
  }

  /** Nothing was replayed: hand the app the newest page instead. */
  private refetch(): void {
    this.fetchOlder({ limit: RESET_PAGE }).then(
      (page) => this.emit("reset", page),
      (error: Error) => this.emit("error", { code: "refetch_failed", message: error.message }),
    );
  }
}
