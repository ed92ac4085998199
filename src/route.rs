//! The HTTP surface: which route a method and path name.
//!
//! Kept as a table so that 404 (no such path) and 405 (path exists, method does not) come
//! from one place, and so the OpenAPI document can be checked against it.
#![warn(missing_docs)]

use thiserror::Error;

use crate::access::{self, Credential, Right};
use crate::auth::AuthError;

/// A route the Worker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`: liveness, public.
    Healthz,
    /// `GET /v1/connect`: WebSocket upgrade to the caller's `UserHub`.
    Connect,
    /// `POST /v1/publish`: producers publish notifications.
    Publish,
    /// `GET /v1/notifications`: a page of the caller's inbox.
    Notifications,
    /// `POST /v1/notifications/read`: mark items read on every device.
    MarkRead,
    /// `DELETE /v1/notifications/{id}`: remove one item.
    DeleteNotification,
    /// `GET /v1/rooms/{room}/connect`: WebSocket upgrade to a room the token grants.
    RoomConnect,
    /// `GET /v1/broadcast/connect`: WebSocket upgrade to the broadcast room, read-only,
    /// for any valid user token.
    BroadcastConnect,
    /// `GET /v1/rooms/{room}/presence`: who is online in a room the token grants.
    RoomPresence,
    /// `GET /v1/rooms/{room}/members` (producer key, or `members` scope): the room's
    /// member list.
    GetMembers,
    /// `PUT /v1/rooms/{room}/members`: replace it.
    PutMembers,
    /// `GET /v1/preferences`: the caller's delivery preferences.
    GetPreferences,
    /// `PUT /v1/preferences`: replace them.
    PutPreferences,
    /// `GET /dev/token`: a token for a dev user; exists only with `DEV_MODE=true`.
    DevToken,
    /// `POST /dev/publish`: the demo page's publish, with a user token; dev mode only.
    DevPublish,
    /// `GET /demo`: the notification-center demo page; only with `DEV_MODE=true`.
    Demo,
    /// `GET /demo/herald.js`: the client SDK bundle the demo page loads; dev mode only.
    DemoScript,
    /// `GET /favicon.ico`: Herald's icon, for browsers that ask any page's origin for one.
    Favicon,
    /// `GET /v1/stats` (admin key): connections, stored, delivered and dropped per kind
    /// of object.
    Stats,
    /// `GET /openapi.json`: the HTTP API as an OpenAPI document, public.
    OpenApi,
    /// `OPTIONS` on any route: a CORS preflight.
    Preflight,
}

impl Route {
    /// What the route asks of its caller: the privilege table's row for it, enforced by
    /// [`crate::access::authorize`] before the route does anything.
    pub fn right(self) -> Right {
        match self {
            Route::Healthz
            | Route::OpenApi
            | Route::Preflight
            | Route::DevToken
            | Route::Demo
            | Route::DemoScript
            | Route::Favicon => Right::Anyone,
            Route::Connect
            | Route::Notifications
            | Route::MarkRead
            | Route::DeleteNotification
            | Route::GetPreferences
            | Route::PutPreferences
            | Route::DevPublish
            | Route::BroadcastConnect => Right::User,
            Route::RoomConnect | Route::RoomPresence => Right::Room,
            Route::Publish => Right::Publish,
            Route::GetMembers | Route::PutMembers => Right::Members,
            Route::Stats => Right::Stats,
        }
    }

    /// Whether `credential`, publishing through this route, may reach the broadcast room:
    /// with [`Right::Broadcast`] (a token's `publish` scope reaches users and rooms, never
    /// everyone), or through the demo page's dev-mode publish, where anyone may mint any
    /// token anyway.
    pub fn may_broadcast(self, credential: &Credential) -> Result<(), AuthError> {
        match self == Route::DevPublish || access::holds(credential, Right::Broadcast) {
            true => Ok(()),
            false => Err(AuthError::NotAllowed(access::right_name(Right::Broadcast))),
        }
    }

    /// Served only with `DEV_MODE=true`; otherwise the route does not exist (404).
    pub fn dev_only(self) -> bool {
        matches!(
            self,
            Route::DevToken | Route::DevPublish | Route::Demo | Route::DemoScript
        )
    }

    /// The path's `{room}` names a room, checked before anything else is read.
    pub fn names_room(self) -> bool {
        matches!(
            self,
            Route::RoomConnect | Route::RoomPresence | Route::GetMembers | Route::PutMembers
        )
    }

    /// A WebSocket upgrade (426 otherwise), whose token may come in the subprotocol or the
    /// query as well as the `Authorization` header.
    pub fn is_upgrade(self) -> bool {
        matches!(
            self,
            Route::Connect | Route::RoomConnect | Route::BroadcastConnect
        )
    }
}

/// Why no route serves a request.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No route has this path: 404.
    #[error("no such route")]
    NotFound,
    /// The path exists, but not with this method: 405.
    #[error("method not allowed; use {allowed}")]
    MethodNotAllowed {
        /// The path's methods from [`ROUTES`], comma-separated.
        allowed: String,
    },
}

impl RouteError {
    /// The `Allow` header of a 405, as RFC 9110 asks: the route's methods, `HEAD`
    /// wherever `GET` is, and `OPTIONS` (the CORS preflight) everywhere.
    pub fn allow(&self) -> Option<String> {
        let Self::MethodNotAllowed { allowed } = self else {
            return None;
        };
        let mut methods: Vec<&str> = allowed.split(", ").collect();
        if methods.contains(&"GET") {
            methods.push("HEAD");
        }
        methods.push("OPTIONS");
        Some(methods.join(", "))
    }
}

/// Every path with a method it accepts (preflights aside); a path may appear once per
/// method. A segment written `{id}` matches any one non-empty segment; exact paths are
/// tried first.
pub const ROUTES: &[(&str, &str, Route)] = &[
    ("/healthz", "GET", Route::Healthz),
    ("/v1/connect", "GET", Route::Connect),
    ("/v1/publish", "POST", Route::Publish),
    ("/v1/notifications", "GET", Route::Notifications),
    ("/v1/notifications/read", "POST", Route::MarkRead),
    (
        "/v1/notifications/{id}",
        "DELETE",
        Route::DeleteNotification,
    ),
    ("/v1/rooms/{room}/connect", "GET", Route::RoomConnect),
    ("/v1/rooms/{room}/presence", "GET", Route::RoomPresence),
    ("/v1/broadcast/connect", "GET", Route::BroadcastConnect),
    ("/v1/rooms/{room}/members", "GET", Route::GetMembers),
    ("/v1/rooms/{room}/members", "PUT", Route::PutMembers),
    ("/v1/preferences", "GET", Route::GetPreferences),
    ("/v1/preferences", "PUT", Route::PutPreferences),
    ("/dev/token", "GET", Route::DevToken),
    ("/dev/publish", "POST", Route::DevPublish),
    ("/demo", "GET", Route::Demo),
    ("/demo/herald.js", "GET", Route::DemoScript),
    ("/favicon.ico", "GET", Route::Favicon),
    ("/v1/stats", "GET", Route::Stats),
    ("/openapi.json", "GET", Route::OpenApi),
];

/// A resolved request: the route and, for routes with a `{…}` segment, its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// What to serve.
    pub route: Route,
    /// The room name or notification id in the path.
    pub id: Option<String>,
}

/// Whether `path` fits `pattern`, and the `{…}` segment if it has one.
fn matches(pattern: &str, path: &str) -> Option<Option<String>> {
    let mut param = None;
    let mut pattern_parts = pattern.split('/');
    let mut path_parts = path.split('/');
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => return Some(param),
            (Some(p), Some(segment)) if p.starts_with('{') => {
                if segment.is_empty() {
                    return None;
                }
                param = Some(segment.to_owned());
            }
            (Some(p), Some(segment)) if p == segment => {}
            _ => return None,
        }
    }
}

/// Resolves `method path` to a route.
pub fn resolve(method: &str, path: &str) -> Result<Resolved, RouteError> {
    let exact = ROUTES.iter().filter(|(p, _, _)| !p.contains('{'));
    let patterns = ROUTES.iter().filter(|(p, _, _)| p.contains('{'));
    let (pattern, id) = exact
        .chain(patterns)
        .find_map(|(p, _, _)| matches(p, path).map(|id| (*p, id)))
        .ok_or(RouteError::NotFound)?;
    let candidates = ROUTES.iter().filter(|(p, _, _)| *p == pattern);
    if method.eq_ignore_ascii_case("OPTIONS") {
        return Ok(Resolved {
            route: Route::Preflight,
            id,
        });
    }
    let accepts = |allowed: &str| {
        method.eq_ignore_ascii_case(allowed)
            || (allowed == "GET" && method.eq_ignore_ascii_case("HEAD"))
    };
    match candidates.clone().find(|(_, m, _)| accepts(m)) {
        Some((_, _, route)) => Ok(Resolved { route: *route, id }),
        None => Err(RouteError::MethodNotAllowed {
            allowed: candidates
                .map(|(_, m, _)| *m)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str) -> Result<Route, RouteError> {
        resolve(method, path).map(|r| r.route)
    }

    #[test]
    fn known_routes() {
        assert_eq!(route("GET", "/healthz"), Ok(Route::Healthz));
        assert_eq!(route("POST", "/v1/publish"), Ok(Route::Publish));
        assert_eq!(route("OPTIONS", "/v1/publish"), Ok(Route::Preflight));
        assert_eq!(route("POST", "/v1/notifications/read"), Ok(Route::MarkRead));
        assert_eq!(route("GET", "/v1/stats"), Ok(Route::Stats));
        assert_eq!(route("GET", "/openapi.json"), Ok(Route::OpenApi));
    }

    #[test]
    fn a_parameter_in_the_middle() {
        let r = resolve("GET", "/v1/rooms/project:42/connect").unwrap();
        assert_eq!(
            (r.route, r.id.as_deref()),
            (Route::RoomConnect, Some("project:42"))
        );
        assert_eq!(
            route("GET", "/v1/rooms//connect"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            route("GET", "/v1/rooms/a/b/connect"),
            Err(RouteError::NotFound)
        );
    }

    #[test]
    fn one_path_many_methods() {
        assert_eq!(route("GET", "/v1/preferences"), Ok(Route::GetPreferences));
        assert_eq!(route("PUT", "/v1/preferences"), Ok(Route::PutPreferences));
        assert_eq!(
            route("POST", "/v1/preferences"),
            Err(RouteError::MethodNotAllowed {
                allowed: "GET, PUT".into()
            })
        );
    }

    #[test]
    fn id_routes_take_one_segment() {
        let r = resolve("DELETE", "/v1/notifications/ntf_1").unwrap();
        assert_eq!(
            (r.route, r.id.as_deref()),
            (Route::DeleteNotification, Some("ntf_1"))
        );
        assert_eq!(
            route("DELETE", "/v1/notifications/"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            route("DELETE", "/v1/notifications/a/b"),
            Err(RouteError::NotFound)
        );
        // The exact path wins over the pattern.
        assert_eq!(
            route("DELETE", "/v1/notifications/read"),
            Err(RouteError::MethodNotAllowed {
                allowed: "POST".into()
            })
        );
    }

    #[test]
    fn only_the_producer_key_broadcasts() {
        let publisher = Credential::Token(crate::auth::Claims {
            sub: "alice".into(),
            rooms: vec!["*".into()],
            scope: vec!["publish".into(), "members".into()],
            exp: 0,
        });
        assert!(matches!(
            Route::Publish.may_broadcast(&publisher),
            Err(AuthError::NotAllowed(_))
        ));
        assert_eq!(
            Route::Publish.may_broadcast(&Credential::ProducerKey),
            Ok(())
        );
        // The demo page's publish exists only in dev mode, where tokens are free.
        assert_eq!(Route::DevPublish.may_broadcast(&publisher), Ok(()));
    }

    #[test]
    fn unknown_path_and_wrong_method() {
        assert_eq!(route("GET", "/nope"), Err(RouteError::NotFound));
        assert_eq!(
            route("GET", "/v1/publish"),
            Err(RouteError::MethodNotAllowed {
                allowed: "POST".into()
            })
        );
    }

    #[test]
    fn a_405_allows_head_beside_get_and_options_everywhere() {
        let allow = |method, path| route(method, path).unwrap_err().allow();
        assert_eq!(
            allow("POST", "/v1/preferences").as_deref(),
            Some("GET, PUT, HEAD, OPTIONS")
        );
        assert_eq!(
            allow("GET", "/v1/publish").as_deref(),
            Some("POST, OPTIONS")
        );
        assert_eq!(RouteError::NotFound.allow(), None);
    }
}
