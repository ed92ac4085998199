//! The `RoomHub` Durable Object: one per room (the root), plus shard objects named
//! `<room>#<n>` once a room outgrows one object.
//!
//! The root drives [`crate::room::Room`] over its SQLite history and room store and
//! carries out its effects; a shard holds sockets only, checks their frames' size and rate
//! and their liveness with the same rules, forwards everything else to the root, relays
//! what the root fans out, and confirms its sockets to the root at every alarm. Sockets
//! hibernate in both; the plumbing is [`super::runner`]'s.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;

use serde_json::json;
use worker::{
    durable_object, DurableObject, Env, Method, Request, Response, Result, SqlStorage, State,
    WebSocket, WebSocketIncomingMessage,
};

mod routes;
mod send;
mod shard;

use super::runner::{self, Alarm};
use super::sql_inbox::SqlInbox;
use super::sql_room::RoomSql;
use super::stats::ObjectStats;
use super::{
    config, error_response, internal, internal_error, log, logged, now_ms, number_header,
    random_id, required_header,
};
use crate::error::ApiError;
use crate::fanout::{Outgoing, Pace};
use crate::frame::CloseCode;
use crate::inbox::Inbox;
use crate::room::{self, Admission, Arrival, Awake, Member, Room, RoomError};
use crate::socket::SocketView;
use crate::stats::{self, Kind};

#[durable_object]
pub struct RoomHub {
    state: State,
    env: Env,
    /// Root only: the history. Opened (its schema created) on first use, like `store`,
    /// so that a room that only answered a read stores nothing.
    history: OnceCell<std::result::Result<RefCell<SqlInbox>, String>>,
    /// Members, presence, shard sockets (root); the object's identity (both).
    store: OnceCell<std::result::Result<RefCell<RoomSql>, String>>,
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
    /// A project room or the broadcast room, from the name the object is addressed by.
    kind: room::Kind,
}

impl DurableObject for RoomHub {
    fn new(state: State, env: Env) -> Self {
        runner::auto_respond(&state);
        let interval = config(&env).map_or(crate::config::DEFAULT_REPORT_INTERVAL_MS, |c| {
            c.limits.stats_report_ms
        });
        // Every room object is addressed by name, which the runtime passes on.
        let kind = room::Kind::of_object(&state.id().name().unwrap_or_default());
        let counted = match kind {
            room::Kind::Project => Kind::Room,
            room::Kind::Broadcast => Kind::Broadcast,
        };
        Self {
            kind,
            state,
            env,
            history: OnceCell::new(),
            store: OnceCell::new(),
            awake: RefCell::new(None),
            pending: RefCell::new(HashMap::new()),
            outbox: RefCell::new(Vec::new()),
            pace: Cell::new(Pace::default()),
            alarm: Alarm::new(),
            named: Cell::new(false),
            stats: ObjectStats::new(counted, interval),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        // Requests from the Worker name the room; store it once per wake-up, for the
        // alarm and for shard fan-out. A read of a room that has stored nothing answers
        // from nothing and stores nothing.
        let reads =
            req.path() == "/presence" || (req.path() == "/members" && req.method() == Method::Get);
        if !(self.named.get() || reads && self.untouched()) {
            if let (Some(name), Ok(store)) = (req.headers().get(internal::ROOM)?, self.store()) {
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
        answer.or_else(|err| error_response(err.status, err.body()))
    }

    async fn alarm(&self) -> Result<Response> {
        // The runtime retries a failed alarm, silently: say why it failed.
        logged("alarm", self.run_alarm().await.map_err(Into::into))
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        let Some(mut member) = ws.deserialize_attachment::<Member>()? else {
            return ws.close(Some(CloseCode::Internal.code()), Some("lost session state"));
        };
        let config = config(&self.env)?;
        let now = now_ms();
        let effects = match (&message, member.shard) {
            // A shard checks its own sockets' frames, then lets the root decide.
            (_, Some(_)) => {
                self.shard_frame(&ws, &mut member, message, &config.limits, now)
                    .await?
            }
            (WebSocketIncomingMessage::String(text), None) => {
                self.with_room(|room| Ok(room.client_text(&mut member, text, now)))?
            }
            (WebSocketIncomingMessage::Binary(bytes), None) => {
                self.with_room(|room| Ok(room.client_binary(&mut member, bytes.len(), now)))?
            }
        };
        // The frame budget and last frame changed; keep them across hibernation.
        ws.serialize_attachment(&member)?;
        self.execute(Some(&ws), effects).await?;
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
        self.left(&member).await?;
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
                self.shard_alarm(shard, &sockets, &config.limits, now)
                    .await?
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
            .map_err(internal_error)
    }

    /// Sends the stats report if one is due (see [`ObjectStats::tick`]).
    fn report(&self) -> stats::Tick {
        self.stats.tick(&self.state, &self.env, || {
            // A room that stored nothing has nothing to count, and is not made to.
            let stored = match self.untouched() {
                true => None,
                false => self.history().ok(),
            };
            let stored = stored
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
        let mut history = self.history()?.borrow_mut();
        let mut store = self.store()?.borrow_mut();
        let mut awake = self.awake();
        let mut room = Room {
            history: &mut *history,
            store: &mut *store,
            awake: &mut awake,
            limits: &config.limits,
            message_id: &|| random_id("msg_"),
            kind: self.kind,
        };
        f(&mut room).map_err(|e| ApiError::unavailable(e.to_string()))
    }

    /// This object's shard number, or `None` on the root.
    fn shard_number(&self) -> std::result::Result<Option<u64>, ApiError> {
        self.store()?.borrow().shard().map_err(internal_error)
    }

    /// The history, its schema created on first use.
    fn history(&self) -> std::result::Result<&RefCell<SqlInbox>, ApiError> {
        self.opened(&self.history, |sql| {
            SqlInbox::open(sql).map_err(|e| e.to_string())
        })
    }

    /// The room store, its schema created on first use.
    fn store(&self) -> std::result::Result<&RefCell<RoomSql>, ApiError> {
        self.opened(&self.store, |sql| {
            RoomSql::open(sql).map_err(|e| e.to_string())
        })
    }

    /// What `cell` holds, opened over this object's database on first use; a failure to
    /// open is kept and answered as unavailable on every event.
    fn opened<'a, T>(
        &self,
        cell: &'a OnceCell<std::result::Result<RefCell<T>, String>>,
        open: impl FnOnce(SqlStorage) -> std::result::Result<T, String>,
    ) -> std::result::Result<&'a RefCell<T>, ApiError> {
        cell.get_or_init(|| open(self.state.storage().sql()).map(RefCell::new))
            .as_ref()
            .map_err(|e| ApiError::unavailable(e.clone()))
    }

    /// Whether this object has never stored anything: no schema, so no members, history
    /// or sockets.
    fn untouched(&self) -> bool {
        self.store.get().is_none() && !RoomSql::exists(&self.state.storage().sql())
    }

    /// The room this object serves (a shard's sockets name it too).
    fn room_name(&self) -> std::result::Result<String, ApiError> {
        let stored = match self.store() {
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
