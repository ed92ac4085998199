//! Requests from the Worker to an object, and from a room's root to its shards and back:
//! which object a user or room lives in, and one way to call it.
//!
//! An internal request carries only headers built here from what the caller verified,
//! never the client's own, and goes to [`internal::HUB_ORIGIN`], a host that is never
//! resolved.

use serde::de::DeserializeOwned;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Env, Headers, Method, Request, RequestInit, Response, ResponseBody, Stub};

use super::{internal, internal_error};
use crate::error::ApiError;

/// The object that holds `user`'s devices and inbox.
pub(crate) fn hub(env: &Env, user: &str) -> Result<Stub, ApiError> {
    env.durable_object("USER_HUB")
        .and_then(|ns| ns.get_by_name(user))
        .map_err(internal_error)
}

/// The object that roots `room`: its members, presence, history and shard table.
pub(crate) fn root_stub(env: &Env, room: &str) -> Result<Stub, ApiError> {
    env.durable_object("ROOM_HUB")
        .and_then(|ns| ns.get_by_name(room))
        .map_err(internal_error)
}

/// Shard `n` of `room`: an object of the same class holding more of its sockets.
pub(crate) fn shard_stub(env: &Env, room: &str, n: u64) -> Result<Stub, ApiError> {
    root_stub(env, &crate::room::shard_object(room, n))
}

/// Sends a request to `user`'s hub with only what the Worker has verified, and returns
/// the hub's answer as is.
pub(crate) async fn to_hub(
    env: &Env,
    user: &str,
    method: Method,
    path: &str,
    extra: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Response, ApiError> {
    let headers = headers(&[&[(internal::USER, user)], extra].concat())?;
    call(hub(env, user)?, method, path, headers, body).await
}

/// Sends a request to `room`'s root object.
pub(crate) async fn to_room(
    env: &Env,
    room: &str,
    method: Method,
    path: &str,
    extra: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Response, ApiError> {
    let headers = headers(&[&[(internal::ROOM, room)], extra].concat())?;
    call(root_stub(env, room)?, method, path, headers, body).await
}

/// An object's JSON answer, read in one piece: worker's `Response::json` pulls a body
/// through a stream reader, with a trip into JavaScript and a microtask per step, where
/// the runtime's `arrayBuffer()` reads it at once.
pub(crate) async fn json<T: DeserializeOwned>(response: &Response) -> Result<T, ApiError> {
    let bytes = match response.body() {
        ResponseBody::Stream(stream) => {
            let whole = worker::web_sys::Response::new_with_opt_readable_stream(Some(stream))
                .and_then(|r| r.array_buffer())
                .map_err(|e| internal_error(format!("{e:?}")))?;
            let buffer = JsFuture::from(whole)
                .await
                .map_err(|e| internal_error(format!("{e:?}")))?;
            Uint8Array::new(&buffer).to_vec()
        }
        ResponseBody::Body(bytes) => bytes.clone(),
        ResponseBody::Empty => Vec::new(),
    };
    serde_json::from_slice(&bytes).map_err(internal_error)
}

/// Headers of an internal request, built fresh.
pub(crate) fn headers(pairs: &[(&str, &str)]) -> Result<Headers, ApiError> {
    let headers = Headers::new();
    for (name, value) in pairs {
        headers.set(name, value).map_err(internal_error)?;
    }
    Ok(headers)
}

/// One internal request to an object; a body is JSON. A failure to reach the object, or
/// a 5xx from it, is an error here (its text then goes only to the log); any other answer
/// is the caller's to read.
pub(crate) async fn call(
    stub: Stub,
    method: Method,
    path: &str,
    headers: Headers,
    body: Option<Vec<u8>>,
) -> Result<Response, ApiError> {
    if body.is_some() {
        headers
            .set("Content-Type", "application/json")
            .map_err(internal_error)?;
    }
    let mut init = RequestInit::new();
    init.with_method(method)
        .with_headers(headers)
        .with_body(body.map(|b| worker::js_sys::Uint8Array::from(b.as_slice()).into()));
    let url = format!("{}{path}", internal::HUB_ORIGIN);
    let request = Request::new_with_init(&url, &init).map_err(internal_error)?;
    let mut response = stub
        .fetch_with_request(request)
        .await
        .map_err(|e| ApiError::unavailable(format!("durable object: {e}")))?;
    if response.status_code() < 500 {
        return Ok(response);
    }
    let status = response.status_code();
    let text = response.text().await.unwrap_or_default();
    Err(ApiError::unavailable(format!(
        "durable object answered {status}: {text}"
    )))
}
