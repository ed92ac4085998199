//! The sans-IO core of a `UserHub`: everything one user's Durable Object decides.
//!
//! Events come in (a device connects, a producer publishes, a client sends a frame) with
//! the time as an argument; the hub updates the [`Inbox`] and per-socket [`Session`] state
//! and returns [`Effect`]s for the glue to carry out on real sockets. It never sees a
//! socket, a clock or the runtime, so every rule here is tested natively.

use serde::{Deserialize, Serialize};

use crate::config::Limits;
use crate::frame::{ClientFrame, CloseCode, ServerFrame};
use crate::inbox::{Inbox, InboxError, Notification, Seq};
use crate::publish::Draft;

/// Per-socket state. It lives in the socket's attachment so that it survives hibernation;
/// keep it small (the runtime caps attachments at 16 KiB).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The user this socket belongs to (from the verified token).
    pub user: String,
    /// Connection id, unique per socket.
    pub id: String,
    /// The client's own name for the device (`?device=`), if it gave one.
    pub device: Option<String>,
    /// Milliseconds since the epoch.
    pub connected_at: u64,
    /// Rate limit state for client frames.
    pub budget: FrameBudget,
}

/// A token bucket for client frames: refills at `rate` per second up to `burst`.
/// Tokens are counted in thousandths so that refills between close frames are not lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameBudget {
    milli_tokens: u64,
    refilled_at: u64,
}

impl FrameBudget {
    pub fn full(limits: &Limits, now_ms: u64) -> Self {
        Self {
            milli_tokens: limits.frame_burst * 1000,
            refilled_at: now_ms,
        }
    }

    /// Spends one token; false when the client is over its rate.
    pub fn take(&mut self, limits: &Limits, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.refilled_at);
        // rate tokens per 1000 ms = rate milli-tokens per ms.
        self.milli_tokens =
            (self.milli_tokens + elapsed * limits.frame_rate_per_s).min(limits.frame_burst * 1000);
        // A clock that steps back must not let the same interval be credited twice.
        self.refilled_at = self.refilled_at.max(now_ms);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// What the glue must do after an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send to every open socket of the user.
    Broadcast(ServerFrame),
    /// Send to the socket the event came from.
    Reply(ServerFrame),
    /// Close the socket the event came from.
    Close { code: CloseCode, reason: String },
}

/// What a publish stored for this user: the publish-wide id and the seq it got here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub id: String,
    pub seq: Seq,
}

/// The hub's answer to a device connecting.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Attach `session` to the socket and send `welcome`.
    Welcome {
        session: Session,
        welcome: ServerFrame,
    },
    /// Send `frame`, then close with `code`.
    Refused { code: CloseCode, frame: ServerFrame },
}

/// One user's hub, borrowed over its storage for the length of one event.
pub struct Hub<'a, I: Inbox> {
    pub inbox: &'a mut I,
    pub limits: &'a Limits,
}

impl<I: Inbox> Hub<'_, I> {
    /// A device connects while `open_sockets` of the user's sockets are already open.
    pub fn connect(
        &self,
        user: &str,
        open_sockets: usize,
        session_id: String,
        device: Option<String>,
        now_ms: u64,
    ) -> Result<Admission, InboxError> {
        if open_sockets >= self.limits.max_devices {
            return Ok(Admission::Refused {
                code: CloseCode::TooManyDevices,
                frame: ServerFrame::error(
                    "too_many_devices",
                    format!(
                        "at most {} devices may be connected at once",
                        self.limits.max_devices
                    ),
                ),
            });
        }
        let welcome = ServerFrame::Welcome {
            user: user.to_owned(),
            session: session_id.clone(),
            device: device.clone(),
            seq: self.inbox.latest_seq()?,
            unread_count: self.inbox.unread_count()?,
            heartbeat_ms: self.limits.heartbeat_ms,
        };
        let session = Session {
            user: user.to_owned(),
            id: session_id,
            device,
            connected_at: now_ms,
            budget: FrameBudget::full(self.limits, now_ms),
        };
        Ok(Admission::Welcome { session, welcome })
    }

    /// Stores `drafts` in order, each with the next seq, and pushes each to every socket.
    /// The receipts are only returned once every append has returned, i.e. is durable.
    pub fn publish(
        &mut self,
        drafts: Vec<Draft>,
        now_ms: u64,
    ) -> Result<(Vec<Receipt>, Vec<Effect>), InboxError> {
        let first = self.inbox.latest_seq()? + 1;
        let mut receipts = Vec::with_capacity(drafts.len());
        let mut effects = Vec::with_capacity(drafts.len());
        for (seq, draft) in (first..).zip(drafts) {
            let notification = Notification {
                id: draft.id,
                seq,
                event: draft.event,
                title: draft.title,
                body: draft.body,
                data: draft.data,
                priority: draft.priority,
                actor: draft.actor,
                created_at: now_ms,
            };
            self.inbox.append(&notification)?;
            receipts.push(Receipt {
                id: notification.id.clone(),
                seq,
            });
            effects.push(Effect::Broadcast(ServerFrame::Notification(notification)));
        }
        Ok((receipts, effects))
    }

    /// A text frame arrived on `session`'s socket.
    pub fn client_text(&mut self, session: &mut Session, text: &str, now_ms: u64) -> Vec<Effect> {
        if let Some(close) = self.admit(session, text.len(), now_ms) {
            return vec![close];
        }
        match serde_json::from_str::<ClientFrame>(text) {
            Ok(ClientFrame::Ping) => vec![Effect::Reply(ServerFrame::Pong)],
            Err(e) => vec![Effect::Reply(ServerFrame::error(
                "bad_frame",
                format!("not a frame this server understands: {e}"),
            ))],
        }
    }

    /// A binary frame arrived; Herald speaks JSON text only.
    pub fn client_binary(&mut self, session: &mut Session, len: usize, now_ms: u64) -> Vec<Effect> {
        if let Some(close) = self.admit(session, len, now_ms) {
            return vec![close];
        }
        vec![Effect::Reply(ServerFrame::error(
            "bad_frame",
            "binary frames are not supported; send JSON text",
        ))]
    }

    /// Size and rate checks every client frame passes before it is looked at.
    fn admit(&self, session: &mut Session, len: usize, now_ms: u64) -> Option<Effect> {
        if len > self.limits.max_frame_bytes {
            return Some(Effect::Close {
                code: CloseCode::TooBig,
                reason: format!(
                    "frames are limited to {} bytes",
                    self.limits.max_frame_bytes
                ),
            });
        }
        if !session.budget.take(self.limits, now_ms) {
            return Some(Effect::Close {
                code: CloseCode::RateLimited,
                reason: format!(
                    "more than {} frames per second",
                    self.limits.frame_rate_per_s
                ),
            });
        }
        None
    }
}
