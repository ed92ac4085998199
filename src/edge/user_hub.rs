//! The `UserHub` Durable Object: one per user, holding every device's socket and the
//! user's inbox.
//!
//! Sockets are accepted through the hibernation API, so the object can be evicted while
//! they stay open; everything per socket lives in its attachment and everything else in
//! SQLite, and in-memory state is only a cache rebuilt on the next event. The literal
//! `ping` is answered by the runtime's auto-response, so a heartbeat never wakes the object.
//! Decisions are made by [`crate::hub::Hub`]; this file carries out its effects and keeps
//! the object's single alarm at the hub's next deadline.

use std::cell::{RefCell, RefMut};

use serde_json::json;
use worker::{
    durable_object, DurableObject, Env, Method, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage,
};

mod routes;

use super::runner::{self, attached, send_to_all, Alarm};
use super::sql_inbox::SqlInbox;
use super::stats::ObjectStats;
use super::{
    config, header, internal, internal_error, log, logged, now_ms, number_header, random_id,
    required_header,
};
use crate::config::Config;
use crate::error::ApiError;
use crate::frame::{CloseCode, ServerFrame};
use crate::history::Replay;
use crate::hub::{self, Admission, Arrival, Effect, Hub, HubError, Release, Session};
use crate::inbox::{Inbox, InboxError};
use crate::model::Notification;
use crate::socket::SocketView;
use crate::stats::{self, Kind, Sends, Tick};

#[durable_object]
pub struct UserHub {
    state: State,
    env: Env,
    /// Opened once per wake-up; an error here is answered on every event instead of
    /// panicking in the constructor.
    inbox: std::result::Result<RefCell<SqlInbox>, InboxError>,
    /// The object's one alarm, set at the hub's next deadline.
    alarm: Alarm,
    /// Counters for `GET /v1/stats`, reported now and then.
    stats: ObjectStats,
}

impl DurableObject for UserHub {
    fn new(state: State, env: Env) -> Self {
        runner::auto_respond(&state);
        let inbox = SqlInbox::open(state.storage().sql()).map(RefCell::new);
        log::event(
            "hub_wake",
            json!({ "sockets": state.get_websockets().len() }),
        );
        let interval = config(&env).map_or(crate::config::DEFAULT_REPORT_INTERVAL_MS, |c| {
            c.limits.stats_report_ms
        });
        Self {
            state,
            env,
            inbox,
            alarm: Alarm::new(),
            stats: ObjectStats::new(Kind::UserHub, interval),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let path = req.path();
        let answer = match path.as_str() {
            "/connect" => self.accept_device(&req),
            "/publish" => self.store(req).await,
            "/notifications" => self.list(&req),
            "/read" => self.mark_read(req).await,
            "/delete" => self.delete(&req),
            "/preferences" if req.method() == Method::Put => self.put_preferences(req).await,
            "/preferences" => self.get_preferences(),
            _ => Err(ApiError::new(404, "not_found", "no such hub route")),
        };
        let answer = match answer {
            Ok(response) => {
                self.report();
                let sockets = match path.as_str() {
                    "/connect" => Sockets::Changed,
                    _ => Sockets::Unchanged,
                };
                self.schedule(sockets).await.map(|()| response)
            }
            Err(err) => Err(err),
        };
        answer.or_else(|err| super::error_response(err.status, err.body()))
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
        let Some(mut session) = ws.deserialize_attachment::<Session>()? else {
            return ws.close(Some(CloseCode::Internal.code()), Some("lost session state"));
        };
        let effects = match (self.inbox(), self.config()) {
            (Ok(mut inbox), Ok(config)) => {
                let mut hub = Hub {
                    inbox: &mut *inbox,
                    limits: &config.limits,
                };
                match message {
                    WebSocketIncomingMessage::String(text) => {
                        hub.client_text(&mut session, &text, now_ms())
                    }
                    WebSocketIncomingMessage::Binary(bytes) => {
                        hub.client_binary(&mut session, bytes.len(), now_ms())
                    }
                }
            }
            (Err(e), _) => return self.fail(&ws, &e.to_string()),
            (_, Err(e)) => return self.fail(&ws, &e.message),
        };
        // The frame budget and ack changed; keep them with the socket across hibernation.
        ws.serialize_attachment(&session)?;
        // New preferences (a focus frame) move deadlines; nothing else a client sends does
        // in a way the alarm would not catch up with.
        let moved = effects
            .iter()
            .any(|e| matches!(e, Effect::Broadcast(ServerFrame::Preferences(_))));
        self.apply(Some((&ws, &session)), effects);
        if self.report_needs_alarm() || moved {
            self.schedule(Sockets::Changed).await?;
        }
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        let session = ws.deserialize_attachment::<Session>().ok().flatten();
        log::event(
            "close",
            json!({
                "user": session.as_ref().map(|s| &s.user),
                "session": session.as_ref().map(|s| &s.id),
                "code": code,
            }),
        );
        runner::finish_close(&ws, code);
        if let Some(session) = &session {
            self.forget(session);
        }
        // One connection fewer.
        self.stats.touch();
        if self.report_needs_alarm() {
            self.schedule(Sockets::Changed).await?;
        }
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, error: worker::Error) -> Result<()> {
        let session = ws.deserialize_attachment::<Session>().ok().flatten();
        runner::socket_error(session.as_ref().map(|s| (&s.user, &s.id)), &error);
        Ok(())
    }
}

/// Whether the event being handled opened, closed or heard from a socket, which may move
/// the socket deadlines in the hub's timer table.
#[derive(Clone, Copy)]
enum Sockets {
    Changed,
    Unchanged,
}

impl UserHub {
    /// The alarm's work: sweeps, releases and retention, then the next alarm.
    async fn run_alarm(&self) -> Result<Response> {
        let now = now_ms();
        let late = self.alarm.fired().map(|due| now.saturating_sub(due));
        log::event("alarm", json!({ "late_ms": late }));
        let config = self.config()?;
        let effects = {
            let mut inbox = self
                .inbox()
                .map_err(|e| worker::Error::from(e.to_string()))?;
            let mut hub = Hub {
                inbox: &mut *inbox,
                limits: &config.limits,
            };
            for (ws, session) in self.open_sockets() {
                let view = session.view(runner::last_ping(&self.state, &ws));
                if let Some((code, reason)) = hub.liveness(&view, now) {
                    // A silent socket may never answer the close, so its close event
                    // may never come: forget its session now.
                    if let Err(e) = hub.close(&session) {
                        log::event("error", json!({ "message": e.to_string() }));
                    }
                    self.apply(
                        Some((&ws, &session)),
                        vec![Effect::Close {
                            code,
                            reason: reason.to_owned(),
                        }],
                    );
                }
            }
            hub.alarm(now)
                .map_err(|e: InboxError| worker::Error::from(e.to_string()))?
        };
        self.apply(None, effects);
        self.report();
        self.schedule(Sockets::Changed).await?;
        Response::ok("done")
    }

    /// Accepts a device's socket (replaying after `since` if asked), or refuses it with a
    /// close code the client can act on.
    fn accept_device(&self, req: &Request) -> std::result::Result<Response, ApiError> {
        let user = required_header(req, internal::USER)?;
        let device = header(req.headers(), internal::DEVICE);
        let arrival = Arrival {
            user: user.clone(),
            session_id: random_id("ses_"),
            device,
            since: number_header(req, internal::SINCE)?,
            token_exp: number_header(req, internal::EXP)?,
        };
        let since = arrival.since;
        let config = self.config()?;
        let open_sockets = self.open_sockets().len();
        let admission = self.with_hub(config, |hub| {
            hub.connect(arrival, open_sockets, now_ms())
                .map_err(hub::HubError::from)
        })?;

        let (pair, server) = runner::socket_pair()?;
        match admission {
            Admission::Welcome {
                session,
                welcome,
                replay,
            } => {
                runner::accept(&self.state, &server, &session.id, &session, &self.stats)?;
                runner::send(&self.state, &self.stats, &server, &welcome)
                    .map_err(internal_error)?;
                if let Some(replay) = replay {
                    self.send_replay(&server, replay).map_err(internal_error)?;
                }
                log::event(
                    "connect",
                    json!({
                        "user": user,
                        "session": session.id,
                        "device": session.device,
                        "since": since,
                        "sockets": open_sockets + 1,
                    }),
                );
            }
            Admission::Refused { code, frame } => {
                runner::refuse(&server, &frame, code)?;
                log::event(
                    "connect_refused",
                    json!({ "user": user, "code": code.code(), "sockets": open_sockets }),
                );
            }
        }
        runner::upgrade(req, pair)
    }

    /// Runs `f` on the core over this object's inbox.
    fn with_hub<T>(
        &self,
        config: &Config,
        f: impl FnOnce(&mut Hub<'_, SqlInbox>) -> std::result::Result<T, hub::HubError>,
    ) -> std::result::Result<T, ApiError> {
        let mut inbox = self
            .inbox()
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        let mut hub = Hub {
            inbox: &mut *inbox,
            limits: &config.limits,
        };
        f(&mut hub).map_err(ApiError::from)
    }

    /// Keeps the alarm at the hub's next deadline after an event that may have moved it.
    async fn schedule(&self, sockets: Sockets) -> std::result::Result<(), ApiError> {
        let config = self.config()?;
        // Once this instance has set the alarm, it is no later than every socket's
        // deadline, and those only move later (a ping) until a socket event: an event that
        // touched no socket need not read them (a publish, a REST read).
        let sockets: Vec<SocketView> = match (sockets, self.alarm.known()) {
            (Sockets::Unchanged, true) => Vec::new(),
            _ => self
                .open_sockets()
                .iter()
                .map(|(ws, session)| session.view(runner::last_ping(&self.state, ws)))
                .collect(),
        };
        let timers = self.with_hub(config, |hub| {
            hub.timers(&sockets, now_ms()).map_err(hub::HubError::from)
        })?;
        runner::schedule(&self.state, &self.alarm, &self.stats, timers)
            .await
            .map_err(internal_error)
    }

    /// Sends the stats report if one is due (see [`ObjectStats::tick`]).
    fn report(&self) -> Tick {
        self.stats.tick(&self.state, &self.env, || {
            let stored = self
                .inbox()
                .ok()
                .and_then(|inbox| inbox.latest_seq().ok())
                .unwrap_or(0);
            (self.open_sockets().len() as u64, stored)
        })
    }

    /// After an event that does not otherwise reschedule: reports if due, and tells
    /// whether a report that has to wait needs the alarm moved for it.
    fn report_needs_alarm(&self) -> bool {
        self.alarm.must_move_for(self.report())
    }

    /// The user's sockets that are open (not closing), with their sessions.
    fn open_sockets(&self) -> Vec<(WebSocket, Session)> {
        attached(&self.state)
    }

    /// Carries out effects for an event that arrived on `origin`'s socket, if any.
    fn apply(&self, origin: Option<(&WebSocket, &Session)>, effects: Vec<Effect>) {
        for effect in effects {
            let result = match (effect, origin) {
                (Effect::Broadcast(frame), _) => {
                    let sends = send_to_all(&self.state, &frame.to_json());
                    self.stats.sent(&self.state, stats::items(&frame), sends);
                    Ok(())
                }
                (Effect::Release(release), _) => self.release(release),
                (Effect::Dropped(count), _) => {
                    self.stats.dropped(&self.state, count);
                    Ok(())
                }
                (Effect::Reply(frame), Some((ws, _))) => {
                    runner::send(&self.state, &self.stats, ws, &frame)
                }
                (Effect::Replay(replay), Some((ws, _))) => self.send_replay(ws, replay),
                (Effect::Close { code, reason }, Some((ws, session))) => {
                    log::event(
                        "close",
                        json!({ "user": session.user, "session": session.id, "code": code.code(), "reason": reason }),
                    );
                    runner::close(ws, code, &reason)
                }
                (Effect::Reply(_) | Effect::Replay(_) | Effect::Close { .. }, None) => Ok(()),
            };
            if let Err(e) = result {
                log::event("error", json!({ "message": e.to_string() }));
            }
        }
    }

    /// Sends `replay` to `ws` one slice at a time, so that only one slice of the inbox is
    /// in memory however much the resume covers. A storage failure midway is told to the
    /// socket; the client resumes again from what it got.
    fn send_replay(&self, ws: &WebSocket, mut replay: Replay) -> Result<()> {
        let inbox = self
            .inbox()
            .map_err(|e| worker::Error::from(e.to_string()))?;
        loop {
            match replay.next(&*inbox, now_ms()) {
                Ok(Some(frames)) => {
                    for frame in &frames {
                        runner::send(&self.state, &self.stats, ws, frame)?;
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    runner::send(
                        &self.state,
                        &self.stats,
                        ws,
                        &HubError::from(e.clone()).frame(),
                    )?;
                    return Err(worker::Error::from(e.to_string()));
                }
            }
        }
    }

    /// Sends released held items to each socket, less what its replays already sent it, in
    /// frames of bounded size, one slice of the inbox at a time. Held items go out rarely,
    /// so sockets are visited one by one.
    fn release(&self, mut release: Release) -> Result<()> {
        let config = self.config().map_err(|e| worker::Error::from(e.message))?;
        let sockets: Vec<(WebSocket, Option<Session>)> = self
            .state
            .get_websockets()
            .into_iter()
            .map(|ws| {
                let session = ws.deserialize_attachment::<Session>().ok().flatten();
                (ws, session)
            })
            .collect();
        let reason = release.reason;
        let frames = |items: Vec<Notification>| -> Vec<String> {
            ServerFrame::batches(reason, items)
                .iter()
                .map(ServerFrame::to_json)
                .collect()
        };
        loop {
            let items = self
                .with_hub(config, |hub| {
                    hub.release_next(&mut release, now_ms())
                        .map_err(HubError::from)
                })
                .map_err(|e| worker::Error::from(e.message))?;
            let Some(items) = items else {
                return Ok(());
            };
            let whole = frames(items.clone());
            for (ws, session) in &sockets {
                let unseen = match session {
                    Some(session) => session.unseen(&items),
                    None => items.clone(),
                };
                let count = unseen.len();
                let rest;
                let texts = match count {
                    0 => continue,
                    n if n == items.len() => &whole,
                    _ => {
                        rest = frames(unseen);
                        &rest
                    }
                };
                let sent = texts.iter().try_for_each(|text| ws.send_with_str(text));
                self.stats
                    .sent(&self.state, count as u64, Sends::one(sent.is_ok()));
            }
        }
    }

    /// Lets the core drop what `session`'s socket alone needed once it closes. Best
    /// effort: what is left behind is pruned by age.
    fn forget(&self, session: &Session) {
        if let Ok(config) = self.config() {
            let forgotten = self.with_hub(config, |hub| hub.close(session).map_err(HubError::from));
            if let Err(e) = forgotten {
                log::event("error", json!({ "message": e.message }));
            }
        }
    }

    /// Closes a socket whose event could not be handled, so the client reconnects.
    fn fail(&self, ws: &WebSocket, message: &str) -> Result<()> {
        log::event("error", json!({ "message": message }));
        ws.close(Some(CloseCode::Internal.code()), Some("internal error"))
    }

    fn inbox(&self) -> std::result::Result<RefMut<'_, SqlInbox>, InboxError> {
        match &self.inbox {
            Ok(cell) => Ok(cell.borrow_mut()),
            Err(e) => Err(e.clone()),
        }
    }

    fn config(&self) -> std::result::Result<&'static Config, ApiError> {
        config(&self.env)
    }
}
