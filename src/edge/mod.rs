//! The Worker: a stateless front door that checks who is calling and hands the request to
//! the right Durable Object.
//!
//! This module only translates between HTTP and the core: it reads headers and bodies,
//! asks [`crate::auth`], [`crate::route`] and [`crate::publish`] what to do, and forwards to
//! a [`user_hub::UserHub`] over an internal request that carries only what the Worker has
//! verified. It owns no rule of its own.

mod log;
mod sql_inbox;
mod user_hub;

use futures_util::future::join_all;
use serde_json::json;
use worker::{
    event, Context, Date, Env, Headers, Method, Request, RequestInit, Response, Result, Stub,
};

use crate::auth::{self, AuthError, TokenVerifier};
use crate::config::Config;
use crate::error::ApiError;
use crate::inbox::Receipt;
use crate::publish::{Draft, PublishRequest};
use crate::route::{self, Route};

/// Header names of the Worker → hub requests. The hub trusts them because only the
/// Worker can reach it; they are built fresh, never copied from the client's request.
pub(crate) mod internal {
    pub const USER: &str = "x-herald-user";
    pub const DEVICE: &str = "x-herald-device";
    pub const PROTOCOL: &str = "x-herald-protocol";
    pub const SINCE: &str = "x-herald-since";
    pub const EXP: &str = "x-herald-exp";
    pub const ID: &str = "x-herald-id";
    /// Hub requests go to `https://user-hub/<route>`; the host is never resolved.
    pub const HUB_ORIGIN: &str = "https://user-hub";
}

/// Longest notification id accepted in a path.
const MAX_ID_LEN: usize = 128;

/// Longest `?device=` name.
const MAX_DEVICE_LEN: usize = 64;

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let origin = req.headers().get("Origin")?;
    let path = req.path();
    let answer = match Config::from_lookup(|name| var(&env, name)) {
        Ok(config) => match origin.as_deref() {
            Some(o) if !config.origin_allowed(o) => Err(ApiError::origin_not_allowed()),
            _ => serve(req, &env, &config).await,
        },
        Err(e) => Err(ApiError::internal(format!("configuration: {e}"))),
    };
    let response = answer.or_else(|err| {
        log::event(
            "error",
            json!({ "path": path, "status": err.status, "code": err.code, "message": err.message }),
        );
        error_response(&err)
    })?;
    // The upgrade's 101 is returned untouched; everything else may be read by a browser app.
    if response.status_code() == 101 {
        return Ok(response);
    }
    with_cors(response, origin.as_deref())
}

async fn serve(
    req: Request,
    env: &Env,
    config: &Config,
) -> std::result::Result<Response, ApiError> {
    let method = req.method();
    let resolved = route::resolve(method.as_ref(), &req.path())?;
    match resolved.route {
        Route::Healthz => json_response(200, &json!({ "status": "ok" })),
        Route::Preflight => preflight(),
        Route::Connect => connect(req, env).await,
        Route::Publish => publish(req, env, config).await,
        Route::Notifications => {
            let user = user_from_bearer(&req, env)?;
            let query = req
                .url()
                .map_err(internal_error)?
                .query()
                .map(str::to_owned);
            let path = match query {
                Some(q) => format!("/notifications?{q}"),
                None => "/notifications".to_owned(),
            };
            to_hub(env, &user, Method::Get, &path, &[], None).await
        }
        Route::MarkRead => {
            let user = user_from_bearer(&req, env)?;
            let body = bounded_body(req, config.limits.max_frame_bytes).await?;
            to_hub(env, &user, Method::Post, "/read", &[], Some(body)).await
        }
        Route::DeleteNotification => {
            let user = user_from_bearer(&req, env)?;
            let id = resolved.id.unwrap_or_default();
            if id.len() > MAX_ID_LEN {
                return Err(ApiError::new(404, "not_found", "no such notification"));
            }
            to_hub(
                env,
                &user,
                Method::Post,
                "/delete",
                &[(internal::ID, &id)],
                None,
            )
            .await
        }
        Route::GetPreferences => {
            let user = user_from_bearer(&req, env)?;
            to_hub(env, &user, Method::Get, "/preferences", &[], None).await
        }
        Route::PutPreferences => {
            let user = user_from_bearer(&req, env)?;
            let body = bounded_body(req, config.limits.max_frame_bytes).await?;
            to_hub(env, &user, Method::Put, "/preferences", &[], Some(body)).await
        }
        Route::DevToken if config.dev_mode => dev_token(&req, env),
        // Outside dev mode the route does not exist at all.
        Route::DevToken => Err(route::RouteError::NotFound.into()),
    }
}

/// `GET /dev/token?user=<id>`: what `make dev` prints, and what the demo page uses.
fn dev_token(req: &Request, env: &Env) -> std::result::Result<Response, ApiError> {
    let url = req.url().map_err(internal_error)?;
    let user = url
        .query_pairs()
        .find(|(k, _)| k == "user")
        .map_or_else(|| "alice".to_owned(), |(_, v)| v.into_owned());
    let secret = secret(env, "JWT_SECRET")
        .ok_or_else(|| ApiError::internal("configuration: JWT_SECRET is not set"))?;
    let now = now_s();
    let token = auth::dev_token(
        &secret,
        &user,
        var(env, "JWT_ISSUER").as_deref(),
        var(env, "JWT_AUDIENCE").as_deref(),
        now,
    )
    .map_err(|_| ApiError::new(400, "bad_request", "user: 1 to 128 printable characters"))?;
    json_response(
        200,
        &json!({ "user": user, "token": token, "expires_at": now + auth::DEV_TOKEN_TTL_S }),
    )
}

/// `GET /v1/connect`: verify the token, then let the user's hub accept the socket.
async fn connect(req: Request, env: &Env) -> std::result::Result<Response, ApiError> {
    let headers = req.headers();
    let is_upgrade =
        header(headers, "Upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return Err(ApiError::upgrade_required());
    }
    let url = req
        .url()
        .map_err(|_| ApiError::new(400, "bad_request", "bad URL"))?;
    let query = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let presented = auth::upgrade_token(
        header(headers, "Authorization").as_deref(),
        header(headers, "Sec-WebSocket-Protocol").as_deref(),
        query("token").as_deref(),
    )?;
    let claims = verifier(env)?.verify(&presented.token, now_s())?;
    let since = query("since")
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| ApiError::new(400, "bad_request", "since: must be a whole number"))
        })
        .transpose()?;
    let device = query("device");
    if let Some(d) = &device {
        let valid = !d.is_empty()
            && d.len() <= MAX_DEVICE_LEN
            && d.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
        if !valid {
            return Err(ApiError::new(
                400,
                "bad_request",
                "device: 1 to 64 letters, digits or . _ : -",
            ));
        }
    }

    let forwarded = Headers::new();
    let set = |name: &str, value: &str| forwarded.set(name, value).map_err(internal_error);
    set("Upgrade", "websocket")?;
    set(internal::USER, &claims.sub)?;
    if let Some(d) = &device {
        set(internal::DEVICE, d)?;
    }
    if presented.answer_protocol {
        set(internal::PROTOCOL, auth::PROTOCOL)?;
    }
    if let Some(since) = since {
        set(internal::SINCE, &since.to_string())?;
    }
    set(internal::EXP, &claims.exp.to_string())?;
    let mut init = RequestInit::new();
    init.with_headers(forwarded);
    let url = format!("{}/connect", internal::HUB_ORIGIN);
    let request = Request::new_with_init(&url, &init).map_err(internal_error)?;
    hub(env, &claims.sub)?
        .fetch_with_request(request)
        .await
        .map_err(|e| ApiError::unavailable(format!("user hub: {e}")))
}

/// `POST /v1/publish`: validate, store in every recipient's hub, then answer 202.
async fn publish(
    req: Request,
    env: &Env,
    config: &Config,
) -> std::result::Result<Response, ApiError> {
    authorize_producer(&req, env)?;
    let body = bounded_body(req, config.limits.max_publish_bytes).await?;
    let request = PublishRequest::parse(&body, &config.limits, || random_id("ntf_"))?;

    let groups = request.by_recipient();
    let stores = groups.iter().map(|(user, drafts)| store(env, user, drafts));
    // Each hub answers one receipt per draft, in the order sent.
    let mut receipts = std::collections::HashMap::new();
    for ((user, drafts), answer) in groups.iter().zip(join_all(stores).await) {
        let answer = answer?;
        if answer.len() != drafts.len() {
            return Err(ApiError::internal("a hub did not store every message"));
        }
        for (draft, receipt) in drafts.iter().zip(answer) {
            receipts.insert((draft.id.as_str(), *user), receipt);
        }
    }
    let mut results = Vec::with_capacity(request.messages.len());
    for m in &request.messages {
        let mut id = None;
        let mut recipients = Vec::with_capacity(m.recipients.len());
        for user in &m.recipients {
            let receipt = receipts
                .get(&(m.draft.id.as_str(), user.as_str()))
                .ok_or_else(|| ApiError::internal("a hub did not store every message"))?;
            // A repeated idempotency key answers with the id first stored.
            id.get_or_insert_with(|| receipt.id.clone());
            let mut recipient = json!({ "user": user, "seq": receipt.seq });
            if receipt.duplicate {
                recipient["duplicate"] = true.into();
            }
            recipients.push(recipient);
        }
        results.push(json!({ "id": id, "recipients": recipients }));
    }
    log::event(
        "publish",
        json!({ "messages": request.messages.len(), "recipients": groups.len() }),
    );
    let body = if request.batch {
        json!({ "messages": results })
    } else {
        results
            .into_iter()
            .next()
            .expect("a single publish has one message")
    };
    json_response(202, &body)
}

/// The producer key, or a user token with the `publish` scope.
fn authorize_producer(req: &Request, env: &Env) -> std::result::Result<(), ApiError> {
    let authorization = header(req.headers(), "Authorization");
    let presented = auth::bearer(authorization.as_deref()).ok_or(AuthError::MissingToken)?;
    let key = secret(env, "PUBLISH_KEY").unwrap_or_default();
    if auth::publish_key_matches(presented, &key) {
        return Ok(());
    }
    // Three dot-separated parts: a JWT rather than a mistyped key.
    if presented.split('.').count() == 3 {
        let claims = verifier(env)?.verify(presented, now_s())?;
        return if claims.has_scope("publish") {
            Ok(())
        } else {
            Err(AuthError::MissingScope("publish").into())
        };
    }
    Err(AuthError::BadPublishKey.into())
}

/// Stores one user's drafts in that user's hub and returns the receipts.
async fn store(
    env: &Env,
    user: &str,
    drafts: &[&Draft],
) -> std::result::Result<Vec<Receipt>, ApiError> {
    let body = serde_json::to_string(drafts).map_err(internal_error)?;
    let mut response = to_hub(
        env,
        user,
        Method::Post,
        "/publish",
        &[],
        Some(body.into_bytes()),
    )
    .await?;
    if response.status_code() != 200 {
        return Err(ApiError::unavailable(format!(
            "user hub answered {}",
            response.status_code()
        )));
    }
    response.json().await.map_err(internal_error)
}

/// Sends a request to `user`'s hub with only what the Worker has verified, and returns
/// the hub's answer as is.
async fn to_hub(
    env: &Env,
    user: &str,
    method: Method,
    path: &str,
    extra: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> std::result::Result<Response, ApiError> {
    let headers = Headers::new();
    headers.set(internal::USER, user).map_err(internal_error)?;
    for (name, value) in extra {
        headers.set(name, value).map_err(internal_error)?;
    }
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
    hub(env, user)?
        .fetch_with_request(request)
        .await
        .map_err(|e| ApiError::unavailable(format!("user hub: {e}")))
}

/// The caller of a REST route: the `sub` of a verified `Authorization: Bearer` token.
fn user_from_bearer(req: &Request, env: &Env) -> std::result::Result<String, ApiError> {
    let authorization = header(req.headers(), "Authorization");
    let token = auth::bearer(authorization.as_deref()).ok_or(AuthError::MissingToken)?;
    Ok(verifier(env)?.verify(token, now_s())?.sub)
}

/// Reads a request body of at most `limit` bytes (413 beyond).
async fn bounded_body(mut req: Request, limit: usize) -> std::result::Result<Vec<u8>, ApiError> {
    let too_large = |size| crate::error::InputError::TooLarge { size, limit }.into();
    let declared = header(req.headers(), "Content-Length").and_then(|l| l.parse::<usize>().ok());
    if let Some(size) = declared.filter(|&size| size > limit) {
        return Err(too_large(size));
    }
    let body = req
        .bytes()
        .await
        .map_err(|_| ApiError::new(400, "bad_request", "could not read the body"))?;
    if body.len() > limit {
        return Err(too_large(body.len()));
    }
    Ok(body)
}

fn hub(env: &Env, user: &str) -> std::result::Result<Stub, ApiError> {
    env.durable_object("USER_HUB")
        .and_then(|ns| ns.get_by_name(user))
        .map_err(internal_error)
}

fn verifier(env: &Env) -> std::result::Result<TokenVerifier, ApiError> {
    TokenVerifier::new(
        secret(env, "JWT_SECRET").as_deref(),
        secret(env, "JWT_JWKS").as_deref(),
        var(env, "JWT_ISSUER"),
        var(env, "JWT_AUDIENCE"),
    )
    .map_err(|e| ApiError::internal(format!("configuration: {e}")))
}

fn preflight() -> std::result::Result<Response, ApiError> {
    let headers = Headers::new();
    for (name, value) in [
        (
            "Access-Control-Allow-Methods",
            "GET, POST, PUT, DELETE, OPTIONS",
        ),
        (
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type",
        ),
        ("Access-Control-Max-Age", "600"),
    ] {
        headers.set(name, value).map_err(internal_error)?;
    }
    Ok(Response::empty()
        .map_err(internal_error)?
        .with_status(204)
        .with_headers(headers))
}

/// Lets an allowed browser origin read the answer (disallowed ones never get this far).
fn with_cors(mut response: Response, origin: Option<&str>) -> Result<Response> {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.set("Access-Control-Allow-Origin", origin)?;
        headers.append("Vary", "Origin")?;
    }
    Ok(response)
}

fn json_response(status: u16, body: &serde_json::Value) -> std::result::Result<Response, ApiError> {
    Response::from_json(body)
        .map(|r| r.with_status(status))
        .map_err(internal_error)
}

pub(crate) fn error_response(err: &ApiError) -> Result<Response> {
    let headers = Headers::new();
    headers.set("Content-Type", "application/json")?;
    Ok(Response::ok(err.body())?
        .with_status(err.status)
        .with_headers(headers))
}

fn internal_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

fn header(headers: &Headers, name: &str) -> Option<String> {
    headers.get(name).ok().flatten()
}

/// A `[vars]` entry or a secret: both reach the Worker as strings.
fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

fn secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| var(env, name))
}

fn now_s() -> u64 {
    Date::now().as_millis() / 1000
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
