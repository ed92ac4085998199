//! WebSocket frames in both directions, and the close codes.
//!
//! Frames are JSON text with a `type` field. The one exception is the literal text `ping`,
//! which the runtime answers with `pong` without waking the hub; it never reaches this
//! module. Close codes follow DESIGN.md: 40xx mean "do not reconnect with the same token",
//! 41xx mean "reconnect with backoff".
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};

use crate::attention::Preferences;
use crate::model::{Notification, Seq};

/// Why several notifications travel in one `batch` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchReason {
    /// Catching up after `since` (or a `resume` frame).
    Replay,
    /// The user's batch window closed.
    Window,
    /// Focus mode or quiet hours ended: the digest of what was held.
    FocusEnd,
    /// Live room items that queued up while the room was busy, sent in one frame.
    Burst,
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame on every socket.
    Welcome {
        /// The user the token names.
        user: String,
        /// Set on room sockets.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// This connection's id; it appears in logs next to the user.
        session: String,
        /// The `device` given at connect; absent when none was.
        #[serde(skip_serializing_if = "Option::is_none")]
        device: Option<String>,
        /// The latest seq stored: the user's inbox, or the room's history on a room socket.
        seq: Seq,
        /// Unread items in the user's inbox; 0 on room sockets.
        unread_count: u64,
        /// How often the client should send `ping`.
        heartbeat_ms: u64,
    },
    /// One stored notification, pushed live.
    Notification(Notification),
    /// Several notifications at once, oldest first.
    Batch {
        /// Why these items travel together.
        reason: BatchReason,
        /// The notifications: at most 100 per frame in a replay, and at most
        /// [`MAX_BATCH_BYTES`] of content in any batch (always at least one item).
        items: Vec<Notification>,
    },
    /// The replay is complete: everything up to `seq` has been sent; live items follow.
    Synced {
        /// The latest seq stored when the replay was taken; later ones arrive live.
        seq: Seq,
    },
    /// The resume cursor is older than what is kept (or newer than anything stored):
    /// nothing was replayed; refetch the inbox. Live items follow `synced`.
    Reset {
        /// The oldest seq still kept, if any.
        oldest_seq: Option<Seq>,
        /// The latest seq stored.
        latest_seq: Seq,
    },
    /// The number of unread items changed (a publish arrived).
    UnreadCount {
        /// Unread items now.
        unread_count: u64,
    },
    /// Items were marked read, on this device or another.
    Read {
        /// The items now read.
        ids: Vec<String>,
        /// Unread items left.
        unread_count: u64,
    },
    /// An item was deleted.
    Deleted {
        /// The deleted item's id.
        id: String,
        /// The deleted item's seq.
        seq: Seq,
        /// Unread items left.
        unread_count: u64,
    },
    /// Answer to a `fetch` frame: one inbox page.
    Page(Page),
    /// The user's preferences changed (a `focus` frame or `PUT /v1/preferences`).
    Preferences(Preferences),
    /// A room member's client event (chat, reaction, edit, delete), from the room history.
    Message(Notification),
    /// Who is in a room: `joined`/`left` name one user, `online` lists everyone.
    Presence {
        /// A join, a leave, or the full list.
        action: PresenceAction,
        /// The one user who joined or left.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// Everyone online, or the users of a busy room who joined or left together.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        users: Option<Vec<String>>,
    },
    /// A room member is typing; never stored.
    Typing {
        /// Who is typing.
        user: String,
    },
    /// Answer to a JSON `{"type":"ping"}` (the literal `ping` gets a literal `pong`).
    Pong,
    /// The client sent something the server could not use; the socket stays open.
    Error {
        /// What went wrong, for code to act on: `bad_frame`, `bad_request`, `unknown_id`,
        /// `not_found`, `forbidden`, `unavailable`, `closing`, `too_many_devices`.
        code: String,
        /// What went wrong, for a person reading logs.
        message: String,
    },
}

/// What a `presence` frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceAction {
    /// A user who was not online opened a socket; a reconnect within the grace period
    /// is not a join.
    Joined,
    /// A user's last socket closed and the grace period passed without a new one.
    Left,
    /// The full list, sent to a new socket right after `welcome`.
    Online,
}

/// One page of the inbox, for `GET /v1/notifications` and the `fetch` frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// Echo of the request's `ref`, so a client can match answers to questions.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Newest first, or oldest first when the request gave `after`.
    pub items: Vec<Notification>,
    /// Unread items in the whole inbox, not only this page.
    pub unread_count: u64,
    /// The latest seq stored for the user.
    pub latest_seq: Seq,
    /// Pass as `before` for the next (older) page; absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<Seq>,
    /// Pass as `after` for the next (newer) page; absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<Seq>,
}

/// Most notification content (as `MAX_NOTIFICATION_BYTES` counts it) one `batch` frame
/// carries: a replay, digest or burst larger than this goes out as several frames, so a
/// frame stays far below what a runtime or browser takes as one message, and a sender
/// never builds one huge string.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

impl ServerFrame {
    /// `items` as `batch` frames of at most [`MAX_BATCH_BYTES`] of content each, in order;
    /// an item larger than that travels alone.
    pub fn batches(reason: BatchReason, items: Vec<Notification>) -> Vec<ServerFrame> {
        let mut frames = Vec::new();
        let mut current: Vec<Notification> = Vec::new();
        let mut bytes = 0;
        for item in items {
            let size = item.stored_size();
            if !current.is_empty() && bytes + size > MAX_BATCH_BYTES {
                frames.push(ServerFrame::Batch {
                    reason,
                    items: std::mem::take(&mut current),
                });
                bytes = 0;
            }
            bytes += size;
            current.push(item);
        }
        if !current.is_empty() {
            frames.push(ServerFrame::Batch {
                reason,
                items: current,
            });
        }
        frames
    }

    /// Whether `next` may join a batch holding `items` within [`MAX_BATCH_BYTES`].
    pub fn fits(items: &[Notification], next: &Notification) -> bool {
        let held: usize = items.iter().map(Notification::stored_size).sum();
        held + next.stored_size() <= MAX_BATCH_BYTES
    }

    /// An `error` frame; the socket stays open unless a close follows.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self::Error {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// The text sent on the socket.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }

    /// The answer to a binary frame on any socket: Herald speaks JSON text only.
    pub fn binary_refused() -> Self {
        Self::error(
            "bad_frame",
            "binary frames are not supported; send JSON text",
        )
    }
}

/// Parses a client's text frame (a user's [`ClientFrame`] or a room member's), or answers
/// the `bad_frame` error the socket gets instead; the socket stays open either way.
pub fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Box<ServerFrame>> {
    serde_json::from_str(text).map_err(|e| {
        Box::new(ServerFrame::error(
            "bad_frame",
            format!("not a frame this server understands: {e}"),
        ))
    })
}

/// Which items a `read` marks: exactly one of the three.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ReadRequest {
    /// Up to 100 items by id; if any is not in the inbox, none is marked.
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    /// Every unread item with a seq at or below this one.
    #[serde(default)]
    pub up_to_seq: Option<Seq>,
    /// `true`: everything.
    #[serde(default)]
    pub all: Option<bool>,
}

/// Which page a `fetch` (or `GET /v1/notifications`) asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PageRequest {
    /// Only items newer than this seq, oldest first.
    #[serde(default)]
    pub after: Option<Seq>,
    /// Only items older than this seq.
    #[serde(default)]
    pub before: Option<Seq>,
    /// 1 to 100; 50 when absent.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Only unread items.
    #[serde(default)]
    pub unread: bool,
    /// Echoed in the page's `ref`.
    #[serde(rename = "ref", default)]
    pub reference: Option<String>,
}

/// What a client may send, apart from the literal `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// A JSON ping from clients that cannot send bare text; answered with `pong`.
    Ping,
    /// This device has everything up to `seq`.
    Ack {
        /// The highest seq this device has processed; at most the latest stored.
        seq: Seq,
    },
    /// Mark items read on every device.
    Read(ReadRequest),
    /// One inbox page.
    Fetch(PageRequest),
    /// Replay everything after `since`, as `?since=` does at connect.
    Resume {
        /// The highest seq the client has processed.
        since: Seq,
    },
    /// Focus mode on (until a time, or for a duration) or off.
    Focus(FocusRequest),
}

/// A `focus` frame: `{"on":true,"until":ms}`, `{"on":true,"duration_ms":ms}` or `{"on":false}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FocusRequest {
    /// Focus mode on, or off (which releases what was held as a digest).
    pub on: bool,
    /// With `on`: when focus ends, ms since the epoch, at most 7 days ahead.
    #[serde(default)]
    pub until: Option<u64>,
    /// With `on`, instead of `until`: how long focus lasts from now.
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// WebSocket close codes Herald uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum CloseCode {
    /// The client closed, or the server is done with the socket.
    Normal = 1000,
    /// The socket was silent past the idle timeout; reconnect when ready.
    GoingAway = 1001,
    /// A frame larger than `MAX_FRAME_BYTES`.
    TooBig = 1009,
    /// Something broke on the server; reconnecting may help.
    Internal = 1011,
    /// The token's `exp` passed; reconnect with a fresh token.
    TokenExpired = 4001,
    /// The client sends frames faster than allowed.
    RateLimited = 4008,
    /// The user already has `MAX_DEVICES` sockets open.
    TooManyDevices = 4009,
}

impl CloseCode {
    /// The number sent in the close frame.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The code to finish a closing handshake the peer started with `code`: its own, but
    /// 1005/1006 describe a missing close frame and may not be sent back (nor may other
    /// reserved codes), so those get a plain 1000.
    pub fn reply_to(code: usize) -> u16 {
        match code {
            1000..=1003 | 1007..=1014 | 3000..=4999 => code as u16,
            _ => Self::Normal.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_is_echoed_unless_its_code_may_not_be_sent() {
        assert_eq!(CloseCode::reply_to(1000), 1000);
        assert_eq!(CloseCode::reply_to(4001), 4001);
        // "No status" and "abnormal closure" only describe a close; they are never sent.
        assert_eq!(CloseCode::reply_to(1005), 1000);
        assert_eq!(CloseCode::reply_to(1006), 1000);
        assert_eq!(CloseCode::reply_to(1015), 1000);
        assert_eq!(CloseCode::reply_to(5000), 1000);
    }
}
