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
use super::keys::Keys;
use super::{
    config, error_response, header, internal, internal_error, json_response, log, now_s, producer,
    random_id, secret, stats, var,
};
use crate::access::{self, Credential, Right};
use crate::auth::{self, AuthError, Claims};
use crate::config::Config;
use crate::error::ApiError;
use crate::model::{self, BROADCAST_ROOM, MAX_DEVICE_LEN};
use crate::room;
use crate::route::{self, Route};

/// The demo page and the SDK bundle it loads, compiled in so that dev mode needs no
/// separate static hosting (`scripts/build.sh` builds the SDK first).
const DEMO_PAGE: &str = include_str!("../../demo/index.html");
const DEMO_SDK: &str = include_str!("../../client/dist/herald.js");
/// Served at `/favicon.ico` in every mode: browsers ask each origin for one, and a 404 in
/// the demo page's console looks like a fault. SVG, which browsers take at that path too.
const FAVICON: &str = include_str!("../../demo/favicon.svg");

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
    // Ties a client's 5xx to the log line that says what went wrong; minted only then.
    let ray = header(req.headers(), "cf-ray");
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
        let request_id = ray.unwrap_or_else(|| random_id("req_"));
        log::event(
            "error",
            json!({
                "path": path,
                "request_id": request_id,
                "status": err.status,
                "code": err.code,
                "message": err.message,
            }),
        );
        error_response(err.status, err.public_body(&request_id))
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
    let route = resolved.route;
    // Outside dev mode these routes do not exist at all.
    if route.dev_only() && !config.dev_mode {
        return Err(route::RouteError::NotFound.into());
    }
    let id = resolved.id.unwrap_or_default();
    let room = match route.names_room() {
        true => Some(model::check_room("room", &id)?),
        false => None,
    };
    let upgrade = match route.is_upgrade() {
        true => Some(Upgrade::read(&req)?),
        false => None,
    };
    let caller = caller(&req, env, route, room, upgrade.as_ref()).await?;
    let room = room.unwrap_or_default();
    match route {
        Route::Healthz => healthz(env),
        Route::Preflight => preflight(),
        Route::Connect => connect(env, &caller, upgrade.unwrap_or_default()).await,
        Route::Publish | Route::DevPublish => {
            producer::publish(req, env, config, &caller, route).await
        }
        Route::Notifications => {
            let query = req
                .url()
                .map_err(internal_error)?
                .query()
                .map(str::to_owned);
            let path = match query {
                Some(q) => format!("/notifications?{q}"),
                None => "/notifications".to_owned(),
            };
            to_hub(env, user(&caller)?, Method::Get, &path, &[], None).await
        }
        Route::MarkRead => {
            let body = bounded_body(req, config.limits.max_frame_bytes).await?;
            to_hub(env, user(&caller)?, Method::Post, "/read", &[], Some(body)).await
        }
        Route::DeleteNotification => {
            if id.len() > MAX_ID_LEN {
                return Err(ApiError::new(404, "not_found", "no such notification"));
            }
            let id = [(internal::ID, id.as_str())];
            to_hub(env, user(&caller)?, Method::Post, "/delete", &id, None).await
        }
        Route::RoomConnect => room_connect(env, &caller, room, upgrade.unwrap_or_default()).await,
        Route::BroadcastConnect => {
            room_connect(env, &caller, BROADCAST_ROOM, upgrade.unwrap_or_default()).await
        }
        Route::RoomPresence => to_room(env, room, Method::Get, "/presence", &[], None).await,
        Route::GetMembers | Route::PutMembers => {
            let body = match route {
                Route::PutMembers => Some(members_body(req, config).await?),
                _ => None,
            };
            to_room(env, room, method, "/members", &[], body).await
        }
        Route::GetPreferences => {
            to_hub(env, user(&caller)?, Method::Get, "/preferences", &[], None).await
        }
        Route::PutPreferences => {
            let body = bounded_body(req, config.limits.max_frame_bytes).await?;
            to_hub(
                env,
                user(&caller)?,
                Method::Put,
                "/preferences",
                &[],
                Some(body),
            )
            .await
        }
        Route::DevToken => dev_token(&req, env),
        Route::Demo => asset(DEMO_PAGE, "text/html; charset=utf-8"),
        Route::DemoScript => asset(DEMO_SDK, "text/javascript; charset=utf-8"),
        Route::Favicon => asset(FAVICON, "image/svg+xml"),
        Route::Stats => stats::summary(env).await,
        Route::OpenApi => asset(OPENAPI, "application/json"),
    }
}

/// The caller of `route`, checked against its row of the privilege table
/// ([`access::check`]) before the route does anything: the one place access is decided.
async fn caller(
    req: &Request,
    env: &Env,
    route: Route,
    room: Option<&str>,
    upgrade: Option<&Upgrade>,
) -> std::result::Result<Credential, ApiError> {
    let right = route.right();
    if right == Right::Anyone {
        return Ok(Credential::Nothing);
    }
    let authorization = header(req.headers(), "Authorization");
    let presented = match upgrade {
        Some(upgrade) => upgrade.token.as_deref(),
        None => auth::bearer(authorization.as_deref()),
    };
    let keys = Keys::for_token(env, presented).await?;
    let (publish_key, admin_key) = deployment_keys(env);
    let deployment = access::Keys {
        publish_key,
        admin_key,
    };
    access::check(presented, deployment, right, room, |token| {
        keys.verify(token).map_err(ApiError::from)
    })
}

/// `PUBLISH_KEY` and `ADMIN_KEY` (empty: unset), read once per isolate like the
/// configuration: secrets cannot change while an isolate lives, and each read is a trip
/// into JavaScript on every authenticated request.
fn deployment_keys(env: &Env) -> (&'static str, &'static str) {
    static KEYS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let (publish, admin) = KEYS.get_or_init(|| {
        (
            secret(env, "PUBLISH_KEY").unwrap_or_default(),
            secret(env, "ADMIN_KEY").unwrap_or_default(),
        )
    });
    (publish, admin)
}

/// The verified token of a route that needs one ([`access::check`] has let only those in).
fn claims(caller: &Credential) -> std::result::Result<&Claims, ApiError> {
    caller
        .claims()
        .ok_or_else(|| AuthError::MissingToken.into())
}

/// The user a user route acts for: only ever the verified token's subject.
fn user(caller: &Credential) -> std::result::Result<&str, ApiError> {
    claims(caller).map(|c| c.sub.as_str())
}

/// `GET /healthz`: 200, or 503 `misconfigured` when the deployment's key settings would
/// accept tokens meant for someone else (public keys without an issuer or audience).
fn healthz(env: &Env) -> std::result::Result<Response, ApiError> {
    match super::keys::misconfiguration(env)? {
        Some(problem) => Err(ApiError::misconfigured(problem)),
        None => json_response(200, &json!({ "status": "ok" })),
    }
}

/// 405 with the `Allow` header RFC 9110 asks for.
fn method_not_allowed(err: route::RouteError) -> std::result::Result<Response, ApiError> {
    let allow = err.allow().unwrap_or_default();
    let err = ApiError::from(err);
    let mut response = error_response(err.status, err.body()).map_err(internal_error)?;
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
        // The first issuer: with one per JWKS URL, the HS256 secret's tokens may carry any.
        config(env)?.issuers.first().map(String::as_str),
        var(env, "JWT_AUDIENCE").as_deref(),
        now,
    )
    .map_err(|_| ApiError::new(400, "bad_request", "user: 1 to 128 printable characters"))?;
    json_response(
        200,
        &json!({ "user": user, "token": token, "expires_at": now + auth::DEV_TOKEN_TTL_S }),
    )
}

/// `GET /v1/connect`: the user's hub accepts the socket.
async fn connect(
    env: &Env,
    caller: &Credential,
    upgrade: Upgrade,
) -> std::result::Result<Response, ApiError> {
    let claims = claims(caller)?;
    let device = upgrade.query("device");
    if let Some(d) = &device {
        model::check_name("device", d, MAX_DEVICE_LEN)?;
    }
    let headers = upgrade.headers(claims)?;
    if let Some(d) = &device {
        headers.set(internal::DEVICE, d).map_err(internal_error)?;
    }
    call::call(
        call::hub(env, &claims.sub)?,
        Method::Get,
        "/connect",
        headers,
        None,
    )
    .await
}

/// `GET /v1/rooms/{room}/connect`: the room's root accepts the socket (that the token
/// grants the room, [`access::check`] saw to); and `GET /v1/broadcast/connect`, the
/// broadcast room's, which keeps the socket read-only ([`room::Kind`]).
async fn room_connect(
    env: &Env,
    caller: &Credential,
    room: &str,
    upgrade: Upgrade,
) -> std::result::Result<Response, ApiError> {
    let claims = claims(caller)?;
    let headers = upgrade.headers(claims)?;
    headers.set(internal::ROOM, room).map_err(internal_error)?;
    if claims.has_scope(room::WRITE_SCOPE) {
        headers.set(internal::WRITE, "1").map_err(internal_error)?;
    }
    call::call(
        call::root_stub(env, room)?,
        Method::Get,
        "/connect",
        headers,
        None,
    )
    .await
}

/// A WebSocket upgrade request: its token (not yet verified) and what the client asked for.
#[derive(Default)]
struct Upgrade {
    token: Option<String>,
    answer_protocol: bool,
    since: Option<u64>,
    url: Option<worker::Url>,
}

impl Upgrade {
    /// 426 unless `req` asks for a WebSocket; 400 on a bad `since`.
    fn read(req: &Request) -> std::result::Result<Self, ApiError> {
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
        );
        let since = query("since")
            .map(|s| {
                s.parse::<u64>()
                    .map_err(|_| ApiError::new(400, "bad_request", "since: must be a whole number"))
            })
            .transpose()?;
        Ok(Self {
            answer_protocol: presented.as_ref().is_some_and(|p| p.answer_protocol),
            token: presented.map(|p| p.token),
            since,
            url: Some(url),
        })
    }

    fn query(&self, name: &str) -> Option<String> {
        self.url
            .as_ref()?
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The headers every forwarded upgrade carries: only what the Worker verified.
    fn headers(&self, claims: &Claims) -> std::result::Result<Headers, ApiError> {
        let headers = Headers::new();
        let set = |name: &str, value: &str| headers.set(name, value).map_err(internal_error);
        set("Upgrade", "websocket")?;
        set(internal::USER, &claims.sub)?;
        set(internal::EXP, &claims.exp.to_string())?;
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
