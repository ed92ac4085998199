//! The `RoomHub` Durable Object: one per room (the root), plus shard objects once a room
//! outgrows one object.
//!
//! The root owns everything that must be single: the history (an inbox run by
//! [`crate::hub::Hub`] under the room's limits), the member list, presence and the shard
//! counters. It holds up to `ROOM_SHARD_SIZE` sockets itself and hands further upgrades to
//! shard objects named `<room>#<n>`, which hold sockets only: they forward their sockets'
//! events to the root and relay what the root fans out to them. Sockets hibernate in both.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{
    durable_object, Delay, DurableObject, Env, Method, Request, RequestInit, Response, Result,
    State, Stub, WebSocket, WebSocketIncomingMessage, WebSocketPair, WebSocketRequestResponsePair,
};

use super::sql_inbox::SqlInbox;
use super::sql_room::RoomSql;
use super::stats::ObjectStats;
use super::{
    attached, close_reply, config, error_response, internal, internal_error, log, logged, now_ms,
    number_header, random_id, required_header, send_to_all, Alarm,
};
use crate::config::Config;
use crate::error::ApiError;
use crate::fanout::{coalesce, Outgoing, Pace};
use crate::frame::{CloseCode, PresenceAction, ServerFrame};
use crate::hub::{self, Effect, Hub};
use crate::inbox::Inbox;
use crate::model::{Draft, Receipt, Seq};
use crate::room::{self, presence, Member, Placement, RoomFrame, Roster};
use crate::stats::{self, Kind, Sends, Tick};

/// A shard's socket joining, as the root learns of it.
#[derive(Deserialize, Serialize)]
struct ShardJoin {
    member: Member,
    shard: u64,
    since: Option<Seq>,
}

/// A joining socket's first frames, and the latest seq they cover.
#[derive(Deserialize, Serialize)]
struct FirstFrames {
    frames: Vec<ServerFrame>,
    latest: Seq,
}

/// A frame a shard socket sent, for the root to handle.
#[derive(Deserialize, Serialize)]
struct ShardEvent {
    member: Member,
    text: String,
}

#[durable_object]
pub struct RoomHub {
    state: State,
    env: Env,
    /// Root only: the history.
    history: std::result::Result<RefCell<SqlInbox>, String>,
    /// Root only: members, presence, shard counters.
    room: std::result::Result<RoomSql, String>,
    /// Sockets whose first frames are still being prepared (here, or fetched from the
    /// root by a shard), and what was fanned out to them meanwhile: sent after their
    /// first frames, so nothing is lost or overtaken. Lives only across one awaited
    /// call, while the object is awake.
    pending: RefCell<HashMap<String, Vec<Outgoing>>>,
    /// This object's own sockets by session, built on first use after a wake-up.
    roster: RefCell<Option<Roster>>,
    /// Root only: frames gathered for the next fan-out while the room is busy.
    outbox: RefCell<Vec<Outgoing>>,
    /// Root only: whether the room is busy sending.
    pace: Cell<Pace>,
    /// Root only: the alarm at the earliest pending departure or retention deadline.
    alarm: Alarm,
    /// The room's name has been stored since this instance woke.
    named: Cell<bool>,
    /// Counters for `GET /v1/stats` (each shard reports its own sockets and deliveries).
    stats: ObjectStats,
}

impl DurableObject for RoomHub {
    fn new(state: State, env: Env) -> Self {
        if let Ok(pair) = WebSocketRequestResponsePair::new("ping", "pong") {
            state.set_websocket_auto_response(&pair);
        }
        let sql = state.storage().sql();
        let history = SqlInbox::open(sql.clone())
            .map(RefCell::new)
            .map_err(|e| e.to_string());
        let room = RoomSql::open(sql).map_err(|e| e.to_string());
        let interval = config(&env).map_or(crate::config::DEFAULT_REPORT_INTERVAL_MS, |c| {
            c.limits.stats_report_ms
        });
        Self {
            state,
            env,
            history,
            room,
            pending: RefCell::new(HashMap::new()),
            roster: RefCell::new(None),
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
            if let (Some(name), Ok(room)) = (req.headers().get(internal::ROOM)?, &self.room) {
                room.set_name(&name)?;
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
            ("/fanout", _) => self.fanout(req).await,
            _ => Err(ApiError::new(404, "not_found", "no such room route")),
        };
        self.settle_report().await;
        answer.or_else(|err| error_response(&err))
    }

    async fn alarm(&self) -> Result<Response> {
        // The runtime retries a failed alarm, silently: say why it failed.
        logged("alarm", self.run_alarm().await)
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        let Some(mut member) = ws.deserialize_attachment::<Member>()? else {
            return ws.close(Some(CloseCode::Internal.code()), Some("lost session state"));
        };
        let config = self.config().map_err(api_to_worker)?;
        // Binary frames count against the same size and rate limits as text.
        let size = match &message {
            WebSocketIncomingMessage::String(text) => text.len(),
            WebSocketIncomingMessage::Binary(bytes) => bytes.len(),
        };
        if let Some(Effect::Close { code, reason }) =
            hub::admit(&mut member.budget, &config.limits, size, now_ms())
        {
            let _ = ws.send_with_str(ServerFrame::error("closing", reason.as_str()).to_json());
            return ws.close(Some(code.code()), Some(reason));
        }
        ws.serialize_attachment(&member)?;
        let WebSocketIncomingMessage::String(text) = message else {
            let reply = ServerFrame::error("bad_frame", "binary frames are not supported");
            return ws.send_with_str(reply.to_json());
        };
        let replies = if self.is_shard(&member) {
            let event = ShardEvent { member, text };
            let mut answer = self
                .root_call("/shard-event", &event)
                .await
                .map_err(api_to_worker)?;
            answer.json::<Vec<ServerFrame>>().await?
        } else {
            self.handle_frame(&member, &text)
                .await
                .map_err(api_to_worker)?
        };
        for reply in replies {
            let sent = ws.send_with_str(reply.to_json()).is_ok();
            self.stats
                .sent(&self.state, stats::items(&reply), Sends::one(sent));
        }
        self.settle_report().await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        let _ = ws.close(Some(close_reply(code)), Some("closing"));
        let Some(member) = ws.deserialize_attachment::<Member>().ok().flatten() else {
            return Ok(());
        };
        self.roster().remove(&member.id);
        // One connection fewer.
        self.stats.touch();
        if self.is_shard(&member) {
            self.root_call("/shard-leave", &member)
                .await
                .map_err(api_to_worker)?;
        } else {
            self.leave(&member).await.map_err(api_to_worker)?;
        }
        self.settle_report().await;
        Ok(())
    }
}

impl RoomHub {
    /// The alarm's work: sweeps, releases and retention, then the next alarm.
    async fn run_alarm(&self) -> Result<Response> {
        self.alarm.fired();
        let now = now_ms();
        let room = self.room().map_err(api_to_worker)?;
        let online = self.online_users().map_err(api_to_worker)?;
        let leaving = room.leaving()?;
        let mut out = Vec::new();
        for user in presence::due(&leaving, &online, now) {
            out.push(Outgoing::to_all(presence_frame(PresenceAction::Left, user)));
        }
        for (user, at) in &leaving {
            if *at <= now {
                room.set_leaving(user, None)?;
            }
        }
        let limits = self.config().map_err(api_to_worker)?.limits.for_room();
        self.with_hub(&limits, |hub| hub.alarm(now).map_err(hub::HubError::from))
            .map_err(api_to_worker)?;
        self.broadcast(out).await.map_err(api_to_worker)?;
        self.report();
        self.schedule().await.map_err(api_to_worker)?;
        Response::ok("done")
    }

    /// Root: a socket arrives. It stays here while there is room, else it is handed to
    /// a shard object, whose answer (the 101) goes back as is.
    async fn accept_member(&self, req: Request) -> std::result::Result<Response, ApiError> {
        let config = self.config()?;
        let room = self.room()?;
        let name = required_header(&req, internal::ROOM)?;
        let placement = room::place(
            self.roster().sockets(),
            room.counter("sent_to_shards").map_err(internal_error)?,
            config.limits.room_shard_size,
        );
        if let Placement::Shard(n) = placement {
            room.set_counter(
                "sent_to_shards",
                room.counter("sent_to_shards").map_err(internal_error)? + 1,
            )
            .map_err(internal_error)?;
            let shards = room.counter("shards").map_err(internal_error)?.max(n);
            room.set_counter("shards", shards).map_err(internal_error)?;
            let headers = req.headers().clone();
            headers
                .set(internal::SHARD, &n.to_string())
                .map_err(internal_error)?;
            let mut init = RequestInit::new();
            init.with_headers(headers);
            let forwarded =
                Request::new_with_init(&format!("{}/connect", internal::HUB_ORIGIN), &init)
                    .map_err(internal_error)?;
            return shard_stub(&self.env, &name, n)?
                .fetch_with_request(forwarded)
                .await
                .map_err(|e| ApiError::unavailable(format!("room shard: {e}")));
        }
        let member = new_member(&req, config)?;
        let since = number_header(&req, internal::SINCE)?;
        let (pair, server) = self.accept(&member)?;
        let welcome = self.join(&member, since, config).await;
        self.send_first(&server, &member, welcome)?;
        upgrade(&req, pair)
    }

    /// Takes a member's socket into this object. Until [`Self::send_first`], frames fanned
    /// out to it wait in `pending`.
    fn accept(&self, member: &Member) -> std::result::Result<(WebSocketPair, WebSocket), ApiError> {
        let (pair, server) = socket_pair()?;
        self.pending
            .borrow_mut()
            .insert(member.id.clone(), Vec::new());
        // Tagged with the session, so a fan-out can find the one socket to skip or hold
        // without reading every socket's attachment.
        self.state
            .accept_websocket_with_tags(&server, &[member.id.as_str()]);
        server
            .serialize_attachment(member)
            .map_err(internal_error)?;
        self.roster().add(&member.id, &member.user);
        // One connection more.
        self.stats.touch();
        Ok((pair, server))
    }

    /// Sends a joining socket its first frames, then what was fanned out meanwhile that
    /// they did not already cover.
    fn send_first(
        &self,
        server: &WebSocket,
        member: &Member,
        first: std::result::Result<FirstFrames, ApiError>,
    ) -> std::result::Result<(), ApiError> {
        let waiting = self
            .pending
            .borrow_mut()
            .remove(&member.id)
            .unwrap_or_default();
        let first = first?;
        let waiting: Vec<ServerFrame> = waiting
            .iter()
            .filter_map(|out| out.after(first.latest))
            .map(|out| out.frame)
            .collect();
        for frame in first.frames.iter().chain(&waiting) {
            server
                .send_with_str(frame.to_json())
                .map_err(internal_error)?;
            self.stats
                .sent(&self.state, stats::items(frame), Sends::one(true));
        }
        Ok(())
    }

    /// Shard: a socket handed over by the root. Its first frames come from the root;
    /// whatever is fanned out meanwhile waits in `pending` and follows them.
    async fn shard_connect(&self, req: Request) -> std::result::Result<Response, ApiError> {
        let config = self.config()?;
        let shard = required_header(&req, internal::SHARD)?
            .parse::<u64>()
            .map_err(|_| ApiError::internal("bad shard header"))?;
        let mut member = new_member(&req, config)?;
        member.shard = Some(shard);
        let since = number_header(&req, internal::SINCE)?;
        let (pair, server) = self.accept(&member)?;
        let join = ShardJoin {
            member: member.clone(),
            shard,
            since,
        };
        let welcome = match self.root_call("/shard-join", &join).await {
            Ok(mut answer) => answer.json().await.map_err(internal_error),
            Err(e) => Err(e),
        };
        self.send_first(&server, &member, welcome)?;
        upgrade(&req, pair)
    }

    /// Root: the first frames of a member (here or on a shard): welcome, who is online,
    /// any replay; and `joined` for everyone else unless the user was already present.
    async fn join(
        &self,
        member: &Member,
        since: Option<Seq>,
        config: &Config,
    ) -> std::result::Result<FirstFrames, ApiError> {
        let room = self.room()?;
        let now = now_ms();
        let already_online = self.present_elsewhere(member)?;
        let leaving = room
            .leaving()
            .map_err(internal_error)?
            .iter()
            .any(|(u, _)| *u == member.user);
        let announce = presence::announce_join(already_online, leaving);
        // Coming back cancels the departure. A write holds the answer until it is on
        // disk, so only write when there is one.
        if leaving {
            room.set_leaving(&member.user, None)
                .map_err(internal_error)?;
        }
        let limits = config.limits.for_room();
        let (latest, replay) = self.with_hub(&limits, |hub| {
            let latest = hub.inbox.latest_seq()?;
            let replay = match since {
                Some(since) => hub.replay(since, now)?,
                None => Vec::new(),
            };
            Ok((latest, replay))
        })?;
        let mut online: BTreeSet<String> = self.online_users()?.into_iter().collect();
        online.insert(member.user.clone());
        let mut frames = vec![
            ServerFrame::Welcome {
                user: member.user.clone(),
                room: Some(member.room.clone()),
                session: member.id.clone(),
                device: None,
                seq: latest,
                unread_count: 0,
                heartbeat_ms: config.limits.heartbeat_ms,
            },
            ServerFrame::Presence {
                action: PresenceAction::Online,
                user: None,
                users: Some(online.into_iter().collect()),
            },
        ];
        frames.extend(replay);
        if announce {
            let joined = presence_frame(PresenceAction::Joined, &member.user);
            self.broadcast(vec![Outgoing::to_others(joined, &member.id)])
                .await?;
        }
        self.schedule().await?;
        log::event(
            "room_join",
            json!({ "room": member.room, "user": member.user, "session": member.id, "shard": member.shard }),
        );
        Ok(FirstFrames { frames, latest })
    }

    /// Root: a member's socket closed. If the user has no other socket, `left` is
    /// announced once the grace period passes without a return (the alarm does that).
    async fn leave(&self, member: &Member) -> std::result::Result<(), ApiError> {
        let config = self.config()?;
        let still_online = self.present_elsewhere(member)?;
        if let Some(at) =
            presence::leave_deadline(still_online, now_ms(), config.limits.room_presence_grace_ms)
        {
            self.room()?
                .set_leaving(&member.user, Some(at))
                .map_err(internal_error)?;
            self.schedule().await?;
        }
        Ok(())
    }

    /// Root: one frame from a member, wherever its socket lives. Returns the replies for
    /// that socket; everything for the room is broadcast from here.
    async fn handle_frame(
        &self,
        member: &Member,
        text: &str,
    ) -> std::result::Result<Vec<ServerFrame>, ApiError> {
        let frame = match serde_json::from_str::<RoomFrame>(text) {
            Ok(frame) => frame,
            Err(e) => {
                return Ok(vec![ServerFrame::error(
                    "bad_frame",
                    format!("not a frame this server understands: {e}"),
                )])
            }
        };
        let now = now_ms();
        let limits = self.config()?.limits.for_room();
        match frame {
            RoomFrame::Ping => Ok(vec![ServerFrame::Pong]),
            RoomFrame::Resume { since } => {
                self.with_hub(&limits, |hub| Ok(hub.replay(since, now)?))
            }
            RoomFrame::Typing => {
                let typing = ServerFrame::Typing {
                    user: member.user.clone(),
                };
                self.broadcast(vec![Outgoing::to_others(typing, &member.id)])
                    .await?;
                Ok(Vec::new())
            }
            RoomFrame::Publish { .. } if !member.can_write => Ok(vec![ServerFrame::error(
                "forbidden",
                format!("publishing to a room needs the {} scope", room::WRITE_SCOPE),
            )]),
            RoomFrame::Publish {
                event,
                title,
                body,
                data,
            } => {
                let draft =
                    match RoomFrame::draft(member, random_id("msg_"), event, title, body, data) {
                        Ok(draft) => draft,
                        Err(e) => {
                            return Ok(vec![ServerFrame::error("bad_request", e.to_string())])
                        }
                    };
                let (_, effects) =
                    self.with_hub(&limits, |hub| Ok(hub.publish(vec![draft], now)?))?;
                self.stats.touch();
                let out = effects
                    .into_iter()
                    .filter_map(|effect| match effect {
                        Effect::Broadcast(ServerFrame::Notification(n)) => {
                            Some(Outgoing::to_all(ServerFrame::Message(n)))
                        }
                        _ => None,
                    })
                    .collect();
                self.broadcast(out).await?;
                Ok(Vec::new())
            }
        }
    }

    /// Root: a producer's room publish. Stores in history, fans out, and answers the
    /// receipts with the member list (for `inbox:true`, which the Worker files).
    async fn publish(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let drafts: Vec<Draft> = req
            .json()
            .await
            .map_err(|e| ApiError::new(400, "bad_request", e.to_string()))?;
        let limits = self.config()?.limits.for_room();
        let (receipts, effects) =
            self.with_hub(&limits, |hub| Ok(hub.publish(drafts, now_ms())?))?;
        if receipts.iter().any(|r| !r.duplicate) {
            self.stats.touch();
        }
        let out = effects
            .into_iter()
            .filter_map(|effect| match effect {
                Effect::Broadcast(frame @ ServerFrame::Notification(_)) => {
                    Some(Outgoing::to_all(frame))
                }
                _ => None,
            })
            .collect();
        self.broadcast(out).await?;
        self.schedule().await?;
        // Only a publish that files in members' inboxes needs the list.
        let members = match req.headers().has(internal::MEMBERS).unwrap_or(false) {
            true => self.room()?.members().map_err(internal_error)?,
            false => Vec::new(),
        };
        Response::from_json(&json!({ "receipts": receipts, "members": members }))
            .map_err(internal_error)
    }

    fn presence(&self) -> std::result::Result<Response, ApiError> {
        Response::from_json(&json!({ "users": self.online_users()? })).map_err(internal_error)
    }

    async fn members(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let room = self.room()?;
        if req.method() == Method::Put {
            let members: Vec<String> = req
                .json()
                .await
                .map_err(|e| ApiError::new(400, "bad_request", e.to_string()))?;
            room.set_members(&members).map_err(internal_error)?;
        }
        Response::from_json(&json!({ "members": room.members().map_err(internal_error)? }))
            .map_err(internal_error)
    }

    async fn shard_join(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let join: ShardJoin = req.json().await.map_err(internal_error)?;
        let config = self.config()?;
        let welcome = self.join(&join.member, join.since, config).await?;
        self.room()?
            .add_remote(&join.member.id, &join.member.user, join.shard)
            .map_err(internal_error)?;
        Response::from_json(&welcome).map_err(internal_error)
    }

    async fn shard_leave(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let member: Member = req.json().await.map_err(internal_error)?;
        self.room()?
            .remove_remote(&member.id)
            .map_err(internal_error)?;
        self.leave(&member).await?;
        Response::ok("left").map_err(internal_error)
    }

    async fn shard_event(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let event: ShardEvent = req.json().await.map_err(internal_error)?;
        let replies = self.handle_frame(&event.member, &event.text).await?;
        Response::from_json(&replies).map_err(internal_error)
    }

    /// Shard: frames the root fans out, for this object's sockets.
    async fn fanout(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let frames: Vec<Outgoing> = req.json().await.map_err(internal_error)?;
        self.send_local(&frames);
        Response::ok("sent").map_err(internal_error)
    }

    /// Root: sends to every socket of the room, here and on every shard. In a busy room
    /// (see [`Pace`]) the caller that finds the outbox empty waits a moment, then sends
    /// everything gathered meanwhile, runs of notifications packed into one `batch`;
    /// callers that find it filling leave their frames to that one.
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
        pace.sent(now_ms(), self.roster().sockets());
        self.pace.set(pace);
        self.send_local(&frames);
        self.send_to_shards(&frames).await
    }

    async fn send_to_shards(&self, frames: &[Outgoing]) -> std::result::Result<(), ApiError> {
        let shards = self.room()?.counter("shards").map_err(internal_error)?;
        if shards == 0 {
            return Ok(());
        }
        let name = self.room_name()?;
        let body = serde_json::to_string(frames).map_err(internal_error)?;
        let calls = (1..=shards).map(|n| {
            let body = body.clone();
            let name = name.clone();
            async move {
                let mut init = RequestInit::new();
                init.with_method(Method::Post).with_body(Some(body.into()));
                let req =
                    Request::new_with_init(&format!("{}/fanout", internal::HUB_ORIGIN), &init)?;
                shard_stub(&self.env, &name, n)
                    .map_err(|e| worker::Error::from(e.message))?
                    .fetch_with_request(req)
                    .await
            }
        });
        for result in join_all(calls).await {
            if let Err(e) = result {
                log::event(
                    "error",
                    json!({ "room": name, "message": format!("fan-out: {e}") }),
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
                let sends = send_to_all(&self.state, text);
                self.stats
                    .sent(&self.state, stats::items(&out.frame), sends);
            }
            return;
        }
        let tagged = |session: &str| self.state.get_websockets_with_tag(session).pop();
        let held: Vec<(String, WebSocket)> = pending
            .keys()
            .filter_map(|session| Some((session.clone(), tagged(session)?)))
            .collect();
        let skipped: Vec<Option<WebSocket>> = frames
            .iter()
            .map(|out| out.except.as_deref().and_then(tagged))
            .collect();
        let same = |a: &WebSocket, b: &WebSocket| {
            AsRef::<worker::wasm_bindgen::JsValue>::as_ref(a.as_ref())
                == AsRef::<worker::wasm_bindgen::JsValue>::as_ref(b.as_ref())
        };
        for ws in self.state.get_websockets() {
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

    /// Root: the alarm goes to the earliest of retention and pending departures.
    async fn schedule(&self) -> std::result::Result<(), ApiError> {
        let limits = self.config()?.limits.for_room();
        let now = now_ms();
        let retention = self.with_hub(&limits, |hub| Ok(hub.next_deadline(&[], now)?))?;
        let leaving = self.room()?.leaving().map_err(internal_error)?;
        let next = leaving
            .iter()
            .map(|(_, at)| *at)
            .chain(retention)
            .chain(self.stats.deadline())
            .min();
        self.alarm
            .set(&self.state, next)
            .await
            .map(|_| ())
            .map_err(internal_error)
    }

    /// Sends the stats report if one is due (see [`ObjectStats::tick`]).
    fn report(&self) -> Tick {
        self.stats.tick(&self.state, &self.env, || {
            let stored = self
                .history
                .as_ref()
                .ok()
                .and_then(|cell| cell.borrow().latest_seq().ok())
                .unwrap_or(0);
            (self.roster().sockets() as u64, stored)
        })
    }

    /// At the end of an event: reports if due, and moves the alarm for a report that has
    /// to wait, unless it already comes in time. A failure costs a late report only.
    async fn settle_report(&self) {
        if self.alarm.must_move_for(self.report()) {
            if let Err(e) = self.schedule().await {
                log::event(
                    "error",
                    json!({ "message": format!("stats alarm: {}", e.message) }),
                );
            }
        }
    }

    /// Root: whether the member's user has a socket besides this one, here or on a shard:
    /// a join then announces nobody, and a leave starts no departure.
    fn present_elsewhere(&self, member: &Member) -> std::result::Result<bool, ApiError> {
        if self.roster().has_other(&member.user, &member.id) {
            return Ok(true);
        }
        self.room()?
            .remote_user_present(&member.user)
            .map_err(internal_error)
    }

    /// Distinct users with an open socket here or (for the root) on any shard.
    fn online_users(&self) -> std::result::Result<Vec<String>, ApiError> {
        let mut users: BTreeSet<String> = self.roster().users().map(str::to_owned).collect();
        if let Ok(room) = &self.room {
            users.extend(room.remote_users().map_err(internal_error)?);
        }
        Ok(users.into_iter().collect())
    }

    fn roster(&self) -> RefMut<'_, Roster> {
        RefMut::map(self.roster.borrow_mut(), |roster| {
            roster.get_or_insert_with(|| {
                let mut fresh = Roster::default();
                for (_, member) in self.open_members() {
                    fresh.add(&member.id, &member.user);
                }
                fresh
            })
        })
    }

    fn open_members(&self) -> Vec<(WebSocket, Member)> {
        attached(&self.state)
    }

    fn is_shard(&self, member: &Member) -> bool {
        member.shard.is_some()
    }

    async fn root_call<T: Serialize>(
        &self,
        path: &str,
        body: &T,
    ) -> std::result::Result<Response, ApiError> {
        let name = self.room_name()?;
        let mut init = RequestInit::new();
        let text = serde_json::to_string(body).map_err(internal_error)?;
        init.with_method(Method::Post).with_body(Some(text.into()));
        let req = Request::new_with_init(&format!("{}{path}", internal::HUB_ORIGIN), &init)
            .map_err(internal_error)?;
        let response = root_stub(&self.env, &name)?
            .fetch_with_request(req)
            .await
            .map_err(|e| ApiError::unavailable(format!("room root: {e}")))?;
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
        let stored = self.room()?.name().map_err(internal_error)?;
        stored
            .or_else(|| self.open_members().first().map(|(_, m)| m.room.clone()))
            .ok_or_else(|| ApiError::internal("room object without a name"))
    }

    fn with_hub<T>(
        &self,
        limits: &crate::config::Limits,
        f: impl FnOnce(&mut Hub<'_, SqlInbox>) -> std::result::Result<T, hub::HubError>,
    ) -> std::result::Result<T, ApiError> {
        let cell = self
            .history
            .as_ref()
            .map_err(|e| ApiError::unavailable(e.clone()))?;
        let mut inbox = cell.borrow_mut();
        let mut hub = Hub {
            inbox: &mut *inbox,
            limits,
        };
        f(&mut hub).map_err(ApiError::from)
    }

    fn room(&self) -> std::result::Result<&RoomSql, ApiError> {
        self.room
            .as_ref()
            .map_err(|e| ApiError::unavailable(e.clone()))
    }

    fn config(&self) -> std::result::Result<&'static Config, ApiError> {
        config(&self.env)
    }
}

fn presence_frame(action: PresenceAction, user: &str) -> ServerFrame {
    ServerFrame::Presence {
        action,
        user: Some(user.to_owned()),
        users: None,
    }
}

fn new_member(req: &Request, config: &Config) -> std::result::Result<Member, ApiError> {
    let now = now_ms();
    Ok(Member {
        user: required_header(req, internal::USER)?,
        id: random_id("ses_"),
        room: required_header(req, internal::ROOM)?,
        can_write: req.headers().has(internal::WRITE).unwrap_or(false),
        connected_at: now,
        budget: hub::FrameBudget::full(&config.limits, now),
        shard: None,
    })
}

fn socket_pair() -> std::result::Result<(WebSocketPair, WebSocket), ApiError> {
    let pair = WebSocketPair::new().map_err(internal_error)?;
    let server = pair.server.clone();
    Ok((pair, server))
}

fn upgrade(req: &Request, pair: WebSocketPair) -> std::result::Result<Response, ApiError> {
    let mut response = Response::from_websocket(pair.client).map_err(internal_error)?;
    if let Some(protocol) = req.headers().get(internal::PROTOCOL).ok().flatten() {
        response
            .headers_mut()
            .set("Sec-WebSocket-Protocol", &protocol)
            .map_err(internal_error)?;
    }
    Ok(response)
}

pub(crate) fn root_stub(env: &Env, room: &str) -> std::result::Result<Stub, ApiError> {
    env.durable_object("ROOM_HUB")
        .and_then(|ns| ns.get_by_name(room))
        .map_err(internal_error)
}

fn shard_stub(env: &Env, room: &str, n: u64) -> std::result::Result<Stub, ApiError> {
    root_stub(env, &format!("{room}#{n}"))
}

fn api_to_worker(e: ApiError) -> worker::Error {
    worker::Error::from(e.message)
}

/// The receipts a room publish answers, as the Worker reads them.
#[derive(Deserialize)]
pub(crate) struct RoomReceipts {
    pub receipts: Vec<Receipt>,
    pub members: Vec<String>,
}
