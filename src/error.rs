//! Every failure a client can see, mapped in one place to an HTTP status and a JSON body
//! `{"error":{"code":"…","message":"…"}}`.
//!
//! Core modules return their own `thiserror` enums; the `From` impls here are the only
//! place that decides which status each of them deserves.
#![warn(missing_docs)]

use serde::Serialize;
use serde_json::Value;

use crate::auth::AuthError;
use crate::hub::HubError;
use crate::model::InputError;
use crate::route::RouteError;

/// An error answer: status, machine-readable code, human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Stable code clients can branch on (`invalid_token`, `bad_request`, …).
    pub code: &'static str,
    /// What went wrong, for a developer reading it. Never contains a token or key.
    pub message: String,
    /// For a publish that stored only part of its targets: what was stored (the 202's
    /// shape), so the producer can tell what its retry completes.
    pub stored: Option<Value>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stored: Option<&'a Value>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl ApiError {
    /// An answer with the caller's status and code, for failures no `From` impl covers.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            stored: None,
        }
    }

    /// The JSON body sent with the status, to objects' callers (the Worker).
    pub fn body(&self) -> String {
        self.render(&self.message, None)
    }

    /// The JSON body a client gets, for the request `request_id`. A 5xx says only
    /// `internal` or `unavailable` and the request id: its message may carry runtime, SQL
    /// or configuration text, which goes to the log line with the same id instead. The
    /// exception is `misconfigured`, whose message names the var an operator must set.
    pub fn public_body(&self, request_id: &str) -> String {
        let message = match (self.status, self.code) {
            (..=499, _) | (_, "misconfigured") => self.message.as_str(),
            (_, "unavailable") => "a Durable Object or its storage is unavailable; retry",
            _ => "Herald failed to answer this request",
        };
        self.render(message, (self.status >= 500).then_some(request_id))
    }

    /// This error, with what a partly failed publish stored.
    pub fn with_stored(self, stored: Value) -> Self {
        Self {
            stored: Some(stored),
            ..self
        }
    }

    fn render(&self, message: &str, request_id: Option<&str>) -> String {
        let body = Body {
            error: Inner {
                code: self.code,
                message,
                request_id,
            },
            stored: self.stored.as_ref(),
        };
        serde_json::to_string(&body).expect("error bodies always serialize")
    }

    /// 426: a plain HTTP request reached a route that only takes WebSocket upgrades.
    pub fn upgrade_required() -> Self {
        Self::new(
            426,
            "upgrade_required",
            "this route only accepts WebSocket upgrades",
        )
    }

    /// 403: a browser request from an origin not in `ALLOWED_ORIGINS`.
    pub fn origin_not_allowed() -> Self {
        Self::new(
            403,
            "origin_not_allowed",
            "the Origin header is not allowed",
        )
    }

    /// 503: the deployment's settings would accept too much or cannot work; `problem`
    /// names the var to fix.
    pub fn misconfigured(problem: impl Into<String>) -> Self {
        Self::new(503, "misconfigured", problem)
    }

    /// 500: a fault on Herald's side (missing configuration, a broken invariant), not
    /// something the client can fix.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", message)
    }

    /// 503: a Durable Object or its storage failed; the client may retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "unavailable", message)
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        let (status, code) = match err {
            AuthError::MissingToken => (401, "missing_token"),
            AuthError::Expired => (401, "token_expired"),
            AuthError::NotYetValid => (401, "token_not_yet_valid"),
            AuthError::Malformed
            | AuthError::TooLong
            | AuthError::AlgorithmNotAllowed(_)
            | AuthError::UnknownKey
            | AuthError::BadSignature
            | AuthError::WrongIssuer
            | AuthError::WrongAudience
            | AuthError::BadSubject
            | AuthError::MissingExpiry => (401, "invalid_token"),
            AuthError::BadKey => (401, "invalid_key"),
            AuthError::MissingScope(_) | AuthError::NotAllowed(_) => (403, "forbidden"),
            AuthError::RoomNotGranted => (403, "room_not_granted"),
            AuthError::StatsOff => (404, "not_found"),
        };
        Self::new(status, code, err.to_string())
    }
}

impl From<InputError> for ApiError {
    fn from(err: InputError) -> Self {
        match err {
            InputError::TooLarge { .. } | InputError::ItemTooLarge { .. } => {
                Self::new(413, "payload_too_large", err.to_string())
            }
            InputError::Json(_) | InputError::Field { .. } => {
                Self::new(400, "bad_request", err.to_string())
            }
        }
    }
}

impl From<HubError> for ApiError {
    fn from(err: HubError) -> Self {
        match err {
            HubError::Invalid { code, message } => Self::new(400, code, message),
            HubError::NotFound => Self::new(404, "not_found", err.to_string()),
            HubError::Storage(e) => Self::unavailable(e.to_string()),
        }
    }
}

impl From<RouteError> for ApiError {
    fn from(err: RouteError) -> Self {
        match err {
            RouteError::NotFound => Self::new(404, "not_found", err.to_string()),
            RouteError::MethodNotAllowed { .. } => {
                Self::new(405, "method_not_allowed", err.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_documented_shape() {
        let err = ApiError::new(400, "bad_request", "event: required");
        let v: serde_json::Value = serde_json::from_str(&err.body()).unwrap();
        assert_eq!(v["error"]["code"], "bad_request");
        assert_eq!(v["error"]["message"], "event: required");
    }

    #[test]
    fn a_5xx_body_says_only_its_code_and_the_request_id() {
        let sql = ApiError::internal("SQLITE_ERROR: no such table: inbox (JWT_SECRET unset)");
        let v: serde_json::Value = serde_json::from_str(&sql.public_body("req_1")).unwrap();
        assert_eq!(v["error"]["code"], "internal");
        assert_eq!(v["error"]["request_id"], "req_1");
        assert!(!v.to_string().contains("SQLITE") && !v.to_string().contains("JWT"));
        let down = ApiError::unavailable("durable object: Network connection lost");
        let v: serde_json::Value = serde_json::from_str(&down.public_body("req_2")).unwrap();
        assert_eq!(v["error"]["code"], "unavailable");
        assert!(!v.to_string().contains("Network"));
        // What the operator must fix is named; a 4xx keeps its message and needs no id.
        let setting = ApiError::misconfigured("set JWT_ISSUER or JWT_AUDIENCE");
        assert!(setting.public_body("r").contains("JWT_ISSUER"));
        let bad = ApiError::new(400, "bad_request", "event: required");
        assert_eq!(bad.public_body("r"), bad.body());
        // A partly stored publish says what was stored.
        let partial = ApiError::unavailable("x").with_stored(serde_json::json!({ "id": "ntf_1" }));
        let v: serde_json::Value = serde_json::from_str(&partial.public_body("r")).unwrap();
        assert_eq!(v["stored"]["id"], "ntf_1");
    }

    #[test]
    fn expired_token_is_401_with_its_own_code() {
        let err = ApiError::from(AuthError::Expired);
        assert_eq!((err.status, err.code), (401, "token_expired"));
    }
}
