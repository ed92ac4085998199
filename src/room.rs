//! The sans-IO core of a `RoomHub`: everything a project room decides.
//!
//! A room is a root object (history, member list, presence, the shard table) and, once
//! it outgrows `ROOM_SHARD_SIZE` sockets, shard objects that hold sockets only. [`Room`]
//! is the root's state machine, with the same contract as the user hub: events in with
//! `now`, [`Effect`]s out, deadlines from a typed timer table. A shard runs [`sweep`] and
//! [`shard_timers`] on its own sockets and forwards everything else to the root.
//!
//! The history is a log with the user inbox's promise ([`crate::history`]); what is
//! particular to rooms is here: grants, admission (`MAX_DEVICES` per user), placement on
//! shards that are retired when they empty, presence with a grace period and a lease on
//! what shards report, the typing throttle, and who may publish. It never sees a socket,
//! a clock or the runtime.
#![warn(missing_docs)]

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::Limits;
use crate::fanout::Outgoing;
use crate::frame::{CloseCode, PresenceAction, ServerFrame};
use crate::history::{self, Stored};
use crate::inbox::{Inbox, InboxError};
use crate::model::{
    valid_event, valid_user_id, Draft, InputError, Receipt, Seq, Source, BROADCAST_ROOM,
    MAX_BODY_LEN, MAX_TITLE_LEN,
};
use crate::room_store::{RemoteSocket, RoomStore, RoomStoreError};
use crate::socket::{self, Closing, FrameBudget, SocketView};
use crate::timer::{Timer, Timers};

/// What a room object is for, from the name it is addressed by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    /// A project room: presence, and the client events its tokens allow.
    #[default]
    Project,
    /// The broadcast room ([`BROADCAST_ROOM`]): every valid token listens, nobody sends,
    /// and nobody is shown who else listens (a system-wide member list would leak every
    /// user, and cost O(listeners) per join).
    Broadcast,
}

impl Kind {
    /// The kind of the object named `object`: a root is named by its room, a shard
    /// `<room>#<n>` ([`shard_object`]).
    pub fn of_object(object: &str) -> Self {
        let room = object.split_once('#').map_or(object, |(room, _)| room);
        match room == BROADCAST_ROOM {
            true => Kind::Broadcast,
            false => Kind::Project,
        }
    }

    /// Whether members are told who else is here.
    fn shows_presence(self) -> bool {
        self == Kind::Project
    }
}

/// The name of shard `n` of `room`: `#` is outside the room-name charset, so it never
/// names a room of its own.
pub fn shard_object(room: &str, n: u64) -> String {
    format!("{room}#{n}")
}

/// Most members a room's list may hold. Filing a room message in every member's inbox
/// costs one subrequest per member from one Worker request, which the platform bounds.
pub const MAX_MEMBERS: usize = 1_000;

/// Scope a token needs to send `publish` frames into a room.
pub const WRITE_SCOPE: &str = "rooms:write";

/// A `PUT /v1/rooms/{room}/members` body: `{"members":["alice", …]}`, deduplicated.
pub fn parse_members(body: &[u8]) -> Result<Vec<String>, InputError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        members: Vec<String>,
    }
    let body: Body = serde_json::from_slice(body).map_err(|e| InputError::Json(e.to_string()))?;
    if body.members.len() > MAX_MEMBERS {
        return Err(field("members", "at most 1,000 members"));
    }
    let mut seen = std::collections::HashSet::new();
    let mut members = Vec::with_capacity(body.members.len());
    for (i, member) in body.members.into_iter().enumerate() {
        if !valid_user_id(&member) {
            return Err(field(&format!("members[{i}]"), "must be a user id"));
        }
        if seen.insert(member.clone()) {
            members.push(member);
        }
    }
    Ok(members)
}

/// Per-socket state of a room member, kept in the socket's attachment (on the root or on
/// the shard holding the socket) so that it survives hibernation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Whose socket it is (from the verified token).
    pub user: String,
    /// Connection id.
    pub id: String,
    /// The room's name.
    pub room: String,
    /// The token carries `rooms:write`: `publish` frames are allowed.
    pub can_write: bool,
    /// When the socket opened (ms).
    pub connected_at: u64,
    /// Rate limit state for client frames.
    pub budget: FrameBudget,
    /// The shard object holding the socket; `None` on the room's root object.
    #[serde(default)]
    pub shard: Option<u64>,
    /// When the last client frame arrived (ms).
    #[serde(default)]
    pub last_frame_at: u64,
    /// When the token runs out, leeway included (ms); the socket is closed with 4001 then.
    #[serde(default)]
    pub token_expires_at: Option<u64>,
}

impl Member {
    /// Size and rate checks for a frame of `len` bytes on this socket, which also counts
    /// as a sign of life.
    pub fn admit(&mut self, limits: &Limits, len: usize, now_ms: u64) -> Option<Closing> {
        self.last_frame_at = self.last_frame_at.max(now_ms);
        socket::admit(&mut self.budget, limits, len, now_ms)
    }

    /// What the liveness sweep knows of this socket.
    pub fn view(&self, last_ping: Option<u64>) -> SocketView {
        SocketView::new(
            self.connected_at,
            self.last_frame_at,
            last_ping,
            self.token_expires_at,
        )
    }
}

/// What a member may send besides the literal `ping`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RoomFrame {
    /// A JSON ping; answered with `pong`.
    Ping,
    /// A client event (chat message, reaction, edit, delete), stored in history and
    /// relayed as `message`.
    Publish {
        /// The event name, e.g. `chat.message`.
        event: String,
        #[serde(default)]
        /// Short headline.
        title: Option<String>,
        #[serde(default)]
        /// The text.
        body: Option<String>,
        #[serde(default)]
        /// Arbitrary JSON.
        data: Option<serde_json::Value>,
    },
    /// Relayed to the room at once, never stored.
    Typing,
    /// Replay history after `since`.
    Resume {
        /// The last seq the client has.
        since: Seq,
    },
}

fn field(name: &str, message: &str) -> InputError {
    InputError::Field {
        field: name.to_owned(),
        message: message.to_owned(),
    }
}

impl RoomFrame {
    /// The history entry a `publish` frame becomes, with the sender as `actor`.
    pub fn draft(
        member: &Member,
        id: String,
        event: String,
        title: Option<String>,
        body: Option<String>,
        data: Option<serde_json::Value>,
    ) -> Result<Draft, InputError> {
        if !valid_event(&event) {
            return Err(field("event", "must be an event name such as chat.message"));
        }
        if title
            .as_ref()
            .is_some_and(|t| t.chars().count() > MAX_TITLE_LEN)
        {
            return Err(field("title", "too long"));
        }
        if body
            .as_ref()
            .is_some_and(|b| b.chars().count() > MAX_BODY_LEN)
        {
            return Err(field("body", "too long"));
        }
        Ok(Draft {
            id,
            event,
            title,
            body,
            data,
            priority: Default::default(),
            actor: Some(member.user.clone()),
            room: Some(member.room.clone()),
            idempotency_key: None,
            ttl_s: None,
        })
    }
}

/// Presence with a grace period: a user whose last socket closes is announced as `left`
/// only if they have not come back within `grace_ms`, so a quick reconnect does not flap.
pub mod presence {
    /// A socket of `user` joined. Announce `joined` unless the user was already present:
    /// another socket open, or a departure still within its grace period.
    pub fn announce_join(already_online: bool, leaving: bool) -> bool {
        !already_online && !leaving
    }

    /// A socket of `user` closed: when to announce `left`, if the user has no other socket.
    pub fn leave_deadline(still_online: bool, now_ms: u64, grace_ms: u64) -> Option<u64> {
        (!still_online).then_some(now_ms + grace_ms)
    }

    /// Departures whose grace has run out at `now_ms` for users who did not come back.
    pub fn due<'a>(
        leaving: &'a [(String, u64)],
        online: &'a [String],
        now_ms: u64,
    ) -> impl Iterator<Item = &'a str> {
        leaving
            .iter()
            .filter(move |(user, at)| *at <= now_ms && !online.contains(user))
            .map(|(user, _)| user.as_str())
    }
}

/// Who holds a socket on one room object: session id to user. The object rebuilds it
/// from its sockets' attachments once per wake-up and keeps it through joins and leaves,
/// so a join asks it instead of reading every socket (which made joining O(sockets)).
#[derive(Debug, Default, Clone)]
pub struct Roster {
    users_by_session: HashMap<String, String>,
    sessions_by_user: HashMap<String, usize>,
}

impl Roster {
    /// A socket is here. Adding a session twice counts it once.
    pub fn add(&mut self, session: &str, user: &str) {
        if self
            .users_by_session
            .insert(session.to_owned(), user.to_owned())
            .is_none()
        {
            *self.sessions_by_user.entry(user.to_owned()).or_default() += 1;
        }
    }

    /// A socket left; answers whose it was. Removing an unknown session changes nothing.
    pub fn remove(&mut self, session: &str) -> Option<String> {
        let user = self.users_by_session.remove(session)?;
        if let Some(count) = self.sessions_by_user.get_mut(&user) {
            *count -= 1;
            if *count == 0 {
                self.sessions_by_user.remove(&user);
            }
        }
        Some(user)
    }

    /// How many sockets of `user` are here.
    pub fn count(&self, user: &str) -> usize {
        self.sessions_by_user.get(user).copied().unwrap_or(0)
    }

    /// How many sockets are here.
    pub fn sockets(&self) -> usize {
        self.users_by_session.len()
    }

    /// Whether `user` has a socket here other than `session`.
    pub fn has_other(&self, user: &str, session: &str) -> bool {
        let own = usize::from(self.users_by_session.get(session).map(String::as_str) == Some(user));
        self.sessions_by_user.get(user).is_some_and(|n| *n > own)
    }

    /// The users with a socket here.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.sessions_by_user.keys().map(String::as_str)
    }
}

/// Where a new socket of a room goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The room's root object.
    Root,
    /// Shard object number `n` (1-based).
    Shard(u64),
}

/// The root keeps up to `shard_size` sockets; beyond that a socket goes to the
/// lowest-numbered shard with room, else to the lowest number no shard holds. `shards`
/// lists the shards holding sockets and how many, in shard order. A shard that empties
/// drops out of the list, so its number is used again and fan-out never calls it.
pub fn place(root_sockets: usize, shards: &[(u64, u64)], shard_size: u64) -> Placement {
    if (root_sockets as u64) < shard_size {
        return Placement::Root;
    }
    if let Some((n, _)) = shards.iter().find(|(_, count)| *count < shard_size) {
        return Placement::Shard(*n);
    }
    // The lowest number not in use: the first gap, or one past the last.
    let mut next = 1;
    for (n, _) in shards {
        if *n != next {
            break;
        }
        next = next.saturating_add(1);
    }
    Placement::Shard(next)
}

/// Typing notices are relayed at most once per user per this many ms; the rest are
/// dropped. One socket at the allowed frame rate would otherwise be a fan-out to the
/// whole room twenty times a second, and clients show "typing…" for seconds anyway.
pub const TYPING_INTERVAL_MS: u64 = 2_000;

/// A shard that has not confirmed its sockets for this many idle timeouts is taken to
/// have lost them: its users' presence rows go and their `left` is announced. A shard
/// confirms at every alarm it runs while it holds sockets, which is at least once per
/// idle timeout.
pub const LEASE_IDLE_TIMEOUTS: u64 = 2;

/// What one room object keeps in memory while awake: its own sockets and when each user
/// last had a typing notice relayed. Lost on hibernation and rebuilt (the roster from
/// the sockets' attachments; the typing times start empty, which costs at most one early
/// relay per user).
#[derive(Debug, Default, Clone)]
pub struct Awake {
    /// This object's own sockets.
    pub roster: Roster,
    typing: HashMap<String, u64>,
}

impl Awake {
    /// Rebuilt from the members attached to this object's open sockets.
    pub fn from_members<'m>(members: impl IntoIterator<Item = &'m Member>) -> Self {
        let mut roster = Roster::default();
        for member in members {
            roster.add(&member.id, &member.user);
        }
        Self {
            roster,
            typing: HashMap::new(),
        }
    }
}

/// A socket arriving at the room's root, verified by the Worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    /// From the token's `sub`.
    pub user: String,
    /// A fresh session id for the socket.
    pub session: String,
    /// The room's name.
    pub room: String,
    /// The token has `rooms:write`.
    pub can_write: bool,
    /// Resume history after this seq.
    pub since: Option<Seq>,
    /// The token's `exp` (seconds), if it has one.
    pub token_exp: Option<u64>,
}

/// The root's answer to a socket arriving.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Keep the socket here: attach `member`, send `frames`, carry out `effects`.
    Here {
        /// The socket's attachment.
        member: Member,
        /// Welcome, who is online, any replay.
        frames: Vec<ServerFrame>,
        /// `joined` for the others, if the user was not present.
        effects: Vec<Effect>,
    },
    /// Hand the socket to shard `member.shard`, which attaches `member` and asks the
    /// root for its first frames ([`Room::join`]). Already counted as the shard's.
    Shard {
        /// The socket's attachment.
        member: Member,
    },
    /// Send `frame`, then close with `code`.
    Refused {
        /// Why.
        code: CloseCode,
        /// The `error` frame saying so.
        frame: ServerFrame,
    },
}

/// A joining socket's first frames, and the latest seq they cover (what was fanned out
/// meanwhile is sent after them, less what they already covered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirstFrames {
    /// Welcome, who is online, any replay.
    pub frames: Vec<ServerFrame>,
    /// The latest history seq the frames cover.
    pub latest: Seq,
}

/// What the glue must do after a room event.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send to every socket of the room, here and on every shard holding sockets, through
    /// the busy-room gathering (see [`crate::fanout`]).
    Fanout(Outgoing),
    /// Send to the socket the event came from.
    Reply(ServerFrame),
    /// Close this object's socket `session` (after an `error` frame saying why).
    Close {
        /// The session to close.
        session: String,
        /// The close code.
        code: CloseCode,
        /// Said in the `error` frame and the close frame.
        reason: String,
    },
    /// Something new was stored in the history (for `GET /v1/stats`).
    Stored,
}

/// Why a room event failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RoomError {
    /// The history failed.
    #[error(transparent)]
    History(#[from] InboxError),
    /// The room store failed.
    #[error(transparent)]
    Store(#[from] RoomStoreError),
}

/// The sans-IO core of a room's root object, borrowed over its stores for one event.
///
/// Events, each with `now`: a socket arrives ([`Room::connect`]), a shard's socket asks
/// for its first frames ([`Room::join`]), a socket closes ([`Room::close`]), a client
/// frame arrives ([`Room::client_text`] for the root's own sockets, after the size and
/// rate checks [`Room::frame`] for a frame a shard forwarded), a producer publishes
/// ([`Room::publish`]), a shard confirms its sockets ([`Room::sync`]), the alarm fires
/// ([`Room::alarm`]). Each answers [`Effect`]s; [`Room::timers`] gives the deadlines.
pub struct Room<'a, H: Inbox, S: RoomStore> {
    /// The room's history: an inbox under the room's limits.
    pub history: &'a mut H,
    /// Members, departures, shard sockets.
    pub store: &'a mut S,
    /// This object's sockets and typing times.
    pub awake: &'a mut Awake,
    /// The deployment's limits (the history runs under [`Limits::for_room`]).
    pub limits: &'a Limits,
    /// A fresh id for a member's message (unguessable, from the runtime's randomness).
    pub message_id: &'a dyn Fn() -> String,
    /// A project room or the broadcast room.
    pub kind: Kind,
}

impl<H: Inbox, S: RoomStore> Room<'_, H, S> {
    /// A socket arrives: refused if its user already has `MAX_DEVICES` sockets in the
    /// room, else kept here while the root has room, else handed to a shard.
    pub fn connect(&mut self, arrival: Arrival, now_ms: u64) -> Result<Admission, RoomError> {
        let own =
            self.awake.roster.count(&arrival.user) + self.store.remote_of(&arrival.user)?.len();
        if own >= self.limits.max_devices {
            return Ok(Admission::Refused {
                code: CloseCode::TooManyDevices,
                frame: ServerFrame::error(
                    "too_many_devices",
                    format!(
                        "at most {} sockets per user may be connected to a room at once",
                        self.limits.max_devices
                    ),
                ),
            });
        }
        let mut member = Member {
            user: arrival.user,
            id: arrival.session,
            room: arrival.room,
            can_write: arrival.can_write,
            connected_at: now_ms,
            budget: FrameBudget::full(self.limits, now_ms),
            shard: None,
            last_frame_at: now_ms,
            token_expires_at: socket::token_deadline(arrival.token_exp),
        };
        let shards = self.store.shard_sockets()?;
        match place(
            self.awake.roster.sockets(),
            &shards,
            self.limits.room_shard_size,
        ) {
            Placement::Root => {
                self.awake.roster.add(&member.id, &member.user);
                let (first, effects) = self.join(&member, arrival.since, now_ms)?;
                Ok(Admission::Here {
                    member,
                    frames: first.frames,
                    effects,
                })
            }
            Placement::Shard(n) => {
                member.shard = Some(n);
                if !shards.iter().any(|(s, _)| *s == n) {
                    // A new (or reused) shard: its lease starts now.
                    self.store.confirm(n, Some(now_ms))?;
                }
                self.store.add_remote(&RemoteSocket {
                    session: member.id.clone(),
                    user: member.user.clone(),
                    shard: n,
                })?;
                Ok(Admission::Shard { member })
            }
        }
    }

    /// The first frames of `member`'s socket, here or on a shard: welcome, who is online,
    /// any replay after `since`; and `joined` for everyone else unless the user was
    /// already present (another socket, or a departure still within its grace).
    pub fn join(
        &mut self,
        member: &Member,
        since: Option<Seq>,
        now_ms: u64,
    ) -> Result<(FirstFrames, Vec<Effect>), RoomError> {
        let present = self.present_elsewhere(&member.user, &member.id)?;
        let leaving = self
            .store
            .departures()?
            .iter()
            .any(|(u, _)| *u == member.user);
        if leaving {
            // Coming back cancels the departure.
            self.store.set_departure(&member.user, None)?;
        }
        let latest = self.history.latest_seq()?;
        let replay = match since {
            Some(since) => history::replay(self.history, since)?.all(self.history, now_ms)?,
            None => Vec::new(),
        };
        let mut frames = vec![ServerFrame::Welcome {
            user: member.user.clone(),
            room: Some(member.room.clone()),
            session: member.id.clone(),
            device: None,
            seq: latest,
            unread_count: 0,
            heartbeat_ms: self.limits.heartbeat_ms,
        }];
        if self.kind.shows_presence() {
            let mut online: BTreeSet<String> = self.online_users()?.into_iter().collect();
            online.insert(member.user.clone());
            frames.push(ServerFrame::Presence {
                action: PresenceAction::Online,
                user: None,
                users: Some(online.into_iter().collect()),
            });
        }
        frames.extend(replay);
        let mut effects = Vec::new();
        if self.kind.shows_presence() && presence::announce_join(present, leaving) {
            let joined = presence_frame(PresenceAction::Joined, &member.user);
            effects.push(Effect::Fanout(Outgoing::to_others(joined, &member.id)));
        }
        Ok((FirstFrames { frames, latest }, effects))
    }

    /// Socket `session` closed, here or on a shard (or a shard could not take it). If its
    /// user has no other socket, `left` is due after the grace period.
    pub fn close(&mut self, session: &str, now_ms: u64) -> Result<(), RoomError> {
        let user = match self.awake.roster.remove(session) {
            Some(user) => Some(user),
            None => self.store.remove_remote(session)?.map(|s| {
                self.retire_if_empty(s.shard);
                s.user
            }),
        };
        if let Some(user) = user {
            self.depart_unless_present(&user, now_ms, self.limits.room_presence_grace_ms)?;
        }
        Ok(())
    }

    /// A text frame on one of the root's own sockets: the size and rate checks every
    /// socket is held to, then [`Room::frame`].
    pub fn client_text(&mut self, member: &mut Member, text: &str, now_ms: u64) -> Vec<Effect> {
        if let Some(closing) = member.admit(self.limits, text.len(), now_ms) {
            return vec![close(member, closing)];
        }
        self.frame(member, text, now_ms)
    }

    /// A binary frame on one of the root's own sockets; rooms speak JSON text only.
    pub fn client_binary(&mut self, member: &mut Member, len: usize, now_ms: u64) -> Vec<Effect> {
        if let Some(closing) = member.admit(self.limits, len, now_ms) {
            return vec![close(member, closing)];
        }
        vec![Effect::Reply(ServerFrame::binary_refused())]
    }

    /// One admitted frame from a member, wherever its socket lives. Replies go to that
    /// socket; everything for the room is fanned out.
    pub fn frame(&mut self, member: &Member, text: &str, now_ms: u64) -> Vec<Effect> {
        let frame = match crate::frame::parse::<RoomFrame>(text) {
            Ok(frame) => frame,
            Err(refusal) => return vec![Effect::Reply(*refusal)],
        };
        let outcome = match frame {
            RoomFrame::Ping => Ok(vec![Effect::Reply(ServerFrame::Pong)]),
            RoomFrame::Resume { since } => history::replay(self.history, since)
                .and_then(|replay| replay.all(self.history, now_ms))
                .map(|frames| frames.into_iter().map(Effect::Reply).collect())
                .map_err(RoomError::from),
            RoomFrame::Typing | RoomFrame::Publish { .. } if self.kind == Kind::Broadcast => {
                Ok(vec![Effect::Reply(ServerFrame::error(
                    "forbidden",
                    "the broadcast room is read-only: nothing sent on it is relayed",
                ))])
            }
            RoomFrame::Typing => Ok(self.typing(member, now_ms)),
            RoomFrame::Publish { .. } if !member.can_write => {
                Ok(vec![Effect::Reply(ServerFrame::error(
                    "forbidden",
                    format!("publishing to a room needs the {WRITE_SCOPE} scope"),
                ))])
            }
            RoomFrame::Publish {
                event,
                title,
                body,
                data,
            } => match RoomFrame::draft(member, (self.message_id)(), event, title, body, data) {
                Ok(draft) => self
                    .store_drafts(vec![draft], Source::Member, now_ms)
                    .map(|(_, effects)| effects),
                Err(e) => Ok(vec![Effect::Reply(ServerFrame::error(
                    "bad_request",
                    e.to_string(),
                ))]),
            },
        };
        outcome.unwrap_or_else(|e| {
            vec![Effect::Reply(ServerFrame::error(
                "unavailable",
                format!("{e}; retry"),
            ))]
        })
    }

    /// A producer's room publish: stored in history (with the room's idempotency window)
    /// and fanned out. Answers one receipt per draft, in order.
    pub fn publish(
        &mut self,
        drafts: Vec<Draft>,
        now_ms: u64,
    ) -> Result<(Vec<Receipt>, Vec<Effect>), RoomError> {
        self.store_drafts(drafts, Source::Producer, now_ms)
    }

    /// Shard `shard` confirms the sockets it holds (`members`: session and user). Rows of
    /// that shard it no longer holds go, with a departure for users now gone; sockets it
    /// holds that the root had lost are recorded again; the shard's lease restarts, or
    /// ends if it holds nothing.
    pub fn sync(
        &mut self,
        shard: u64,
        members: &[(String, String)],
        now_ms: u64,
    ) -> Result<Vec<Effect>, RoomError> {
        let recorded = self.store.remote()?;
        let mut effects = Vec::new();
        for gone in recorded
            .iter()
            .filter(|s| s.shard == shard && !members.iter().any(|(id, _)| *id == s.session))
        {
            self.store.remove_remote(&gone.session)?;
            self.depart_unless_present(&gone.user, now_ms, self.limits.room_presence_grace_ms)?;
        }
        for (session, user) in members {
            if recorded.iter().any(|s| s.session == *session) {
                continue;
            }
            let present = self.present_elsewhere(user, session)?;
            self.store.add_remote(&RemoteSocket {
                session: session.clone(),
                user: user.clone(),
                shard,
            })?;
            if !present && self.kind.shows_presence() {
                self.store.set_departure(user, None)?;
                let joined = presence_frame(PresenceAction::Joined, user);
                effects.push(Effect::Fanout(Outgoing::to_others(joined, session)));
            }
        }
        let holds = !members.is_empty();
        self.store.confirm(shard, holds.then_some(now_ms))?;
        Ok(effects)
    }

    /// The alarm: close the root's own sockets that are silent or whose token ran out
    /// (`sockets`: session and view), drop the rows of shards whose lease ran out,
    /// announce `left` for departures that are due, and apply the history's retention.
    pub fn alarm(
        &mut self,
        sockets: &[(String, SocketView)],
        now_ms: u64,
    ) -> Result<Vec<Effect>, RoomError> {
        let mut effects: Vec<Effect> = sweep(sockets, self.limits, now_ms);
        let lease = self.lease_ms();
        for (shard, confirmed_at) in self.store.confirmations()? {
            if confirmed_at + lease > now_ms {
                continue;
            }
            // The shard lost its sockets without saying so (a restart, a failed call):
            // its users have been gone for a while already, so `left` is due at once.
            for lost in self
                .store
                .remote()?
                .into_iter()
                .filter(|s| s.shard == shard)
            {
                self.store.remove_remote(&lost.session)?;
                self.depart_unless_present(&lost.user, now_ms, 0)?;
            }
            self.store.confirm(shard, None)?;
        }
        let departures = self.store.departures()?;
        let online = self.online_users()?;
        let left: Vec<&str> = presence::due(&departures, &online, now_ms).collect();
        for user in left {
            let frame = presence_frame(PresenceAction::Left, user);
            effects.push(Effect::Fanout(Outgoing::to_all(frame)));
        }
        for (user, at) in &departures {
            if *at <= now_ms {
                self.store.set_departure(user, None)?;
            }
        }
        history::retain(self.history, &self.limits.for_room(), now_ms)?;
        Ok(effects)
    }

    /// The root's timer table: history retention, the earliest departure's grace, the
    /// earliest shard lease, and the liveness of its own `sockets`. Nothing while the
    /// room is quiet (no sockets, no departures, nothing to prune).
    pub fn timers(&self, sockets: &[SocketView]) -> Result<Timers, RoomError> {
        let mut timers = Timers::default();
        timers.set(
            Timer::Retention,
            history::retention_due(self.history, &self.limits.for_room())?,
        );
        for (_, at) in self.store.departures()? {
            timers.set(Timer::PresenceGrace, Some(at));
        }
        let lease = self.lease_ms();
        for (_, confirmed_at) in self.store.confirmations()? {
            timers.set(Timer::PresenceLease, Some(confirmed_at + lease));
        }
        set_liveness(&mut timers, sockets, self.limits);
        Ok(timers)
    }

    /// The shards a fan-out must reach: those holding sockets.
    pub fn shards(&self) -> Result<Vec<u64>, RoomError> {
        Ok(self
            .store
            .shard_sockets()?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// Distinct users with a socket here or on any shard, sorted.
    pub fn online_users(&self) -> Result<Vec<String>, RoomError> {
        let mut users: BTreeSet<String> = self.awake.roster.users().map(str::to_owned).collect();
        users.extend(self.store.remote()?.into_iter().map(|s| s.user));
        Ok(users.into_iter().collect())
    }

    /// How long a shard's confirmation holds: [`LEASE_IDLE_TIMEOUTS`] idle timeouts.
    pub fn lease_ms(&self) -> u64 {
        self.limits
            .idle_timeout_ms
            .saturating_mul(LEASE_IDLE_TIMEOUTS)
    }

    fn typing(&mut self, member: &Member, now_ms: u64) -> Vec<Effect> {
        let last = self.awake.typing.get(&member.user).copied();
        if last.is_some_and(|at| now_ms < at + TYPING_INTERVAL_MS) {
            return Vec::new();
        }
        self.awake.typing.insert(member.user.clone(), now_ms);
        let typing = ServerFrame::Typing {
            user: member.user.clone(),
        };
        vec![Effect::Fanout(Outgoing::to_others(typing, &member.id))]
    }

    fn store_drafts(
        &mut self,
        drafts: Vec<Draft>,
        source: Source,
        now_ms: u64,
    ) -> Result<(Vec<Receipt>, Vec<Effect>), RoomError> {
        let limits = self.limits.for_room();
        let mut latest = self.history.latest_seq()?;
        let mut receipts = Vec::with_capacity(drafts.len());
        let mut effects = Vec::new();
        for draft in drafts {
            let stored =
                history::store(self.history, draft, Some(source), latest, &limits, now_ms)?;
            receipts.push(stored.receipt());
            if let Stored::New(item) = stored {
                latest = item.seq;
                let frame = match source {
                    Source::Producer => ServerFrame::Notification(item),
                    Source::Member => ServerFrame::Message(item),
                };
                effects.push(Effect::Fanout(Outgoing::to_all(frame)));
            }
        }
        if !effects.is_empty() {
            effects.push(Effect::Stored);
            // The count bound is kept on every write; the others wait for the alarm.
            if self.history.item_count()? > limits.inbox_max_items {
                history::retain(self.history, &limits, now_ms)?;
            }
        }
        Ok((receipts, effects))
    }

    /// Whether `user` has a socket besides `session`, here or on a shard.
    fn present_elsewhere(&self, user: &str, session: &str) -> Result<bool, RoomError> {
        if self.awake.roster.has_other(user, session) {
            return Ok(true);
        }
        Ok(self
            .store
            .remote_of(user)?
            .iter()
            .any(|s| s.session != session))
    }

    /// Records `user`'s departure, due `grace_ms` after `now_ms`, unless they still have a
    /// socket somewhere.
    fn depart_unless_present(
        &mut self,
        user: &str,
        now_ms: u64,
        grace_ms: u64,
    ) -> Result<(), RoomError> {
        if !self.kind.shows_presence() {
            // Nobody is told who listens, so nobody is told who left.
            return Ok(());
        }
        // No session is named "": every remaining socket of the user counts.
        let still_online = self.present_elsewhere(user, "")?;
        if let Some(at) = presence::leave_deadline(still_online, now_ms, grace_ms) {
            self.store.set_departure(user, Some(at))?;
        }
        Ok(())
    }

    /// A shard left without sockets is retired: its lease ends and its number is free.
    fn retire_if_empty(&mut self, shard: u64) {
        let holds = self
            .store
            .shard_sockets()
            .map(|shards| shards.iter().any(|(n, _)| *n == shard))
            .unwrap_or(true);
        if !holds {
            let _ = self.store.confirm(shard, None);
        }
    }
}

/// The sockets of one object (root or shard) to close at `now_ms`: token expired (4001) or
/// silent past the idle timeout (1001), the rule user sockets are held to.
pub fn sweep(sockets: &[(String, SocketView)], limits: &Limits, now_ms: u64) -> Vec<Effect> {
    sockets
        .iter()
        .filter_map(|(session, view)| {
            let (code, reason) = view.liveness(limits, now_ms)?;
            Some(Effect::Close {
                session: session.clone(),
                code,
                reason: reason.to_owned(),
            })
        })
        .collect()
}

/// A shard object's timer table: the liveness of its sockets. It confirms them to the
/// root at every alarm, so the same deadlines keep the root's lease fresh.
pub fn shard_timers(sockets: &[SocketView], limits: &Limits) -> Timers {
    let mut timers = Timers::default();
    set_liveness(&mut timers, sockets, limits);
    timers
}

fn set_liveness(timers: &mut Timers, sockets: &[SocketView], limits: &Limits) {
    for socket in sockets {
        timers.set(Timer::IdleSweep, Some(socket.idle_at(limits)));
        timers.set(Timer::TokenExpiry, socket.token_expires_at);
    }
}

fn close(member: &Member, closing: Closing) -> Effect {
    Effect::Close {
        session: member.id.clone(),
        code: closing.code,
        reason: closing.reason,
    }
}

fn presence_frame(action: PresenceAction, user: &str) -> ServerFrame {
    ServerFrame::Presence {
        action,
        user: Some(user.to_owned()),
        users: None,
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_debounce() {
        assert!(presence::announce_join(false, false));
        assert!(!presence::announce_join(true, false));
        assert!(
            !presence::announce_join(false, true),
            "a quick reconnect is no join"
        );
        assert_eq!(presence::leave_deadline(true, 100, 50), None);
        assert_eq!(presence::leave_deadline(false, 100, 50), Some(150));
        let leaving = vec![("ann".to_string(), 150), ("bob".to_string(), 300)];
        let online = vec!["bob".to_string()];
        assert_eq!(
            presence::due(&leaving, &online, 149).collect::<Vec<_>>(),
            Vec::<&str>::new()
        );
        assert_eq!(
            presence::due(&leaving, &online, 400).collect::<Vec<_>>(),
            ["ann"]
        );
    }

    #[test]
    fn shard_placement() {
        assert_eq!(place(2, &[], 3), Placement::Root);
        assert_eq!(place(3, &[], 3), Placement::Shard(1));
        assert_eq!(place(3, &[(1, 2)], 3), Placement::Shard(1));
        assert_eq!(place(3, &[(1, 3)], 3), Placement::Shard(2));
        assert_eq!(
            place(3, &[(1, 3), (3, 1)], 3),
            Placement::Shard(3),
            "room on shard 3"
        );
        assert_eq!(
            place(3, &[(1, 3), (3, 3)], 3),
            Placement::Shard(2),
            "the gap is reused"
        );
    }
}
