// The shapes of Herald's frames and of what the SDK hands to the app. Field names are the
// wire names (docs/protocol.md), so a payload can be logged or stored as is.

export type Status = "connecting" | "open" | "reconnecting" | "offline" | "closed";

export type Priority = "low" | "normal" | "high" | "urgent";

/** One stored item: an inbox notification, or a room's publish or message. */
export interface Notification {
  id: string;
  /** Per user (or per room), strictly increasing: the resume cursor. */
  seq: number;
  event: string;
  title?: string;
  body?: string;
  data?: unknown;
  priority?: Priority;
  actor?: string;
  room?: string;
  /**
   * On room history items: who put it there, a producer over HTTPS (`notification`
   * frames) or a member's socket (`message` frames). Replays carry it too.
   */
  source?: "producer" | "member";
  /** Milliseconds since the epoch. */
  created_at: number;
  expires_at?: number;
  read?: boolean;
}

export interface Batch {
  reason: "replay" | "window" | "focus_end" | "burst";
  /** Oldest first, only items not delivered before. */
  items: Notification[];
}

export interface Page {
  /** Newest first, or oldest first when the query had `after`. */
  items: Notification[];
  unread_count: number;
  latest_seq: number;
  next_before?: number;
  next_after?: number;
}

export interface PageQuery {
  before?: number;
  after?: number;
  limit?: number;
  unread?: boolean;
}

export interface PublishOptions {
  title?: string;
  body?: string;
  data?: unknown;
}

export interface Welcome {
  user: string;
  room?: string;
  session: string;
  device?: string;
  seq: number;
  unread_count: number;
  heartbeat_ms: number;
}

export interface ReadChange {
  ids: string[];
  unread_count: number;
}

export interface Deletion {
  id: string;
  seq: number;
  unread_count: number;
}

export interface ResetInfo {
  oldest_seq: number | null;
  latest_seq: number;
}

export interface Presence {
  action: "joined" | "left" | "online";
  user?: string;
  users?: string[];
}

export interface Typing {
  user: string;
}

export interface Preferences {
  batch_window_ms: number;
  focus_until: number | null;
  quiet_hours: { start: string; end: string; time_zone: string } | null;
  muted_events: string[];
  min_priority: Priority;
}

/**
 * An `error` frame from the server (`code` and `message`), or a condition the SDK reports
 * itself: `token_expired`, `token_unavailable`, `closed` (the server closed with a code that
 * forbids reconnecting; see `closeCode`), `refetch_failed`.
 */
export interface HeraldError {
  code: string;
  message: string;
  closeCode?: number;
}

export type ServerFrame =
  | ({ type: "welcome" } & Welcome)
  | ({ type: "notification" } & Notification)
  | ({ type: "message" } & Notification)
  | ({ type: "batch" } & Batch)
  | { type: "synced"; seq: number }
  | ({ type: "reset" } & ResetInfo)
  | { type: "unread_count"; unread_count: number }
  | ({ type: "read" } & ReadChange)
  | ({ type: "deleted" } & Deletion)
  | ({ type: "page"; ref?: string } & Page)
  | ({ type: "preferences" } & Preferences)
  | ({ type: "presence" } & Presence)
  | ({ type: "typing" } & Typing)
  | { type: "pong" }
  | { type: "error"; code: string; message: string };

/** What the SDK sends, apart from the literal `ping`. */
export type ClientFrame =
  | { type: "read"; ids: string[] }
  | { type: "read"; all: true }
  | { type: "ack"; seq: number }
  | { type: "focus"; on: true; until: number }
  | { type: "focus"; on: false }
  | ({ type: "fetch"; ref: string } & PageQuery)
  | ({ type: "publish"; event: string } & PublishOptions)
  | { type: "typing" };
