// The broadcast room: system-wide notices on a socket of their own, read-only, with a
// cursor kept per server and user like the inbox's (but under its own key: the two
// sequences are unrelated).

import { Channel, type ChannelEvents } from "./channel.js";
import type { CursorStore } from "./cursor.js";
import { socketUrl, type Runtime } from "./runtime.js";

export class BroadcastFeed extends Channel<ChannelEvents> {
  /** Use `new Herald({ broadcast: true })`. */
  constructor(runtime: Runtime, store: CursorStore) {
    super(runtime, { store });
  }

  start(): void {
    this.conn.start();
  }

  stop(): void {
    this.conn.stop();
  }

  protected url(since: number | undefined): string {
    return socketUrl(this.runtime.base, "/v1/broadcast/connect", { since });
  }

  // Nothing beyond the shared bookkeeping: no presence, and nothing to send.
  protected handle(): void {}
}
