//! The `RoomHub` Durable Object: one per room (the root), plus shard objects named
//! `<room>#<n>` once a room outgrows one object.
//!
//! The root drives [`crate::room::Room`] over its SQLite history and room store and
//! carries out its effects; a shard holds sockets only, checks their frames' size and rate
//! and their liveness with the same rules, forwards everything else to the root, relays
//! what the root fans out, and confirms its sockets to the root at every alarm. Sockets
//! hibernate in both; the plumbing is [`super::runner`]'s.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{
    durable_object, Delay, DurableObject, Env, Headers, Method, Request, Response, Result, State,
    WebSocket, WebSocketIncomingMessage,
};

use super::call;
use super::runner::{self, Alarm};
use super::sql_inbox::SqlInbox;
use super::sql_room::RoomSql;
use super::stats::ObjectStats;
use super::{
    config, error_response, internal, internal_error, log, logged, now_ms, number_header,
    random_id, required_header,
};
use crate::error::ApiError;
use crate::fanout::{coalesce, Outgoing, Pace};
use crate::frame::{CloseCode, ServerFrame};
use crate::inbox::Inbox;
use crate::model::{Draft, Receipt, Seq};
use crate::room::{self, Admission, Arrival, Awake, Effect, FirstFrames, Member, Room, RoomError};
use crate::room_store::RoomStore;
use crate::socket::SocketView;
use crate::stats::{self, Kind, Sends};

/// A shard's socket asking the root for its first frames.
#[derive(Deserialize, Serialize)]
struct ShardJoin {
    member: Member,
    since: Option<Seq>,
}

/// A frame a shard socket sent, for the root to handle.
#[derive(Deserialize, Serialize)]
struct ShardEvent {
    member: Member,
    text: String,
}

/// A shard's sockets (session, user), confirmed to the root.
#[derive(Deserialize, Serialize)]
struct ShardSync {
    shard: u64,
    members: Vec<(String, String)>,
}

#[durable_object]
pub struct RoomHub {
    state: State,
    env: Env,
    /// Root only: the history.
    history: std::result::Result<RefCell<SqlInbox>, String>,
    /// Members, presence, shard sockets (root); the object's identity (both).
    store: std::result::Result<RefCell<RoomSql>, String>,
    /// This object's sockets and typing times, rebuilt on first use after a wake-up.
    awake: RefCell<Option<Awake>>,
    /// Shard only: sockets whose first frames are still being fetched from the root, and
    /// what was fanned out to them meanwhile (sent after them, so nothing is lost or
    /// overtaken). Lives only across that one awaited call.
    pending: RefCell<HashMap<String, Vec<Outgoing>>>,
    /// Root only: frames gathered for the next fan-out while the room is busy.
    outbox: RefCell<Vec<Outgoing>>,
    /// Root only: whether the room is busy sending.
    pace: Cell<Pace>,
    alarm: Alarm,
    /// The room's name has been stored since this instance woke.
    named: Cell<bool>,
    /// Counters for `GET /v1/stats` (each shard reports its own sockets and deliveries).
    stats: ObjectStats,
}

impl DurableObject for RoomHub {
    fn new(state: State, env: Env) -> Self {
        runner::auto_respond(&state);
        let sql = state.storage().sql();
        let history = SqlInbox::open(sql.clone())
            .map(RefCell::new)
            .map_err(|e| e.to_string());
        let store = RoomSql::open(sql)
            .map(RefCell::new)
            .map_err(|e| e.to_string());
        let interval = config(&env).map_or(crate::config::DEFAULT_REPORT_INTERVAL_MS, |c| {
            c.limits.stats_report_ms
        });
        Self {
            state,
            env,
            history,
            store,
            awake: RefCell::new(None),
            pending: RefCell::new(HashMap::new()),
            outbox: RefCell::new(Vec::new()),
            pace: Cell::new(Pace::default()),
            alarm: Alarm::new(),
            named: Cell::new(false),
            stats: ObjectStats::new(Kind::Room, interval),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        // Requests from the Worker name the room; store it once per wake-up, for the
        // alarm and for shard fan-out.
        if !self.named.get() {
            if let (Some(name), Ok(store)) = (req.headers().get(internal::ROOM)?, &self.store) {
                store.borrow().set_name(&name).map_err(|e| e.to_string())?;
                self.named.set(true);
            }
        }
        let answer = match (req.path().as_str(), req.headers().has(internal::SHARD)?) {
            ("/connect", false) => self.accept_member(req).await,
            ("/connect", true) => self.shard_connect(req).await,
            ("/publish", _) => self.publish(req).await,
            ("/presence", _) => self.presence(),
            ("/members", _) => self.members(req).await,
            ("/shard-join", _) => self.shard_join(req).await,
            ("/shard-leave", _) => self.shard_leave(req).await,
            ("/shard-event", _) => self.shard_event(req).await,
            ("/shard-sync", _) => self.shard_sync(req).await,
            ("/fanout", _) => self.fanout(req).await,
            _ => Err(ApiError::new(404, "not_found", "no such room route")),
        };
        self.settle().await;
        answer.or_else(|err| error_response(&err))
    }

    async fn alarm(&self) -> Result<Response> {
        // The runtime retries a failed alarm, silently: say why it failed.
        logged("alarm", self.run_alarm().await.map_err(api_to_worker))
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        let Some(mut member) = ws.deserialize_attachment::<Member>()? else {
            return ws.close(Some(CloseCode::Internal.code()), Some("lost session state"));
        };
        let config = config(&self.env).map_err(api_to_worker)?;
        let now = now_ms();
        let effects = match (&message, member.shard) {
            // A shard checks its own sockets' frames, then lets the root decide.
            (_, Some(_)) => {
                let len = match &message {
                    WebSocketIncomingMessage::String(text) => text.len(),
                    WebSocketIncomingMessage::Binary(bytes) => bytes.len(),
                };
                match member.admit(&config.limits, len, now) {
                    Some(closing) => vec![Effect::Close {
                        session: member.id.clone(),
                        code: closing.code,
                        reason: closing.reason,
                    }],
                    None => {
                        ws.serialize_attachment(&member)?;
                        self.forward_frame(&member, message)
                            .await
                            .map_err(api_to_worker)?
                    }
                }
            }
            (WebSocketIncomingMessage::String(text), None) => self
                .with_room(|room| Ok(room.client_text(&mut member, text, now)))
                .map_err(api_to_worker)?,
            (WebSocketIncomingMessage::Binary(bytes), None) => self
                .with_room(|room| Ok(room.client_binary(&mut member, bytes.len(), now)))
                .map_err(api_to_worker)?,
        };
        // The frame budget and last frame changed; keep them across hibernation.
        ws.serialize_attachment(&member)?;
        self.execute(Some(&ws), effects)
            .await
            .map_err(api_to_worker)?;
        self.settle().await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        runner::finish_close(&ws, code);
        let Some(member) = ws.deserialize_attachment::<Member>().ok().flatten() else {
            return Ok(());
        };
        self.left(&member).await.map_err(api_to_worker)?;
        self.settle().await;
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, error: worker::Error) -> Result<()> {
        let member = ws.deserialize_attachment::<Member>().ok().flatten();
        runner::socket_error(member.as_ref().map(|m| (&m.user, &m.id)), &error);
        Ok(())
    }
}

impl RoomHub {
    /// Root: a socket arrives. It stays here while there is room, else it is handed to
    /// a shard object, whose answer (the 101) goes back as is; or it is refused.
    async fn accept_member(&self, req: Request) -> std::result::Result<Response, ApiError> {
        let arrival = Arrival {
            user: required_header(&req, internal::USER)?,
            session: random_id("ses_"),
            room: required_header(&req, internal::ROOM)?,
            can_write: req.headers().has(internal::WRITE).unwrap_or(false),
            since: number_header(&req, internal::SINCE)?,
            token_exp: number_header(&req, internal::EXP)?,
        };
        let (pair, server) = runner::socket_pair()?;
        match self.with_room(|room| room.connect(arrival, now_ms()))? {
            Admission::Here {
                member,
                frames,
                effects,
            } => {
                runner::accept(&self.state, &server, &member.id, &member, &self.stats)?;
                for frame in &frames {
                    runner::send(&self.state, &self.stats, &server, frame)
                        .map_err(internal_error)?;
                }
                log_join(&member);
                self.execute(None, effects).await?;
                self.schedule().await?;
            }
            Admission::Shard { member } => return self.hand_to_shard(req, member).await,
            Admission::Refused { code, frame } => {
                runner::refuse(&server, &frame, code)?;
                log::event(
                    "connect_refused",
                    json!({ "user": required_header(&req, internal::USER)?, "room": required_header(&req, internal::ROOM)?, "code": code.code() }),
                );
            }
        }
        runner::upgrade(&req, pair)
    }

    /// Root: forwards the upgrade to the member's shard. If the shard cannot take it, the
    /// socket the root counted for it is forgotten again.
    async fn hand_to_shard(
        &self,
        req: Request,
        member: Member,
    ) -> std::result::Result<Response, ApiError> {
        let n = member.shard.unwrap_or_default();
        let headers = req.headers().clone();
        headers
            .set(internal::SHARD, &n.to_string())
            .map_err(internal_error)?;
        headers
            .set(
                internal::MEMBER,
                &serde_json::to_string(&member).map_err(internal_error)?,
            )
            .map_err(internal_error)?;
        let shard = call::shard_stub(&self.env, &member.room, n)?;
        let answer = call::call(shard, Method::Get, "/connect", headers, None).await;
        if !matches!(&answer, Ok(response) if response.status_code() == 101) {
            self.with_room(|room| room.close(&member.id, now_ms()))?;
        }
        answer
    }

    /// Shard: a socket handed over by the root, attached as the root described it. Its
    /// first frames come from the root; whatever is fanned out meanwhile waits in
    /// `pending` and follows them.
    async fn shard_connect(&self, req: Request) -> std::result::Result<Response, ApiError> {
        let member: Member = serde_json::from_str(&required_header(&req, internal::MEMBER)?)
            .map_err(internal_error)?;
        let since = number_header(&req, internal::SINCE)?;
        if let (Ok(store), Some(n)) = (&self.store, member.shard) {
            store.borrow().set_shard(n).map_err(internal_error)?;
        }
        let (pair, server) = runner::socket_pair()?;
        self.pending
            .borrow_mut()
            .insert(member.id.clone(), Vec::new());
        runner::accept(&self.state, &server, &member.id, &member, &self.stats)?;
        self.awake().roster.add(&member.id, &member.user);
        let join = ShardJoin {
            member: member.clone(),
            since,
        };
        let first = match self.root_call(&member.room, "/shard-join", &join).await {
            Ok(mut answer) => answer.json::<FirstFrames>().await.map_err(internal_error),
            Err(e) => Err(e),
        };
        let waiting = self
            .pending
            .borrow_mut()
            .remove(&member.id)
            .unwrap_or_default();
        match first {
            Ok(first) => {
                let later = waiting.iter().filter_map(|out| out.after(first.latest));
                for frame in first
                    .frames
                    .iter()
                    .cloned()
                    .chain(later.map(|out| out.frame))
                {
                    runner::send(&self.state, &self.stats, &server, &frame)
                        .map_err(internal_error)?;
                }
                log_join(&member);
            }
            Err(e) => {
                log::event(
                    "error",
                    json!({ "room": member.room, "message": e.message }),
                );
                // The client reconnects; the root forgets the socket at the next sync.
                runner::close(&server, CloseCode::Internal, "room unavailable")
                    .map_err(internal_error)?;
            }
        }
        self.schedule().await?;
        runner::upgrade(&req, pair)
    }

    /// The alarm: the root sweeps its sockets, presence and history; a shard sweeps its
    /// sockets and confirms the rest to the root.
    async fn run_alarm(&self) -> std::result::Result<Response, ApiError> {
        self.alarm.fired();
        let now = now_ms();
        let config = config(&self.env)?;
        let sockets = self.socket_views();
        match self.shard_number()? {
            None => {
                let effects = self.with_room(|room| room.alarm(&sockets, now))?;
                self.execute(None, effects).await?;
            }
            Some(shard) => {
                let closes = room::sweep(&sockets, &config.limits, now);
                self.execute(None, closes).await?;
                let members = self
                    .open_members()
                    .into_iter()
                    .map(|(_, m)| (m.id, m.user))
                    .collect();
                let room = self.room_name()?;
                // A failed confirmation costs nothing now: the root's lease allows for it.
                if let Err(e) = self
                    .root_call(&room, "/shard-sync", &ShardSync { shard, members })
                    .await
                {
                    log::event("error", json!({ "room": room, "message": e.message }));
                }
            }
        }
        self.report();
        self.schedule().await?;
        Response::ok("done").map_err(internal_error)
    }

    /// A member's socket closed: the root forgets it (the shard's via its root).
    async fn left(&self, member: &Member) -> std::result::Result<(), ApiError> {
        // One connection fewer.
        self.stats.touch();
        if member.shard.is_some() {
            self.awake().roster.remove(&member.id);
            // A failed call leaves a row the shard's next confirmation removes.
            self.root_call(&member.room, "/shard-leave", &member.id)
                .await?;
        } else {
            self.with_room(|room| room.close(&member.id, now_ms()))?;
            self.schedule().await?;
        }
        Ok(())
    }

    /// Shard: sends a frame that passed the checks to the root; answers its replies.
    async fn forward_frame(
        &self,
        member: &Member,
        message: WebSocketIncomingMessage,
    ) -> std::result::Result<Vec<Effect>, ApiError> {
        let WebSocketIncomingMessage::String(text) = message else {
            return Ok(vec![Effect::Reply(ServerFrame::binary_refused())]);
        };
        let event = ShardEvent {
            member: member.clone(),
            text,
        };
        let mut answer = self.root_call(&member.room, "/shard-event", &event).await?;
        let replies: Vec<ServerFrame> = answer.json().await.map_err(internal_error)?;
        Ok(replies.into_iter().map(Effect::Reply).collect())
    }

    /// Root: a producer's room publish. Stores in history, fans out, and answers the
    /// receipts with the member list (for `inbox:true`, which the Worker files).
    async fn publish(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let drafts: Vec<Draft> = req
            .json()
            .await
            .map_err(|e| ApiError::new(400, "bad_request", e.to_string()))?;
        let (receipts, effects) = self.with_room(|room| room.publish(drafts, now_ms()))?;
        self.execute(None, effects).await?;
        self.schedule().await?;
        // Only a publish that files in members' inboxes needs the list.
        let members = match req.headers().has(internal::MEMBERS).unwrap_or(false) {
            true => self.with_room(|room| Ok(room.store.members()?))?,
            false => Vec::new(),
        };
        Response::from_json(&RoomReceipts { receipts, members }).map_err(internal_error)
    }

    fn presence(&self) -> std::result::Result<Response, ApiError> {
        let users = self.with_room(|room| room.online_users())?;
        Response::from_json(&json!({ "users": users })).map_err(internal_error)
    }

    async fn members(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let update: Option<Vec<String>> = match req.method() {
            Method::Put => Some(
                req.json()
                    .await
                    .map_err(|e| ApiError::new(400, "bad_request", e.to_string()))?,
            ),
            _ => None,
        };
        let members = self.with_room(|room| {
            if let Some(members) = &update {
                room.store.set_members(members)?;
            }
            Ok(room.store.members()?)
        })?;
        Response::from_json(&json!({ "members": members })).map_err(internal_error)
    }

    async fn shard_join(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let join: ShardJoin = req.json().await.map_err(internal_error)?;
        let (first, effects) =
            self.with_room(|room| room.join(&join.member, join.since, now_ms()))?;
        self.execute(None, effects).await?;
        Response::from_json(&first).map_err(internal_error)
    }

    async fn shard_leave(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let session: String = req.json().await.map_err(internal_error)?;
        self.with_room(|room| room.close(&session, now_ms()))?;
        self.schedule().await?;
        Response::ok("left").map_err(internal_error)
    }

    async fn shard_event(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let event: ShardEvent = req.json().await.map_err(internal_error)?;
        let effects =
            self.with_room(|room| Ok(room.frame(&event.member, &event.text, now_ms())))?;
        // Replies travel back to the shard's socket; the rest is the room's to carry out.
        let mut replies = Vec::new();
        let mut rest = Vec::new();
        for effect in effects {
            match effect {
                Effect::Reply(frame) => replies.push(frame),
                other => rest.push(other),
            }
        }
        self.execute(None, rest).await?;
        Response::from_json(&replies).map_err(internal_error)
    }

    async fn shard_sync(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let sync: ShardSync = req.json().await.map_err(internal_error)?;
        let effects = self.with_room(|room| room.sync(sync.shard, &sync.members, now_ms()))?;
        self.execute(None, effects).await?;
        self.schedule().await?;
        Response::ok("confirmed").map_err(internal_error)
    }

    /// Shard: frames the root fans out, for this object's sockets.
    async fn fanout(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let frames: Vec<Outgoing> = req.json().await.map_err(internal_error)?;
        self.send_local(&frames);
        Response::ok("sent").map_err(internal_error)
    }

    /// Carries out a room's effects; `origin` is the socket the event came from.
    async fn execute(
        &self,
        origin: Option<&WebSocket>,
        effects: Vec<Effect>,
    ) -> std::result::Result<(), ApiError> {
        let mut out = Vec::new();
        for effect in effects {
            match effect {
                Effect::Fanout(frame) => out.push(frame),
                Effect::Reply(frame) => {
                    if let Some(ws) = origin {
                        let _ = runner::send(&self.state, &self.stats, ws, &frame);
                    }
                }
                Effect::Close {
                    session,
                    code,
                    reason,
                } => {
                    log::event(
                        "close",
                        json!({ "session": session, "code": code.code(), "reason": reason }),
                    );
                    if let Some(ws) = runner::tagged(&self.state, &session) {
                        let _ = runner::close(&ws, code, &reason);
                    }
                }
                Effect::Stored => self.stats.touch(),
            }
        }
        self.broadcast(out).await
    }

    /// Root: sends to every socket of the room, here and on every shard holding sockets.
    /// In a busy room (see [`Pace`]) the caller that finds the outbox empty waits a
    /// moment, then sends everything gathered meanwhile, runs of notifications packed
    /// into one `batch`; callers that find it filling leave their frames to that one.
    async fn broadcast(&self, frames: Vec<Outgoing>) -> std::result::Result<(), ApiError> {
        // This caller sends if it brought the first frames; an earlier one is gathering.
        let sends = {
            let mut outbox = self.outbox.borrow_mut();
            let first = outbox.is_empty();
            outbox.extend(frames);
            first && !outbox.is_empty()
        };
        if !sends {
            return Ok(());
        }
        let wait = self.pace.get().wait_ms(now_ms());
        if wait > 0 {
            Delay::from(Duration::from_millis(wait)).await;
        }
        let frames = coalesce(std::mem::take(&mut *self.outbox.borrow_mut()));
        let mut pace = self.pace.get();
        pace.sent(now_ms(), self.awake().roster.sockets());
        self.pace.set(pace);
        self.send_local(&frames);
        self.send_to_shards(&frames).await
    }

    async fn send_to_shards(&self, frames: &[Outgoing]) -> std::result::Result<(), ApiError> {
        let shards = self.with_room(|room| room.shards())?;
        if shards.is_empty() {
            return Ok(());
        }
        let name = self.room_name()?;
        let body = serde_json::to_vec(frames).map_err(internal_error)?;
        let calls = shards.into_iter().map(|n| {
            let body = body.clone();
            let name = name.clone();
            async move {
                let shard = call::shard_stub(&self.env, &name, n)?;
                call::call(shard, Method::Post, "/fanout", Headers::new(), Some(body)).await
            }
        });
        for result in join_all(calls).await {
            if let Err(e) = result {
                log::event(
                    "error",
                    json!({ "room": name, "message": format!("fan-out: {}", e.message) }),
                );
            }
        }
        Ok(())
    }

    /// Sends to this object's own sockets, holding frames for sockets still joining.
    /// Each frame is serialized once, whatever the socket count. The sockets to skip or
    /// hold are found by their session tags.
    fn send_local(&self, frames: &[Outgoing]) {
        let texts: Vec<String> = frames.iter().map(|out| out.frame.to_json()).collect();
        let mut pending = self.pending.borrow_mut();
        // The hot path: a plain fan-out to everyone, one crossing into JavaScript per frame.
        if pending.is_empty() && frames.iter().all(|out| out.except.is_none()) {
            for (out, text) in frames.iter().zip(&texts) {
                let sends = runner::send_to_all(&self.state, text);
                self.stats
                    .sent(&self.state, stats::items(&out.frame), sends);
            }
            return;
        }
        let held: Vec<(String, WebSocket)> = pending
            .keys()
            .filter_map(|session| Some((session.clone(), runner::tagged(&self.state, session)?)))
            .collect();
        let skipped: Vec<Option<WebSocket>> = frames
            .iter()
            .map(|out| {
                out.except
                    .as_deref()
                    .and_then(|s| runner::tagged(&self.state, s))
            })
            .collect();
        let same = |a: &WebSocket, b: &WebSocket| {
            AsRef::<worker::wasm_bindgen::JsValue>::as_ref(a.as_ref())
                == AsRef::<worker::wasm_bindgen::JsValue>::as_ref(b.as_ref())
        };
        for (ws, _) in runner::attached::<Member>(&self.state) {
            let holding = held.iter().find(|(_, h)| same(h, &ws));
            for ((out, text), skip) in frames.iter().zip(&texts).zip(&skipped) {
                if skip.as_ref().is_some_and(|s| same(s, &ws)) {
                    continue;
                }
                match holding.and_then(|(session, _)| pending.get_mut(session)) {
                    Some(waiting) => waiting.push(out.clone()),
                    // A socket closing under us misses nothing: history is stored.
                    None => {
                        let sent = ws.send_with_str(text).is_ok();
                        self.stats
                            .sent(&self.state, stats::items(&out.frame), Sends::one(sent));
                    }
                }
            }
        }
    }

    /// Keeps the alarm at the earliest deadline of the room (root) or of its sockets
    /// (shard), and of the stats report.
    async fn schedule(&self) -> std::result::Result<(), ApiError> {
        let config = config(&self.env)?;
        let views: Vec<SocketView> = self.socket_views().into_iter().map(|(_, v)| v).collect();
        let timers = match self.shard_number()? {
            None => self.with_room(|room| room.timers(&views))?,
            Some(_) => room::shard_timers(&views, &config.limits),
        };
        runner::schedule(&self.state, &self.alarm, &self.stats, timers)
            .await
            .map(|_| ())
            .map_err(internal_error)
    }

    /// Sends the stats report if one is due (see [`ObjectStats::tick`]).
    fn report(&self) -> stats::Tick {
        self.stats.tick(&self.state, &self.env, || {
            let stored = self
                .history
                .as_ref()
                .ok()
                .and_then(|cell| cell.borrow().latest_seq().ok())
                .unwrap_or(0);
            (self.awake().roster.sockets() as u64, stored)
        })
    }

    /// At the end of an event: reports if due, and moves the alarm for a report that has
    /// to wait, unless it already comes in time. A failure costs a late report only.
    async fn settle(&self) {
        if self.alarm.must_move_for(self.report()) {
            if let Err(e) = self.schedule().await {
                log::event(
                    "error",
                    json!({ "message": format!("stats alarm: {}", e.message) }),
                );
            }
        }
    }

    /// This object's open sockets, by session, as the liveness rules see them.
    fn socket_views(&self) -> Vec<(String, SocketView)> {
        self.open_members()
            .into_iter()
            .map(|(ws, m)| {
                let view = m.view(runner::last_ping(&self.state, &ws));
                (m.id, view)
            })
            .collect()
    }

    fn open_members(&self) -> Vec<(WebSocket, Member)> {
        runner::attached(&self.state)
    }

    fn awake(&self) -> std::cell::RefMut<'_, Awake> {
        std::cell::RefMut::map(self.awake.borrow_mut(), |awake| {
            awake.get_or_insert_with(|| {
                let members = self.open_members();
                Awake::from_members(members.iter().map(|(_, m)| m))
            })
        })
    }

    /// Runs `f` on the room's state machine over this object's stores.
    fn with_room<T>(
        &self,
        f: impl FnOnce(&mut Room<'_, SqlInbox, RoomSql>) -> std::result::Result<T, RoomError>,
    ) -> std::result::Result<T, ApiError> {
        let config = config(&self.env)?;
        let unavailable = |e: &String| ApiError::unavailable(e.clone());
        let mut history = self.history.as_ref().map_err(unavailable)?.borrow_mut();
        let mut store = self.store.as_ref().map_err(unavailable)?.borrow_mut();
        let mut awake = self.awake();
        let mut room = Room {
            history: &mut *history,
            store: &mut *store,
            awake: &mut awake,
            limits: &config.limits,
            message_id: &|| random_id("msg_"),
        };
        f(&mut room).map_err(|e| ApiError::unavailable(e.to_string()))
    }

    /// This object's shard number, or `None` on the root.
    fn shard_number(&self) -> std::result::Result<Option<u64>, ApiError> {
        match &self.store {
            Ok(store) => store.borrow().shard().map_err(internal_error),
            Err(e) => Err(ApiError::unavailable(e.clone())),
        }
    }

    async fn root_call<T: Serialize>(
        &self,
        room: &str,
        path: &str,
        body: &T,
    ) -> std::result::Result<Response, ApiError> {
        let body = serde_json::to_vec(body).map_err(internal_error)?;
        let root = call::root_stub(&self.env, room)?;
        let response = call::call(root, Method::Post, path, Headers::new(), Some(body)).await?;
        if response.status_code() != 200 {
            return Err(ApiError::unavailable(format!(
                "room root answered {}",
                response.status_code()
            )));
        }
        Ok(response)
    }

    /// The room this object serves (a shard's sockets name it too).
    fn room_name(&self) -> std::result::Result<String, ApiError> {
        let stored = match &self.store {
            Ok(store) => store.borrow().name().map_err(internal_error)?,
            Err(_) => None,
        };
        stored
            .or_else(|| self.open_members().first().map(|(_, m)| m.room.clone()))
            .ok_or_else(|| ApiError::internal("room object without a name"))
    }
}

fn log_join(member: &Member) {
    log::event(
        "room_join",
        json!({ "room": member.room, "user": member.user, "session": member.id, "shard": member.shard }),
    );
}

fn api_to_worker(e: ApiError) -> worker::Error {
    worker::Error::from(e.message)
}

/// The receipts a room publish answers, as the Worker reads them.
#[derive(Deserialize, Serialize)]
pub(crate) struct RoomReceipts {
    pub receipts: Vec<Receipt>,
    pub members: Vec<String>,
}
