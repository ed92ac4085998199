//! The HTTP surface: which route a method and path name.
//!
//! Kept as a table so that 404 (no such path) and 405 (path exists, method does not) come
//! from one place, and so the OpenAPI document can be checked against it.

use thiserror::Error;

/// A route the Worker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`: liveness, public.
    Healthz,
    /// `GET /v1/connect`: WebSocket upgrade to the caller's `UserHub`.
    Connect,
    /// `POST /v1/publish`: producers publish notifications.
    Publish,
    /// `GET /dev/token`: a token for a dev user; exists only with `DEV_MODE=true`.
    DevToken,
    /// `OPTIONS` on any route: a CORS preflight.
    Preflight,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RouteError {
    #[error("no such route")]
    NotFound,
    #[error("method not allowed; use {allowed}")]
    MethodNotAllowed { allowed: &'static str },
}

/// Every path with the methods it accepts (preflights aside).
pub const ROUTES: &[(&str, &str, Route)] = &[
    ("/healthz", "GET", Route::Healthz),
    ("/v1/connect", "GET", Route::Connect),
    ("/v1/publish", "POST", Route::Publish),
    ("/dev/token", "GET", Route::DevToken),
];

/// Resolves `method path` to a route.
pub fn resolve(method: &str, path: &str) -> Result<Route, RouteError> {
    let (_, allowed, route) = ROUTES
        .iter()
        .find(|(p, _, _)| *p == path)
        .ok_or(RouteError::NotFound)?;
    if method.eq_ignore_ascii_case("OPTIONS") {
        Ok(Route::Preflight)
    } else if method.eq_ignore_ascii_case(allowed)
        || (*allowed == "GET" && method.eq_ignore_ascii_case("HEAD"))
    {
        Ok(*route)
    } else {
        Err(RouteError::MethodNotAllowed { allowed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_routes() {
        assert_eq!(resolve("GET", "/healthz"), Ok(Route::Healthz));
        assert_eq!(resolve("POST", "/v1/publish"), Ok(Route::Publish));
        assert_eq!(resolve("OPTIONS", "/v1/publish"), Ok(Route::Preflight));
    }

    #[test]
    fn unknown_path_and_wrong_method() {
        assert_eq!(resolve("GET", "/nope"), Err(RouteError::NotFound));
        assert_eq!(
            resolve("GET", "/v1/publish"),
            Err(RouteError::MethodNotAllowed { allowed: "POST" })
        );
    }
}
