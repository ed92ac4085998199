//! The wasm32 side of Herald: the Worker ([`api`]) and the two Durable Objects
//! ([`user_hub`], [`room_hub`]) with their SQL stores, over one runner ([`runner`]) for
//! sockets and alarms. Everything here carries out effects; the rules are in the core.
//!
//! This module holds what every part of `edge` shares: the internal header names, reading
//! configuration, headers, clocks and ids, and answering errors as JSON.

mod api;
mod call;
mod http;
mod keys;
mod log;
mod producer;
mod room_hub;
mod runner;
mod sql_inbox;
mod sql_room;
mod stats;
mod user_hub;

use serde_json::json;
use worker::{Date, Env, Headers, Request, Response, Result};

use crate::config::Config;
use crate::error::ApiError;

/// Header names of the Worker → hub requests. The hub trusts them because only the
/// Worker can reach it; they are built fresh, never copied from the client's request.
pub(crate) mod internal {
    pub const USER: &str = "x-herald-user";
    pub const DEVICE: &str = "x-herald-device";
    pub const PROTOCOL: &str = "x-herald-protocol";
    pub const SINCE: &str = "x-herald-since";
    pub const EXP: &str = "x-herald-exp";
    pub const ROOM: &str = "x-herald-room";
    /// Present when the token has `rooms:write`.
    pub const WRITE: &str = "x-herald-write";
    /// Set on requests to a room's shard object: its number.
    pub const SHARD: &str = "x-herald-shard";
    /// On an upgrade handed to a shard: the socket's attachment, as the root admitted it.
    pub const MEMBER: &str = "x-herald-member";
    pub const ID: &str = "x-herald-id";
    /// Hub requests go to `https://user-hub/<route>`; the host is never resolved.
    pub const HUB_ORIGIN: &str = "https://user-hub";
}

pub(crate) fn json_response(
    status: u16,
    body: &serde_json::Value,
) -> std::result::Result<Response, ApiError> {
    Response::from_json(body)
        .map(|r| r.with_status(status))
        .map_err(internal_error)
}

/// An error answer with `body` (see [`ApiError::body`] and [`ApiError::public_body`]).
pub(crate) fn error_response(status: u16, body: String) -> Result<Response> {
    let headers = Headers::new();
    headers.set("Content-Type", "application/json")?;
    Ok(Response::ok(body)?
        .with_status(status)
        .with_headers(headers))
}

/// Passes an event handler's answer through, logging a failure first: for events whose
/// failure no client sees (alarms), the log is the only trace.
pub(crate) fn logged(event: &str, answer: Result<Response>) -> Result<Response> {
    if let Err(e) = &answer {
        log::event("error", json!({ "where": event, "message": e.to_string() }));
    }
    answer
}

/// A seq, time or count as a SQLite integer. They are far below 2^53; a larger one would
/// be stored as the largest integer rather than wrap to a negative one.
pub(crate) fn int(value: u64) -> worker::SqlStorageValue {
    worker::SqlStorageValue::Integer(value.min(i64::MAX as u64) as i64)
}

/// A stored seq, time or count back; nothing negative is written, so one reads as 0.
pub(crate) fn unsigned(value: i64) -> u64 {
    value.max(0) as u64
}

/// An object's event handler fails with the message of what went wrong (the runtime
/// logs it, and retries an alarm).
impl From<ApiError> for worker::Error {
    fn from(e: ApiError) -> Self {
        worker::Error::RustError(e.message)
    }
}

pub(crate) fn internal_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

/// The deployment's configuration, read once per isolate and shared by the Worker and
/// every object in it: `[vars]` and secrets cannot change while an isolate lives (a deploy
/// or a secret change starts new isolates), and reading them costs a trip into JavaScript
/// per variable. A bad value is not kept, so every request reports it.
pub(crate) fn config(env: &Env) -> std::result::Result<&'static Config, ApiError> {
    static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(config);
    }
    let fresh = Config::from_lookup(|name| var(env, name))
        .map_err(|e| ApiError::misconfigured(format!("configuration: {e}")))?;
    Ok(CONFIG.get_or_init(|| fresh))
}

/// A header of an internal request (the Worker built it, so a missing one is our bug).
pub(crate) fn required_header(req: &Request, name: &str) -> std::result::Result<String, ApiError> {
    header(req.headers(), name)
        .ok_or_else(|| ApiError::internal(format!("internal request without {name}")))
}

/// A numeric header of an internal request, if present.
pub(crate) fn number_header(
    req: &Request,
    name: &str,
) -> std::result::Result<Option<u64>, ApiError> {
    header(req.headers(), name)
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| ApiError::internal(format!("bad {name} header")))
        })
        .transpose()
}

pub(crate) fn header(headers: &Headers, name: &str) -> Option<String> {
    headers.get(name).ok().flatten()
}

/// A `[vars]` entry or a secret: both reach the Worker as strings.
pub(crate) fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

/// A secret (or, locally, a var of that name); an empty one counts as unset.
pub(crate) fn secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| var(env, name))
        .filter(|v| !v.trim().is_empty())
}

pub(crate) fn now_ms() -> u64 {
    Date::now().as_millis()
}

pub(crate) fn now_s() -> u64 {
    now_ms() / 1000
}

/// 96 random bits, hex-encoded, after `prefix`: unguessable ids for notifications and
/// sessions.
pub(crate) fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    getrandom::getrandom(&mut bytes).expect("the runtime provides crypto.getRandomValues");
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}
