//! The Worker: a stateless front door that checks who is calling and hands the request to
//! the right Durable Object.
//!
//! This module only translates between HTTP and the core: it reads headers and bodies,
//! asks [`crate::auth`], [`crate::route`], [`crate::publish`] and [`crate::room`] what to
//! do, and forwards to a [`user_hub::UserHub`] or a [`room_hub::RoomHub`] over an internal
//! request that carries only what the Worker has verified. It owns no rule of its own. In
//! dev mode it also serves the demo page and dev tokens.

mod log;
mod room_hub;
mod runner;
mod sql_inbox;
mod sql_room;
mod stats;
mod user_hub;

use futures_util::future::join_all;
use serde_json::json;
use worker::{
    event, Context, Date, Env, Headers, Method, Request, RequestInit, Response, Result, Stub,
};

use crate::auth::{self, AuthError, TokenVerifier};
use crate::config::Config;
use crate::error::ApiError;
use crate::model::{self, Draft, Receipt};
use crate::publish::PublishRequest;
use crate::room;
use crate::route::{self, Route};

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
    /// Present on a room publish that is also filed in the members' inboxes: the room
    /// answers its member list.
    pub const MEMBERS: &str = "x-herald-members";
    /// Set on requests to a room's shard object: its number.
    pub const SHARD: &str = "x-herald-shard";
    /// On an upgrade handed to a shard: the socket's attachment, as the root admitted it.
    pub const MEMBER: &str = "x-herald-member";
    pub const ID: &str = "x-herald-id";
    /// Hub requests go to `https://user-hub/<route>`; the host is never resolved.
    pub const HUB_ORIGIN: &str = "https://user-hub";
}

/// The demo page and the SDK bundle it loads, compiled in so that dev mode needs no
/// separate static hosting (`scripts/build.sh` builds the SDK first).
const DEMO_PAGE: &str = include_str!("../../demo/index.html");
const DEMO_SDK: &str = include_str!("../../client/dist/herald.js");

/// The HTTP API as an OpenAPI 3.1 document, written by hand and checked against the route
/// table by `tests/openapi.rs` (and against the running Worker by `scripts/schemathesis.sh`).
const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Longest notification id accepted in a path.
const MAX_ID_LEN: usize = 128;

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let origin = req.headers().get("Origin")?;
    let path = req.path();
    // Only an allowed origin may read the answer: a refusal must not carry CORS headers.
    let mut cors_origin = None;
    let answer = match config(&env) {
        Ok(config) => match origin.as_deref() {
            Some(o) if !config.origin_allowed(o) => Err(ApiError::origin_not_allowed()),
            _ => {
                cors_origin = origin.as_deref();
                serve(req, &env, config).await
            }
        },
        Err(e) => Err(e),
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
    with_cors(response, cors_origin)
}

async fn serve(
    req: Request,
    env: &Env,
    config: &Config,
) -> std::result::Result<Response, ApiError> {
    let method = req.method();
    // Routed on the method as sent: workers-rs reads any method it has no name for
    // (`QUERY`, `PROPFIND`, …) as GET.
    let resolved = match route::resolve(&req.inner().method(), &req.path()) {
        Ok(resolved) => resolved,
        Err(route::RouteError::MethodNotAllowed { allowed }) => {
            return method_not_allowed(allowed);
        }
        Err(e) => return Err(e.into()),
    };
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
        Route::RoomConnect => room_connect(req, env, &resolved.id.unwrap_or_default()).await,
        Route::RoomPresence => {
            let room = resolved.id.unwrap_or_default();
            let name = valid_room(&room)?;
            grant(&claims_from_bearer(&req, env)?, name)?;
            to_room(env, name, Method::Get, "/presence", &[], None).await
        }
        Route::GetMembers | Route::PutMembers => {
            authorize_producer(&req, env)?;
            let room = resolved.id.unwrap_or_default();
            let name = valid_room(&room)?;
            let body = match resolved.route {
                Route::PutMembers => Some(members_body(req, config).await?),
                _ => None,
            };
            to_room(env, name, method, "/members", &[], body).await
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
        Route::Demo if config.dev_mode => asset(DEMO_PAGE, "text/html; charset=utf-8"),
        Route::DemoScript if config.dev_mode => asset(DEMO_SDK, "text/javascript; charset=utf-8"),
        // Outside dev mode these routes do not exist at all.
        Route::DevToken | Route::Demo | Route::DemoScript => {
            Err(route::RouteError::NotFound.into())
        }
        Route::Stats => {
            authorize_admin(&req, env)?;
            stats::summary(env).await
        }
        Route::OpenApi => asset(OPENAPI, "application/json"),
    }
}

/// `GET /v1/stats` takes only `ADMIN_KEY`. Another valid credential (the producer key, a
/// user token) is forbidden rather than unauthenticated, so its holder learns that the
/// key is right but not enough.
fn authorize_admin(req: &Request, env: &Env) -> std::result::Result<(), ApiError> {
    let authorization = header(req.headers(), "Authorization");
    let admin_key = secret(env, "ADMIN_KEY");
    auth::authorize_admin(
        authorization.as_deref(),
        admin_key.as_deref(),
        |presented| {
            let publish_key = secret(env, "PUBLISH_KEY").unwrap_or_default();
            auth::publish_key_matches(presented, &publish_key)
                || verifier(env).is_ok_and(|v| v.verify(presented, now_s()).is_ok())
        },
    )?;
    Ok(())
}

/// 405 with the `Allow` header RFC 9110 asks for: the route's methods, `HEAD` wherever
/// `GET` is, and `OPTIONS` (the CORS preflight) everywhere.
fn method_not_allowed(allowed: String) -> std::result::Result<Response, ApiError> {
    let mut methods: Vec<&str> = allowed.split(", ").collect();
    if methods.contains(&"GET") {
        methods.push("HEAD");
    }
    methods.push("OPTIONS");
    let allow = methods.join(", ");
    let err = ApiError::from(route::RouteError::MethodNotAllowed { allowed });
    let mut response = error_response(&err).map_err(internal_error)?;
    response
        .headers_mut()
        .set("Allow", &allow)
        .map_err(internal_error)?;
    Ok(response)
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
    let upgrade = Upgrade::read(&req, env)?;
    let device = upgrade.query("device");
    if let Some(d) = &device {
        if !model::valid_device(d) {
            return Err(ApiError::new(
                400,
                "bad_request",
                "device: 1 to 64 letters, digits or . _ : -",
            ));
        }
    }
    let headers = upgrade.headers()?;
    if let Some(d) = &device {
        headers.set(internal::DEVICE, d).map_err(internal_error)?;
    }
    headers
        .set(internal::EXP, &upgrade.claims.exp.to_string())
        .map_err(internal_error)?;
    call(
        hub(env, &upgrade.claims.sub)?,
        Method::Get,
        "/connect",
        headers,
        None,
    )
    .await
}

/// `GET /v1/rooms/{room}/connect`: the token must grant the room.
async fn room_connect(
    req: Request,
    env: &Env,
    room: &str,
) -> std::result::Result<Response, ApiError> {
    let name = valid_room(room)?;
    let upgrade = Upgrade::read(&req, env)?;
    grant(&upgrade.claims, name)?;
    let headers = upgrade.headers()?;
    headers.set(internal::ROOM, name).map_err(internal_error)?;
    headers
        .set(internal::EXP, &upgrade.claims.exp.to_string())
        .map_err(internal_error)?;
    if upgrade.claims.has_scope(room::WRITE_SCOPE) {
        headers.set(internal::WRITE, "1").map_err(internal_error)?;
    }
    call(
        room_hub::root_stub(env, name)?,
        Method::Get,
        "/connect",
        headers,
        None,
    )
    .await
}

/// A verified WebSocket upgrade: the token's claims and what the client asked for.
struct Upgrade {
    claims: auth::Claims,
    answer_protocol: bool,
    since: Option<u64>,
    url: worker::Url,
}

impl Upgrade {
    fn read(req: &Request, env: &Env) -> std::result::Result<Self, ApiError> {
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
        Ok(Self {
            claims,
            answer_protocol: presented.answer_protocol,
            since,
            url,
        })
    }

    fn query(&self, name: &str) -> Option<String> {
        self.url
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The headers every forwarded upgrade carries: only what the Worker verified.
    fn headers(&self) -> std::result::Result<Headers, ApiError> {
        let headers = Headers::new();
        let set = |name: &str, value: &str| headers.set(name, value).map_err(internal_error);
        set("Upgrade", "websocket")?;
        set(internal::USER, &self.claims.sub)?;
        if self.answer_protocol {
            set(internal::PROTOCOL, auth::PROTOCOL)?;
        }
        if let Some(since) = self.since {
            set(internal::SINCE, &since.to_string())?;
        }
        Ok(headers)
    }
}

fn valid_room(room: &str) -> std::result::Result<&str, ApiError> {
    if model::valid_room(room) {
        Ok(room)
    } else {
        Err(ApiError::new(
            400,
            "bad_request",
            "room: 1 to 128 letters, digits or . _ : -",
        ))
    }
}

/// 403 unless the token's `rooms` claim grants `room`.
fn grant(claims: &auth::Claims, room: &str) -> std::result::Result<(), ApiError> {
    if room::grants(&claims.rooms, room) {
        Ok(())
    } else {
        Err(ApiError::new(
            403,
            "room_not_granted",
            "the token does not grant this room",
        ))
    }
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

    let rooms = publish_to_rooms(env, &request).await?;
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
        if let Some(room) = &m.room {
            let (receipt, filed) = rooms
                .get(m.draft.id.as_str())
                .ok_or_else(|| ApiError::internal("a room did not store every message"))?;
            let mut result = json!({ "id": receipt.id, "room": room, "seq": receipt.seq });
            if receipt.duplicate {
                result["duplicate"] = true.into();
            }
            if m.inbox {
                result["inbox"] = json!({ "members": filed });
            }
            results.push(result);
            continue;
        }
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

/// A members list, validated, as the room object takes it.
async fn members_body(req: Request, config: &Config) -> std::result::Result<Vec<u8>, ApiError> {
    let body = bounded_body(req, config.limits.max_publish_bytes).await?;
    let members = room::parse_members(&body)?;
    serde_json::to_vec(&members).map_err(internal_error)
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

/// Stores each room message in its room (fanning it out there) and files `inbox:true`
/// ones in every member's inbox. Answers, per draft id, the room's receipt and how many
/// members it was filed for.
async fn publish_to_rooms<'a>(
    env: &Env,
    request: &'a PublishRequest,
) -> std::result::Result<std::collections::HashMap<&'a str, (Receipt, usize)>, ApiError> {
    let mut answers = std::collections::HashMap::new();
    let mut by_room: Vec<(&str, Vec<&crate::publish::Message>)> = Vec::new();
    for m in request.messages.iter().filter(|m| m.room.is_some()) {
        let room = m.room.as_deref().unwrap_or_default();
        match by_room.iter_mut().find(|(r, _)| *r == room) {
            Some((_, list)) => list.push(m),
            None => by_room.push((room, vec![m])),
        }
    }
    let mut filings: std::collections::HashMap<String, Vec<Draft>> = Default::default();
    for (room, messages) in by_room {
        let drafts: Vec<&Draft> = messages.iter().map(|m| &m.draft).collect();
        let body = serde_json::to_vec(&drafts).map_err(internal_error)?;
        let members: &[(&str, &str)] = match messages.iter().any(|m| m.inbox) {
            true => &[(internal::MEMBERS, "1")],
            false => &[],
        };
        let mut response =
            to_room(env, room, Method::Post, "/publish", members, Some(body)).await?;
        if response.status_code() != 200 {
            return Err(ApiError::unavailable(format!(
                "room answered {}",
                response.status_code()
            )));
        }
        let stored: room_hub::RoomReceipts = response.json().await.map_err(internal_error)?;
        for (m, receipt) in messages.iter().zip(stored.receipts) {
            if m.inbox {
                // Keyed by the room's id for the message, so a retry (of this request or
                // of the producer's, with its idempotency key) files it once per member.
                let filed = Draft {
                    id: receipt.id.clone(),
                    idempotency_key: Some(format!("room:{room}:{}", receipt.id)),
                    ..m.draft.clone()
                };
                for member in &stored.members {
                    filings
                        .entry(member.clone())
                        .or_default()
                        .push(filed.clone());
                }
            }
            let filed_for = if m.inbox { stored.members.len() } else { 0 };
            answers.insert(m.draft.id.as_str(), (receipt, filed_for));
        }
    }
    let stores = filings.iter().map(|(member, drafts)| {
        let drafts: Vec<&Draft> = drafts.iter().collect();
        async move { store(env, member, &drafts).await }
    });
    for result in join_all(stores).await {
        result?;
    }
    Ok(answers)
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
    call(hub(env, user)?, method, path, headers, body).await
}

/// Sends a request to `room`'s root object.
async fn to_room(
    env: &Env,
    room: &str,
    method: Method,
    path: &str,
    extra: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> std::result::Result<Response, ApiError> {
    let headers = Headers::new();
    headers.set(internal::ROOM, room).map_err(internal_error)?;
    for (name, value) in extra {
        headers.set(name, value).map_err(internal_error)?;
    }
    call(room_hub::root_stub(env, room)?, method, path, headers, body).await
}

/// One internal request to a Durable Object.
async fn call(
    stub: Stub,
    method: Method,
    path: &str,
    headers: Headers,
    body: Option<Vec<u8>>,
) -> std::result::Result<Response, ApiError> {
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
    stub.fetch_with_request(request)
        .await
        .map_err(|e| ApiError::unavailable(format!("durable object: {e}")))
}

/// The verified claims of a REST route's `Authorization: Bearer` token.
fn claims_from_bearer(req: &Request, env: &Env) -> std::result::Result<auth::Claims, ApiError> {
    let authorization = header(req.headers(), "Authorization");
    let token = auth::bearer(authorization.as_deref()).ok_or(AuthError::MissingToken)?;
    Ok(verifier(env)?.verify(token, now_s())?)
}

/// The caller of a REST route: the `sub` of a verified `Authorization: Bearer` token.
fn user_from_bearer(req: &Request, env: &Env) -> std::result::Result<String, ApiError> {
    Ok(claims_from_bearer(req, env)?.sub)
}

/// Reads a request body of at most `limit` bytes (413 beyond).
async fn bounded_body(mut req: Request, limit: usize) -> std::result::Result<Vec<u8>, ApiError> {
    let too_large = |size| model::InputError::TooLarge { size, limit }.into();
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

fn asset(body: &str, content_type: &str) -> std::result::Result<Response, ApiError> {
    let headers = Headers::new();
    headers
        .set("Content-Type", content_type)
        .map_err(internal_error)?;
    headers
        .set("Cache-Control", "no-store")
        .map_err(internal_error)?;
    Ok(Response::ok(body)
        .map_err(internal_error)?
        .with_headers(headers))
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
/// The headers are copied first: an answer passed through from a Durable Object carries
/// immutable ones, and setting a header on those throws (a 500 for every such route).
fn with_cors(response: Response, origin: Option<&str>) -> Result<Response> {
    let Some(origin) = origin else {
        return Ok(response);
    };
    let headers = response.headers().clone();
    headers.set("Access-Control-Allow-Origin", origin)?;
    headers.append("Vary", "Origin")?;
    Ok(response.with_headers(headers))
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
        .map_err(|e| ApiError::internal(format!("configuration: {e}")))?;
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
fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

fn secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| var(env, name))
}

pub(crate) fn now_ms() -> u64 {
    Date::now().as_millis()
}

fn now_s() -> u64 {
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
