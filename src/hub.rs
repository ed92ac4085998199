//! The sans-IO core of a `UserHub`: everything one user's Durable Object decides.
//!
//! Events come in (a device connects, a producer publishes, a client sends a frame, the
//! alarm fires) with the time as an argument; the hub updates the [`Inbox`] and per-socket
//! [`Session`] state and returns [`Effect`]s for the glue to carry out on real sockets.
//! It never sees a socket, a clock or the runtime, so every rule here is tested natively.
//!
//! The rules of the delivery promise live here: seqs are assigned in order and never
//! reused; a resume replays everything after the cursor or says `reset`, never a silent
//! gap; unread counts are computed from the stored log, in the same object that stores
//! and fans out, so devices cannot disagree; retention keeps the log bounded.
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::attention::{Delivery, Preferences, MAX_FOCUS_MS};
use crate::config::Limits;
use crate::frame::{
    BatchReason, ClientFrame, CloseCode, FocusRequest, Page, PageRequest, ReadRequest, ServerFrame,
};
use crate::history::{self, Replay, Stored};
use crate::inbox::{Hold, Inbox, InboxError, Range, ReadTarget};
use crate::model::{Draft, Notification, Receipt, Seq};
use crate::socket::{self, FrameBudget, SocketView};
use crate::timer::{Timer, Timers};
/// Largest inbox page.
pub const MAX_PAGE: u64 = 100;
/// Inbox page size when the client names none.
pub const DEFAULT_PAGE: u64 = 50;
/// Most ids one `read` may name.
pub const MAX_READ_IDS: usize = 100;

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
    /// The highest seq this socket has acknowledged.
    #[serde(default)]
    pub acked: Seq,
    /// When the last client frame arrived (pings answered by the runtime are not seen
    /// here; the glue reads their time from the runtime).
    #[serde(default)]
    pub last_frame_at: u64,
    /// When the token runs out, leeway included (ms); the socket is closed with 4001 then.
    #[serde(default)]
    pub token_expires_at: Option<u64>,
    /// The highest seq a replay has sent this socket. A replay sends every stored item,
    /// held ones too, so a later release of held items leaves these out for this socket.
    #[serde(default)]
    pub replayed: Seq,
}

impl Session {
    /// Of held `items` being released, those this socket has not had in a replay.
    pub fn unseen(&self, items: &[Notification]) -> Vec<Notification> {
        items
            .iter()
            .filter(|n| n.seq > self.replayed)
            .cloned()
            .collect()
    }

    /// Notes what `replay` sends this socket.
    fn note_replay(&mut self, replay: &Replay) {
        self.replayed = self.replayed.max(replay.through().unwrap_or(0));
    }

    /// What the liveness sweep knows of this socket, given when the runtime last answered
    /// its `ping` (which it does without waking the object).
    pub fn view(&self, last_ping: Option<u64>) -> SocketView {
        SocketView::new(
            self.connected_at,
            self.last_frame_at,
            last_ping,
            self.token_expires_at,
        )
    }

    /// The name acks are recorded under: the device if it has one, else the connection.
    pub fn ack_key(&self) -> &str {
        self.device.as_deref().unwrap_or(&self.id)
    }
}

/// A device arriving: who it is and what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    /// The user from the verified token.
    pub user: String,
    /// Connection id, unique per socket.
    pub session_id: String,
    /// The client's own name for the device (`?device=`), if it gave one; acks are kept
    /// under it so that they outlive the connection.
    pub device: Option<String>,
    /// Resume after this seq.
    pub since: Option<Seq>,
    /// The token's `exp` (seconds since the epoch), if it has one.
    pub token_exp: Option<u64>,
}

/// What the glue must do after an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send to every open socket of the user.
    Broadcast(ServerFrame),
    /// Send the frames of `replay` to the socket the event came from, pulling them one
    /// slice at a time ([`Replay::next`]).
    Replay(Replay),
    /// Send the held items of `release` to every open socket in `batch` frames, less those
    /// each socket already had in a replay ([`Session::unseen`]), pulling them one slice
    /// at a time ([`Hub::release_next`]).
    Release(Release),
    /// Retention removed this many unread items before any device read them: count them
    /// as `dropped` for `GET /v1/stats`.
    Dropped(u64),
    /// Send to the socket the event came from.
    Reply(ServerFrame),
    /// Close the socket the event came from.
    Close {
        /// Tells the client whether and how to reconnect.
        code: CloseCode,
        /// Close reason text, for a developer reading it.
        reason: String,
    },
}

/// Held items being released, pulled one slice at a time so that a digest holds one
/// slice of the inbox in memory however much focus mode held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// Why they were held: the batch window closed, or focus or quiet hours ended.
    pub reason: BatchReason,
    /// Items up to this seq were held when the release was decided; later ones belong to
    /// the next window.
    through: Seq,
    /// Items up to this seq are out.
    after: Seq,
}

/// The hub's answer to a device connecting.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Attach `session` to the socket, send `welcome`, then the frames of `replay`.
    Welcome {
        /// The new socket's state, for its attachment.
        session: Session,
        /// What the socket gets first.
        welcome: ServerFrame,
        /// The resume after the socket's cursor, if it asked for one.
        replay: Option<Replay>,
    },
    /// Send `frame`, then close with `code`.
    Refused {
        /// Why the socket is closed, for the client's reconnect logic.
        code: CloseCode,
        /// The error frame that says why, in words.
        frame: ServerFrame,
    },
}

/// Why a request to the hub failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HubError {
    /// The client asked for something invalid; nothing changed. `code` is stable.
    #[error("{message}")]
    Invalid {
        /// Stable code clients can branch on.
        code: &'static str,
        /// What was wrong, for a developer reading it.
        message: String,
    },
    /// No such notification for this user.
    #[error("no such notification")]
    NotFound,
    /// The inbox could not be read or written; the client may retry.
    #[error(transparent)]
    Storage(#[from] InboxError),
}

fn invalid(code: &'static str, message: impl Into<String>) -> HubError {
    HubError::Invalid {
        code,
        message: message.into(),
    }
}

impl HubError {
    /// The error frame a socket gets for this failure.
    pub fn frame(&self) -> ServerFrame {
        match self {
            HubError::Invalid { code, message } => ServerFrame::error(code, message.as_str()),
            HubError::NotFound => ServerFrame::error("not_found", self.to_string()),
            HubError::Storage(_) => ServerFrame::error("unavailable", "storage failed; retry"),
        }
    }
}

/// The outcome of a `read`, for the REST answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadOutcome {
    /// Ids newly marked read, in seq order.
    pub read: Vec<String>,
    /// Unread items left after the read, the count every device is now told.
    pub unread_count: u64,
}

/// One user's hub, borrowed over its storage for the length of one event.
pub struct Hub<'a, I: Inbox> {
    /// The user's stored log, the only state the hub keeps beyond the sessions.
    pub inbox: &'a mut I,
    /// The bounds the hub enforces (devices, page sizes, retention).
    pub limits: &'a Limits,
}

impl<I: Inbox> Hub<'_, I> {
    /// A device connects while `open_sockets` of the user's sockets are already open,
    /// resuming after `arrival.since` if it asks to.
    pub fn connect(
        &self,
        arrival: Arrival,
        open_sockets: usize,
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
            user: arrival.user.clone(),
            room: None,
            session: arrival.session_id.clone(),
            device: arrival.device.clone(),
            seq: self.inbox.latest_seq()?,
            unread_count: self.inbox.unread_count(now_ms)?,
            heartbeat_ms: self.limits.heartbeat_ms,
        };
        let replay = arrival.since.map(|since| self.replay(since)).transpose()?;
        let mut session = Session {
            user: arrival.user,
            id: arrival.session_id,
            device: arrival.device,
            connected_at: now_ms,
            budget: FrameBudget::full(self.limits, now_ms),
            acked: 0,
            last_frame_at: now_ms,
            token_expires_at: socket::token_deadline(arrival.token_exp),
            replayed: 0,
        };
        if let Some(replay) = &replay {
            session.note_replay(replay);
        }
        Ok(Admission::Welcome {
            session,
            welcome,
            replay,
        })
    }

    /// Everything stored after `since`, oldest first, in `batch` frames, then `synced`
    /// (see [`history::replay`]).
    pub fn replay(&self, since: Seq) -> Result<Replay, InboxError> {
        history::replay(self.inbox, since)
    }

    /// Stores `drafts` in order, each with the next seq, and pushes, holds or only keeps
    /// each as the user's preferences say. A draft whose idempotency key was seen within
    /// the window gets the original receipt and is neither stored nor sent again.
    pub fn publish(
        &mut self,
        drafts: Vec<Draft>,
        now_ms: u64,
    ) -> Result<(Vec<Receipt>, Vec<Effect>), InboxError> {
        let preferences = self.inbox.preferences()?;
        let mut seq = self.inbox.latest_seq()?;
        let mut receipts = Vec::with_capacity(drafts.len());
        // Whatever is already due goes out first, so that a late alarm cannot let new
        // items overtake an older digest.
        let mut effects = self.flush(now_ms)?;
        let released = effects.len();
        let mut stored = false;
        for draft in drafts {
            let notification =
                match history::store(self.inbox, draft, None, seq, self.limits, now_ms)? {
                    Stored::New(notification) => notification,
                    duplicate @ Stored::Duplicate(_) => {
                        receipts.push(duplicate.receipt());
                        continue;
                    }
                };
            seq = notification.seq;
            receipts.push(Stored::New(notification.clone()).receipt());
            stored = true;
            match preferences.deliver(&notification, now_ms) {
                Delivery::Push => {
                    effects.push(Effect::Broadcast(ServerFrame::Notification(notification)))
                }
                Delivery::Window => {
                    self.inbox.set_hold(&[seq], Some(Hold::Window))?;
                    if self.inbox.window_closes_at()?.is_none() {
                        let closes = now_ms + preferences.batch_window_ms;
                        self.inbox.set_window_closes_at(Some(closes))?;
                    }
                }
                Delivery::Attention => self.inbox.set_hold(&[seq], Some(Hold::Attention))?,
                Delivery::StoreOnly => {}
            }
        }
        // The count bound is kept on every write, so storage never holds more; the other
        // bounds wait for the alarm.
        let dropped = match stored && self.inbox.item_count()? > self.limits.inbox_max_items {
            true => self.retain(now_ms)?,
            false => None,
        };
        // Held and muted items are counted but do not announce themselves: the count
        // travels with what is pushed.
        if effects.len() > released {
            effects.push(self.unread_frame(now_ms)?);
        }
        effects.extend(dropped);
        Ok((receipts, effects))
    }

    /// Marks items read and tells every device. All-or-nothing: if any named id is not
    /// one of this user's live items, nothing changes.
    pub fn read(
        &mut self,
        request: &ReadRequest,
        now_ms: u64,
    ) -> Result<(ReadOutcome, Vec<Effect>), HubError> {
        let ids_seqs;
        let target = match (&request.ids, request.up_to_seq, request.all) {
            (Some(ids), None, None | Some(false)) => {
                if ids.is_empty() || ids.len() > MAX_READ_IDS {
                    return Err(invalid(
                        "bad_request",
                        format!("ids: name 1 to {MAX_READ_IDS} notifications"),
                    ));
                }
                let found = self.inbox.items_by_id(ids, now_ms)?;
                if let Some(missing) = ids.iter().find(|id| !found.iter().any(|n| &n.id == *id)) {
                    return Err(invalid(
                        "unknown_id",
                        format!("ids: {missing:?} is not in this inbox; nothing was marked"),
                    ));
                }
                ids_seqs = found.iter().map(|n| n.seq).collect::<Vec<_>>();
                ReadTarget::Seqs(&ids_seqs)
            }
            (None, Some(up_to), None | Some(false)) => ReadTarget::Through(up_to),
            (None, None, Some(true)) => ReadTarget::Through(self.inbox.latest_seq()?),
            _ => {
                return Err(invalid(
                    "bad_request",
                    "read: give exactly one of ids, up_to_seq or all:true",
                ))
            }
        };
        let read = self.inbox.mark_read(target, now_ms)?;
        let unread_count = self.inbox.unread_count(now_ms)?;
        let effects = if read.is_empty() {
            Vec::new()
        } else {
            vec![Effect::Broadcast(ServerFrame::Read {
                ids: read.clone(),
                unread_count,
            })]
        };
        Ok((ReadOutcome { read, unread_count }, effects))
    }

    /// Deletes one of the user's notifications and tells every device.
    pub fn delete(&mut self, id: &str, now_ms: u64) -> Result<(Seq, Vec<Effect>), HubError> {
        let found = self.inbox.items_by_id(&[id.to_owned()], now_ms)?;
        let seq = found.first().ok_or(HubError::NotFound)?.seq;
        self.inbox.remove(seq)?;
        let unread_count = self.inbox.unread_count(now_ms)?;
        let frame = ServerFrame::Deleted {
            id: id.to_owned(),
            seq,
            unread_count,
        };
        Ok((seq, vec![Effect::Broadcast(frame)]))
    }

    /// One inbox page. Without `after`, newest first (optionally `before` a seq); with
    /// `after`, oldest first from there, for catching up page by page.
    pub fn page(&self, request: &PageRequest, now_ms: u64) -> Result<Page, HubError> {
        let limit = request.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(invalid(
                "bad_request",
                format!("limit: must be 1 to {MAX_PAGE}"),
            ));
        }
        let newest_first = request.after.is_none();
        // One more than asked tells whether another page follows.
        let mut items = self.inbox.items(&Range {
            after: request.after,
            before: request.before,
            newest_first,
            limit: limit as usize + 1,
            unread_only: request.unread,
            now_ms,
        })?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let edge = items.last().map(|n| n.seq);
        Ok(Page {
            reference: request.reference.clone(),
            unread_count: self.inbox.unread_count(now_ms)?,
            latest_seq: self.inbox.latest_seq()?,
            next_before: edge.filter(|_| more && newest_first),
            next_after: edge.filter(|_| more && !newest_first),
            items,
        })
    }

    /// This device has everything up to `seq`. Acks only move forward.
    pub fn ack(&mut self, session: &mut Session, seq: Seq, now_ms: u64) -> Result<(), HubError> {
        if seq > self.inbox.latest_seq()? {
            return Err(invalid(
                "bad_request",
                "ack: seq is beyond the latest notification",
            ));
        }
        if seq > session.acked {
            session.acked = seq;
            self.inbox.record_ack(session.ack_key(), seq, now_ms)?;
        }
        Ok(())
    }

    /// `session`'s socket closed. The ack of a session without a device name is kept
    /// under the connection's id, which no later socket can have, so it goes with it.
    pub fn close(&mut self, session: &Session) -> Result<(), InboxError> {
        if session.device.is_none() && session.acked > 0 {
            self.inbox.forget_ack(&session.id)?;
        }
        Ok(())
    }

    /// The alarm fired: prune what retention says and release what is due. Running it
    /// twice in a row does nothing the first run did not. (Closing silent or expired
    /// sockets is [`Hub::liveness`], which the glue asks per socket.)
    pub fn alarm(&mut self, now_ms: u64) -> Result<Vec<Effect>, InboxError> {
        let dropped = self.retain(now_ms)?;
        let mut effects = self.flush(now_ms)?;
        effects.extend(dropped);
        Ok(effects)
    }

    /// Whether a socket must be closed at `now_ms`, and with which code (the rule every
    /// socket is held to, [`SocketView::liveness`]).
    pub fn liveness(&self, socket: &SocketView, now_ms: u64) -> Option<(CloseCode, &'static str)> {
        socket.liveness(self.limits, now_ms)
    }

    /// The earliest moment anything is due (see [`Hub::timers`]). `None` when nothing
    /// ever will be, so that no alarm is kept for an idle user.
    pub fn next_deadline(
        &self,
        sockets: &[SocketView],
        now_ms: u64,
    ) -> Result<Option<u64>, InboxError> {
        Ok(self.timers(sockets, now_ms)?.next())
    }

    /// The user hub's timer table: retention, the batch window, the end of focus or quiet
    /// hours (while something is held for it), a socket going silent or its token
    /// expiring. The runner adds the stats report.
    pub fn timers(&self, sockets: &[SocketView], now_ms: u64) -> Result<Timers, InboxError> {
        let mut timers = Timers::default();
        timers.set(
            Timer::Retention,
            history::retention_due(self.inbox, self.limits)?,
        );
        timers.set(Timer::Window, self.inbox.window_closes_at()?);
        if self.inbox.holds(Hold::Attention)? {
            // Items still held after focus ended (the alarm has not run yet) are due now.
            let ends = self.inbox.preferences()?.attention_ends(now_ms);
            timers.set(Timer::FocusEnd, Some(ends.unwrap_or(now_ms)));
        }
        for socket in sockets {
            timers.set(Timer::IdleSweep, Some(socket.idle_at(self.limits)));
            timers.set(Timer::TokenExpiry, socket.token_expires_at);
        }
        Ok(timers)
    }

    /// Sends what is held once nothing holds it any more: everything held as one digest
    /// when focus or quiet hours are over, or the batch window's items when it closes.
    /// While focus or quiet hours last, a closing window's items join the digest instead.
    fn flush(&mut self, now_ms: u64) -> Result<Vec<Effect>, InboxError> {
        let window_due = self
            .inbox
            .window_closes_at()?
            .is_some_and(|at| at <= now_ms);
        let attention = self.inbox.preferences()?.attention_ends(now_ms).is_some();
        if attention {
            if window_due {
                self.inbox.move_holds(Hold::Window, Hold::Attention)?;
                self.inbox.set_window_closes_at(None)?;
            }
            return Ok(Vec::new());
        }
        let focus_ended = self.inbox.holds(Hold::Attention)?;
        if !focus_ended && !window_due {
            return Ok(Vec::new());
        }
        self.inbox.set_window_closes_at(None)?;
        let reason = if focus_ended {
            BatchReason::FocusEnd
        } else {
            BatchReason::Window
        };
        Ok(vec![
            Effect::Release(Release {
                reason,
                through: self.inbox.latest_seq()?,
                after: 0,
            }),
            self.unread_frame(now_ms)?,
        ])
    }

    /// The next slice of `release`'s items, oldest first, now no longer held; `None` once
    /// all are out. Expired items are let go without being sent.
    pub fn release_next(
        &mut self,
        release: &mut Release,
        now_ms: u64,
    ) -> Result<Option<Vec<Notification>>, InboxError> {
        loop {
            let held = self
                .inbox
                .held(release.after, release.through, history::REPLAY_BATCH)?;
            let Some(last) = held.last() else {
                return Ok(None);
            };
            release.after = last.seq;
            let seqs: Vec<Seq> = held.iter().map(|n| n.seq).collect();
            self.inbox.set_hold(&seqs, None)?;
            let live: Vec<Notification> = held.into_iter().filter(|n| n.live_at(now_ms)).collect();
            if !live.is_empty() {
                return Ok(Some(live));
            }
        }
    }

    /// The user's preferences, as `GET /v1/preferences` shows them.
    pub fn preferences(&self) -> Result<Preferences, InboxError> {
        self.inbox.preferences()
    }

    /// Stores new preferences, tells every device, and sends whatever they release.
    pub fn set_preferences(
        &mut self,
        preferences: Preferences,
        now_ms: u64,
    ) -> Result<Vec<Effect>, InboxError> {
        self.inbox.set_preferences(&preferences)?;
        let mut effects = vec![Effect::Broadcast(ServerFrame::Preferences(preferences))];
        effects.extend(self.flush(now_ms)?);
        Ok(effects)
    }

    /// A `focus` frame: on until a time (or for a duration), or off.
    pub fn focus(&mut self, request: &FocusRequest, now_ms: u64) -> Result<Vec<Effect>, HubError> {
        let until = match (request.on, request.until, request.duration_ms) {
            (false, None, None) => None,
            (true, Some(until), None) => Some(until),
            (true, None, Some(duration)) => Some(now_ms.saturating_add(duration)),
            _ => {
                return Err(invalid(
                    "bad_request",
                    "focus: {\"on\":true,\"until\":ms}, {\"on\":true,\"duration_ms\":ms} or {\"on\":false}",
                ))
            }
        };
        if until.is_some_and(|u| u <= now_ms || u > now_ms + MAX_FOCUS_MS) {
            return Err(invalid(
                "bad_request",
                "focus: must end in the future and within 7 days",
            ));
        }
        let mut preferences = self.inbox.preferences()?;
        preferences.focus_until = until;
        Ok(self.set_preferences(preferences, now_ms)?)
    }

    fn unread_frame(&self, now_ms: u64) -> Result<Effect, InboxError> {
        Ok(Effect::Broadcast(ServerFrame::UnreadCount {
            unread_count: self.inbox.unread_count(now_ms)?,
        }))
    }

    /// Applies every retention rule at `now_ms` ([`history::retain`]) and answers the
    /// unread items it removed, if any.
    fn retain(&mut self, now_ms: u64) -> Result<Option<Effect>, InboxError> {
        let dropped = history::retain(self.inbox, self.limits, now_ms)?;
        Ok((dropped > 0).then_some(Effect::Dropped(dropped)))
    }

    /// A text frame arrived on `session`'s socket.
    pub fn client_text(&mut self, session: &mut Session, text: &str, now_ms: u64) -> Vec<Effect> {
        if let Some(close) = self.admit(session, text.len(), now_ms) {
            return vec![close];
        }
        let frame = match crate::frame::parse::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(refusal) => return vec![Effect::Reply(*refusal)],
        };
        let outcome = match frame {
            ClientFrame::Ping => Ok(vec![Effect::Reply(ServerFrame::Pong)]),
            ClientFrame::Ack { seq } => self.ack(session, seq, now_ms).map(|()| Vec::new()),
            ClientFrame::Read(request) => self.read(&request, now_ms).map(|(_, effects)| effects),
            ClientFrame::Fetch(request) => self
                .page(&request, now_ms)
                .map(|page| vec![Effect::Reply(ServerFrame::Page(page))]),
            ClientFrame::Resume { since } => self
                .replay(since)
                .map(|replay| {
                    session.note_replay(&replay);
                    vec![Effect::Replay(replay)]
                })
                .map_err(HubError::from),
            ClientFrame::Focus(request) => self.focus(&request, now_ms),
        };
        outcome.unwrap_or_else(|e| vec![Effect::Reply(e.frame())])
    }

    /// A binary frame arrived; Herald speaks JSON text only.
    pub fn client_binary(&mut self, session: &mut Session, len: usize, now_ms: u64) -> Vec<Effect> {
        if let Some(close) = self.admit(session, len, now_ms) {
            return vec![close];
        }
        vec![Effect::Reply(ServerFrame::binary_refused())]
    }

    /// Size and rate checks every client frame passes before it is looked at.
    fn admit(&self, session: &mut Session, len: usize, now_ms: u64) -> Option<Effect> {
        session.last_frame_at = session.last_frame_at.max(now_ms);
        admit(&mut session.budget, self.limits, len, now_ms)
    }
}

/// Size and rate checks for one client frame ([`socket::admit`]), as the effect a hub
/// carries out: a close when the frame is too big or the socket over its rate.
pub fn admit(budget: &mut FrameBudget, limits: &Limits, len: usize, now_ms: u64) -> Option<Effect> {
    socket::admit(budget, limits, len, now_ms).map(|c| Effect::Close {
        code: c.code,
        reason: c.reason,
    })
}

/// Reads a `GET /v1/notifications` query (`after`, `before`, `limit`, `unread`) into a
/// page request, naming the parameter that is wrong.
pub fn page_query<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<PageRequest, HubError> {
    let mut request = PageRequest::default();
    for (name, value) in pairs {
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| invalid("bad_request", format!("{name}: must be a whole number")))
        };
        match name {
            "after" => request.after = Some(number()?),
            "before" => request.before = Some(number()?),
            "limit" => request.limit = Some(number()?),
            "unread" => {
                request.unread = match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(invalid("bad_request", "unread: must be true or false")),
                }
            }
            _ => return Err(invalid("bad_request", format!("{name}: unknown parameter"))),
        }
    }
    Ok(request)
}
