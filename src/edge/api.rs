//! The Worker: a stateless front door that checks who is calling and hands the request to
//! the right Durable Object.
//!
//! It only translates between HTTP and the core: it reads headers and bodies, asks
//! [`crate::auth`], [`crate::route`], [`crate::publish`] and [`crate::room`] what to do,
//! and forwards to a [`super::user_hub::UserHub`] or a [`super::room_hub::RoomHub`] over an
//! internal request that carries only what the Worker has verified. In dev mode it also
//! serves the demo page and dev tokens.

use serde_json::json;
use worker::{event, Context, Env, Headers, Method, Request, Response, Result};

use super::call::{self, to_hub, to_room};
use super::http::{asset, bounded_body, preflight, with_cors};
use super::{
    config, error_response, header, internal, internal_error, json_response, log, now_s, producer,
    secret, stats, var,
};
use crate::auth::{self, AuthError, Claims, TokenVerifier};
use crate::config::Config;
use crate::error::ApiError;
use crate::model::{self, MAX_DEVICE_LEN, MAX_ROOM_LEN};
use crate::room;
use crate::route::{self, Route};

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
        Err(e @ route::RouteError::MethodNotAllowed { .. }) => return method_not_allowed(e),
        Err(e) => return Err(e.into()),
    };
    match resolved.route {
        Route::Healthz => json_response(200, &json!({ "status": "ok" })),
        Route::Preflight => preflight(),
        Route::Connect => connect(req, env).await,
        Route::Publish => producer::publish(req, env, config).await,
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
            let name = model::check_name("room", &room, MAX_ROOM_LEN)?;
            grant(&claims_from_bearer(&req, env)?, name)?;
            to_room(env, name, Method::Get, "/presence", &[], None).await
        }
        Route::GetMembers | Route::PutMembers => {
            let authorization = header(req.headers(), "Authorization");
            let publish_key = secret(env, "PUBLISH_KEY").unwrap_or_default();
            auth::authorize_producer(authorization.as_deref(), &publish_key, |token| {
                verify(env, token)
            })?;
            let room = resolved.id.unwrap_or_default();
            let name = model::check_name("room", &room, MAX_ROOM_LEN)?;
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
            auth::publish_key_matches(presented, &publish_key) || verify(env, presented).is_ok()
        },
    )?;
    Ok(())
}

/// 405 with the `Allow` header RFC 9110 asks for.
fn method_not_allowed(err: route::RouteError) -> std::result::Result<Response, ApiError> {
    let allow = err.allow().unwrap_or_default();
    let mut response = error_response(&err.into()).map_err(internal_error)?;
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
        model::check_name("device", d, MAX_DEVICE_LEN)?;
    }
    let headers = upgrade.headers()?;
    if let Some(d) = &device {
        headers.set(internal::DEVICE, d).map_err(internal_error)?;
    }
    headers
        .set(internal::EXP, &upgrade.claims.exp.to_string())
        .map_err(internal_error)?;
    call::call(
        call::hub(env, &upgrade.claims.sub)?,
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
    let name = model::check_name("room", room, MAX_ROOM_LEN)?;
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
    call::call(
        call::root_stub(env, name)?,
        Method::Get,
        "/connect",
        headers,
        None,
    )
    .await
}

/// A verified WebSocket upgrade: the token's claims and what the client asked for.
struct Upgrade {
    claims: Claims,
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
        let claims = verify(env, &presented.token)?;
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

/// A members list, validated, as the room object takes it.
async fn members_body(req: Request, config: &Config) -> std::result::Result<Vec<u8>, ApiError> {
    let body = bounded_body(req, config.limits.max_publish_bytes).await?;
    let members = room::parse_members(&body)?;
    serde_json::to_vec(&members).map_err(internal_error)
}

/// The verified claims of a REST route's `Authorization: Bearer` token.
fn claims_from_bearer(req: &Request, env: &Env) -> std::result::Result<Claims, ApiError> {
    let authorization = header(req.headers(), "Authorization");
    let token = auth::bearer(authorization.as_deref()).ok_or(AuthError::MissingToken)?;
    verify(env, token)
}

/// 403 unless the token's `rooms` claim grants `room`.
fn grant(claims: &Claims, room: &str) -> std::result::Result<(), ApiError> {
    match room::grants(&claims.rooms, room) {
        true => Ok(()),
        false => Err(ApiError::room_not_granted()),
    }
}

/// The caller of a REST route: the `sub` of a verified `Authorization: Bearer` token.
fn user_from_bearer(req: &Request, env: &Env) -> std::result::Result<String, ApiError> {
    Ok(claims_from_bearer(req, env)?.sub)
}

/// A user token's claims, verified against the configured keys now.
pub(crate) fn verify(env: &Env, token: &str) -> std::result::Result<Claims, ApiError> {
    Ok(verifier(env)?.verify(token, now_s())?)
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
