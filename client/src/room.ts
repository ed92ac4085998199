// A room: its own socket and history cursor, presence and typing on top of a Channel.

import { Channel, payload, type ChannelEvents } from "./channel.js";
import { socketUrl, type Runtime } from "./runtime.js";
import type { Presence, PublishOptions, ResetInfo, ServerFrame, Typing } from "./types.js";

/** A burst of keystrokes sends one `typing` frame: peers need no more, and the server rate-limits. */
const TYPING_EVERY_MS = 2000;

export interface RoomEvents extends ChannelEvents {
  presence: Presence;
  typing: Typing;
  /** The room history behind the cursor was cut: messages in between are gone. */
  reset: ResetInfo;
}

export class RoomHandle extends Channel<RoomEvents> {
  private readonly users = new Set<string>();
  private typingAt = -Infinity;

  /** Use `herald.joinRoom`. */
  constructor(
    runtime: Runtime,
    readonly room: string,
    since: number | undefined,
    private readonly onLeave: () => void,
  ) {
    super(runtime, { start: since });
    this.conn.start();
  }

  /** Sends a client event, relayed to everyone as `message` (needs the `rooms:write` scope). */
  publish(event: string, options: PublishOptions = {}): boolean {
    return this.send({ type: "publish", event, ...options }, true);
  }

  /** Tells the others this user is typing; call it on every keystroke. */
  typing(): void {
    const now = this.runtime.clock.now();
    if (now - this.typingAt < TYPING_EVERY_MS) return;
    if (this.send({ type: "typing" }, false)) this.typingAt = now;
  }

  /** Users with at least one socket in the room, sorted. */
  presence(): string[] {
    return [...this.users].sort();
  }

  leave(): void {
    this.conn.stop();
    this.onLeave();
  }

  protected url(since: number | undefined): string {
    return socketUrl(this.runtime.base, `/v1/rooms/${this.room}/connect`, { since });
  }

  protected handle(frame: ServerFrame): void {
    switch (frame.type) {
      case "presence":
        this.track(frame);
        this.emit("presence", payload(frame));
        break;
      case "typing":
        this.emit("typing", payload(frame));
        break;
      case "reset":
        this.emit("reset", payload(frame));
        break;
    }
  }

  private track({ action, user, users }: Presence): void {
    if (action === "online") {
      this.users.clear();
      for (const name of users ?? []) this.users.add(name);
    } else {
      // One user, or several who came or went together while the room was busy.
      for (const name of user !== undefined ? [user] : users ?? []) {
        if (action === "joined") this.users.add(name);
        else this.users.delete(name);
      }
    }
  }
}
