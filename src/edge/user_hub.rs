//! The `UserHub` Durable Object: one per user, holding every device's socket and the
//! user's inbox.
//!
//! Sockets are accepted through the hibernation API, so the object can be evicted while
//! they stay open; everything per socket lives in its attachment and everything else in
//! SQLite, and in-memory state is only a cache rebuilt on the next event. The literal
//! `ping` is answered by the runtime's auto-response, so a heartbeat never wakes the object.
//! Decisions are made by [`crate::hub::Hub`]; this file carries out its effects.

use std::cell::{RefCell, RefMut};

use serde_json::json;
use worker::{
    durable_object, Date, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair, WebSocketRequestResponsePair,
};

use super::internal;
use super::log;
use super::random_id;
use super::sql_inbox::SqlInbox;
use crate::config::Config;
use crate::error::ApiError;
use crate::frame::{CloseCode, ServerFrame};
use crate::hub::{Admission, Effect, Hub, Session};
use crate::inbox::InboxError;
use crate::publish::Draft;

#[durable_object]
pub struct UserHub {
    state: State,
    env: Env,
    /// Opened once per wake-up; an error here is answered on every event instead of
    /// panicking in the constructor.
    inbox: std::result::Result<RefCell<SqlInbox>, InboxError>,
}

impl DurableObject for UserHub {
    fn new(state: State, env: Env) -> Self {
        match WebSocketRequestResponsePair::new("ping", "pong") {
            Ok(pair) => state.set_websocket_auto_response(&pair),
            Err(_) => log::event("error", json!({ "message": "auto-response unavailable" })),
        }
        let inbox = SqlInbox::open(state.storage().sql()).map(RefCell::new);
        log::event(
            "hub_wake",
            json!({ "sockets": state.get_websockets().len() }),
        );
        Self { state, env, inbox }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let answer = match req.path().as_str() {
            "/connect" => self.accept_device(&req),
            "/publish" => self.store(req).await,
            _ => Err(ApiError::new(404, "not_found", "no such hub route")),
        };
        answer.or_else(|err| Response::error(err.body(), err.status))
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
        // The frame budget changed; keep it with the socket across hibernation.
        ws.serialize_attachment(&session)?;
        self.apply(Some((&ws, &session)), effects);
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
        // Finish the closing handshake. 1005/1006 describe a missing close frame and may not
        // be sent back, so those are answered with a plain 1000.
        let reply = match code {
            1000..=1003 | 1007..=1014 | 3000..=4999 => code as u16,
            _ => CloseCode::Normal.code(),
        };
        // The peer may already be gone; nothing is lost if this fails.
        let _ = ws.close(Some(reply), Some("closing"));
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, error: worker::Error) -> Result<()> {
        let session = ws.deserialize_attachment::<Session>().ok().flatten();
        log::event(
            "error",
            json!({
                "user": session.as_ref().map(|s| &s.user),
                "session": session.as_ref().map(|s| &s.id),
                "message": error.to_string(),
            }),
        );
        Ok(())
    }
}

impl UserHub {
    /// Accepts a device's socket, or refuses it with a close code the client can act on.
    fn accept_device(&self, req: &Request) -> std::result::Result<Response, ApiError> {
        let headers = req.headers();
        let user = headers
            .get(internal::USER)
            .ok()
            .flatten()
            .ok_or_else(|| ApiError::internal("hub request without a user"))?;
        let device = headers.get(internal::DEVICE).ok().flatten();
        let answer_protocol = headers.get(internal::PROTOCOL).ok().flatten();
        let config = self.config()?;
        let mut inbox = self
            .inbox()
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        let hub = Hub {
            inbox: &mut *inbox,
            limits: &config.limits,
        };
        let open_sockets = self.state.get_websockets().len();
        let admission = hub
            .connect(&user, open_sockets, random_id("ses_"), device, now_ms())
            .map_err(|e| ApiError::unavailable(e.to_string()))?;

        let pair = WebSocketPair::new().map_err(js_error)?;
        let server = &pair.server;
        match admission {
            Admission::Welcome { session, welcome } => {
                self.state.accept_web_socket(server);
                server.serialize_attachment(&session).map_err(js_error)?;
                server.send_with_str(welcome.to_json()).map_err(js_error)?;
                log::event(
                    "connect",
                    json!({ "user": user, "session": session.id, "device": session.device, "sockets": open_sockets + 1 }),
                );
            }
            Admission::Refused { code, frame } => {
                // Not handed to the runtime's hibernation set: this socket only lives long
                // enough to say why it is being closed.
                server.accept().map_err(js_error)?;
                server.send_with_str(frame.to_json()).map_err(js_error)?;
                server
                    .close(Some(code.code()), Some("refused"))
                    .map_err(js_error)?;
                log::event(
                    "connect_refused",
                    json!({ "user": user, "code": code.code(), "sockets": open_sockets }),
                );
            }
        }
        let mut response = Response::from_websocket(pair.client).map_err(js_error)?;
        if let Some(protocol) = answer_protocol {
            response
                .headers_mut()
                .set("Sec-WebSocket-Protocol", &protocol)
                .map_err(js_error)?;
        }
        Ok(response)
    }

    /// Stores the drafts (durably, before answering) and pushes them to every socket.
    async fn store(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let drafts: Vec<Draft> = req
            .json()
            .await
            .map_err(|e| ApiError::new(400, "bad_request", e.to_string()))?;
        let config = self.config()?;
        let (receipts, effects) = {
            let mut inbox = self
                .inbox()
                .map_err(|e| ApiError::unavailable(e.to_string()))?;
            let mut hub = Hub {
                inbox: &mut *inbox,
                limits: &config.limits,
            };
            hub.publish(drafts, now_ms())
                .map_err(|e| ApiError::unavailable(e.to_string()))?
        };
        self.apply(None, effects);
        Response::from_json(&receipts).map_err(js_error)
    }

    /// Carries out effects for an event that arrived on `origin`'s socket, if any.
    fn apply(&self, origin: Option<(&WebSocket, &Session)>, effects: Vec<Effect>) {
        for effect in effects {
            let result = match (effect, origin) {
                (Effect::Broadcast(frame), _) => {
                    let text = frame.to_json();
                    for ws in self.state.get_websockets() {
                        // A socket closing under us misses nothing: the item is stored.
                        let _ = ws.send_with_str(&text);
                    }
                    Ok(())
                }
                (Effect::Reply(frame), Some((ws, _))) => ws.send_with_str(frame.to_json()),
                (Effect::Close { code, reason }, Some((ws, session))) => {
                    log::event(
                        "close",
                        json!({ "user": session.user, "session": session.id, "code": code.code(), "reason": reason }),
                    );
                    ws.send_with_str(ServerFrame::error("closing", reason.as_str()).to_json())
                        .and_then(|()| ws.close(Some(code.code()), Some(reason)))
                }
                (Effect::Reply(_) | Effect::Close { .. }, None) => Ok(()),
            };
            if let Err(e) = result {
                log::event("error", json!({ "message": e.to_string() }));
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

    fn config(&self) -> std::result::Result<Config, ApiError> {
        Config::from_lookup(|name| self.env.var(name).ok().map(|v| v.to_string()))
            .map_err(|e| ApiError::internal(format!("configuration: {e}")))
    }
}

fn js_error(e: worker::Error) -> ApiError {
    ApiError::internal(e.to_string())
}

fn now_ms() -> u64 {
    Date::now().as_millis()
}
