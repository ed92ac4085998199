//! The plumbing every Herald Durable Object shares, written once: accepting a socket into
//! the hibernation set with its attachment, refusing one after the upgrade, the close
//! handshake, the `ping` auto-response, sending to every socket in one crossing into
//! JavaScript, reading when the runtime last answered a ping, and the one alarm, set at
//! the earliest slot of a hub's timer table (the stats report's included).
//!
//! The `UserHub` and `RoomHub` objects differ only in which state machine they drive and
//! which SQL store they open; what they do with sockets and alarms goes through here.

use serde::Serialize;
use serde_json::json;
use worker::js_sys::{Date as JsDate, Function, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{
    Request, Response, Result, State, WebSocket, WebSocketPair, WebSocketRequestResponsePair,
};

use super::stats::ObjectStats;
use super::{internal, internal_error, log};
use crate::error::ApiError;
use crate::frame::{CloseCode, ServerFrame};
use crate::stats::{self, Sends, Tick};
use crate::timer::{Timer, Timers};

/// Answers the literal `ping` with `pong` in the runtime, so a heartbeat never wakes the
/// object.
pub(crate) fn auto_respond(state: &State) {
    match WebSocketRequestResponsePair::new("ping", "pong") {
        Ok(pair) => state.set_websocket_auto_response(&pair),
        Err(_) => log::event("error", json!({ "message": "auto-response unavailable" })),
    }
}

/// A new socket pair: the client end goes into the 101, the server end stays here.
pub(crate) fn socket_pair() -> std::result::Result<(WebSocketPair, WebSocket), ApiError> {
    let pair = WebSocketPair::new().map_err(internal_error)?;
    let server = pair.server.clone();
    Ok((pair, server))
}

/// Takes `server` into the hibernation set, tagged with its session so that one socket
/// can be found without reading every attachment, with `attachment` as its state.
pub(crate) fn accept<T: Serialize>(
    state: &State,
    server: &WebSocket,
    session: &str,
    attachment: &T,
    stats: &ObjectStats,
) -> std::result::Result<(), ApiError> {
    state.accept_websocket_with_tags(server, &[session]);
    server
        .serialize_attachment(attachment)
        .map_err(internal_error)?;
    // One connection more.
    stats.touch();
    Ok(())
}

/// Refuses a socket after the upgrade: `frame` says why, then it is closed with `code`.
///
/// The socket is accepted outside the hibernation set (it must not count as a device,
/// and a hibernatable socket closed before its 101 held the object's alarm back by many
/// seconds), with listeners for its `error` and `close` events: with nothing listening,
/// workerd reported the client's going away as "Uncaught Error: Network connection lost".
pub(crate) fn refuse(
    server: &WebSocket,
    frame: &ServerFrame,
    code: CloseCode,
) -> std::result::Result<(), ApiError> {
    server.accept().map_err(internal_error)?;
    ignore_events(AsRef::<worker::web_sys::WebSocket>::as_ref(server));
    server
        .send_with_str(frame.to_json())
        .map_err(internal_error)?;
    server
        .close(Some(code.code()), Some("refused"))
        .map_err(internal_error)
}

/// Sends an `error` frame saying `reason`, then closes with `code`.
pub(crate) fn close(ws: &WebSocket, code: CloseCode, reason: &str) -> Result<()> {
    ws.send_with_str(ServerFrame::error("closing", reason).to_json())
        .and_then(|()| ws.close(Some(code.code()), Some(reason)))
}

/// Logs a socket's error event with whose socket it was (user, session), if known.
pub(crate) fn socket_error(owner: Option<(&String, &String)>, error: &worker::Error) {
    log::event(
        "error",
        json!({
            "user": owner.map(|(user, _)| user),
            "session": owner.map(|(_, session)| session),
            "message": error.to_string(),
        }),
    );
}

/// Finishes a closing handshake the peer started; it may already be gone, and nothing
/// is lost if this fails.
pub(crate) fn finish_close(ws: &WebSocket, code: usize) {
    let _ = ws.close(Some(CloseCode::reply_to(code)), Some("closing"));
}

/// This object's open socket with session tag `session`, if any.
pub(crate) fn tagged(state: &State, session: &str) -> Option<WebSocket> {
    state.get_websockets_with_tag(session).pop()
}

/// The 101 for `pair`, answering the subprotocol the client offered its token in.
pub(crate) fn upgrade(
    req: &Request,
    pair: WebSocketPair,
) -> std::result::Result<Response, ApiError> {
    let mut response = Response::from_websocket(pair.client).map_err(internal_error)?;
    if let Some(protocol) = req.headers().get(internal::PROTOCOL).ok().flatten() {
        response
            .headers_mut()
            .set("Sec-WebSocket-Protocol", &protocol)
            .map_err(internal_error)?;
    }
    Ok(response)
}

/// When the runtime last answered a `ping` on `ws` for us (ms), which it does without
/// waking the object. workers-rs does not bind `getWebSocketAutoResponseTimestamp`, so it
/// is called through JavaScript reflection.
pub(crate) fn last_ping(state: &State, ws: &WebSocket) -> Option<u64> {
    let state: &JsValue = state.as_raw().as_ref();
    let method = Reflect::get(state, &"getWebSocketAutoResponseTimestamp".into()).ok()?;
    let socket: &JsValue = AsRef::<worker::web_sys::WebSocket>::as_ref(ws).as_ref();
    let at = method
        .dyn_into::<Function>()
        .ok()?
        .call1(state, socket)
        .ok()?;
    at.dyn_into::<JsDate>().ok().map(|d| d.get_time() as u64)
}

/// Sends `frame` to one socket and counts it.
pub(crate) fn send(
    state: &State,
    stats: &ObjectStats,
    ws: &WebSocket,
    frame: &ServerFrame,
) -> Result<()> {
    let sent = ws.send_with_str(frame.to_json());
    stats.sent(state, stats::items(frame), Sends::one(sent.is_ok()));
    sent
}

/// Sets the alarm at the earliest of `timers` and the stats report.
pub(crate) async fn schedule(
    state: &State,
    alarm: &Alarm,
    stats: &ObjectStats,
    mut timers: Timers,
) -> Result<()> {
    timers.set(Timer::StatsReport, stats.deadline());
    alarm.set(state, timers.next()).await
}

/// An object's sockets that are open, not closing: what every broadcast, count and sweep
/// of either object is about.
pub(crate) fn open_sockets(state: &worker::State) -> impl Iterator<Item = worker::WebSocket> {
    const OPEN: u16 = 1;
    state
        .get_websockets()
        .into_iter()
        .filter(|ws| AsRef::<worker::web_sys::WebSocket>::as_ref(ws).ready_state() == OPEN)
}

/// The open sockets with the per-socket state attached to them.
pub(crate) fn attached<T: serde::de::DeserializeOwned>(
    state: &worker::State,
) -> Vec<(worker::WebSocket, T)> {
    open_sockets(state)
        .filter_map(|ws| {
            let attachment = ws.deserialize_attachment::<T>().ok().flatten()?;
            Some((ws, attachment))
        })
        .collect()
}

/// Sends `text` to every socket of an object, crossing into JavaScript once: the string
/// is copied over once and the loop runs there, instead of one call, one socket handle
/// and one string copy per socket from Rust. Answers how many sockets took it and how
/// many could not (for `GET /v1/stats`).
pub(crate) fn send_to_all(state: &worker::State, text: &str) -> Sends {
    let packed = send_to_all_js(state.as_raw(), text);
    // `sent * 2^20 + failed`: one number back across the boundary; an object holds far
    // fewer than 2^20 sockets.
    let packed = packed.max(0.0) as u64;
    Sends {
        sent: packed >> 20,
        failed: packed & ((1 << 20) - 1),
    }
}

#[wasm_bindgen::prelude::wasm_bindgen(inline_js = r#"
export function ignoreEvents(ws) {
  ws.addEventListener("error", () => {});
  ws.addEventListener("close", () => {});
}

export function sendToAll(state, text) {
  let sent = 0;
  let failed = 0;
  for (const ws of state.getWebSockets()) {
    try {
      ws.send(text);
      sent++;
    } catch {
      // A socket closing right now misses nothing: what is sent is stored first.
      failed++;
    }
  }
  return sent * 1048576 + failed;
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = ignoreEvents)]
    fn ignore_events(ws: &worker::web_sys::WebSocket);
    #[wasm_bindgen(js_name = sendToAll)]
    fn send_to_all_js(state: &worker::worker_sys::DurableObjectState, text: &str) -> f64;
}

/// An object's one alarm, written to storage only when the wanted time changes.
pub(crate) struct Alarm {
    /// What this instance last set (`Some(None)`: none). Unknown after a wake-up, so the
    /// first event sets it once.
    set_for: std::cell::Cell<Option<Option<u64>>>,
}

impl Alarm {
    pub(crate) fn new() -> Self {
        Self {
            set_for: std::cell::Cell::new(None),
        }
    }

    /// Whether this instance knows what the alarm is set for (it set it since waking up
    /// and it has not fired since).
    pub(crate) fn known(&self) -> bool {
        self.set_for.get().is_some()
    }

    /// The alarm ran, and the runtime has cleared it: what it was set for, if this
    /// instance set it (not after an eviction), so that the object can log how late it
    /// ran without keeping the time in storage, a write on every move.
    pub(crate) fn fired(&self) -> Option<u64> {
        self.set_for.take().flatten()
    }

    /// Whether the stats report `tick` asks for has to move the alarm: it must wait, and
    /// this instance has not already set the alarm for that time or earlier.
    pub(crate) fn must_move_for(&self, tick: Tick) -> bool {
        match tick {
            Tick::WaitUntil(at) => !matches!(self.set_for.get(), Some(Some(set)) if set <= at),
            Tick::Idle | Tick::Report => false,
        }
    }

    /// Sets (or deletes) the alarm for `next` when [`crate::timer::must_move`] says so.
    pub(crate) async fn set(&self, state: &worker::State, next: Option<u64>) -> Result<()> {
        if !crate::timer::must_move(self.set_for.get(), next) {
            return Ok(());
        }
        let storage = state.storage();
        match next {
            Some(at) => {
                let date = worker::js_sys::Date::new(&(at as f64).into());
                storage.set_alarm(worker::ScheduledTime::new(date)).await?
            }
            None => storage.delete_alarm().await?,
        }
        self.set_for.set(Some(next));
        Ok(())
    }
}
