//! Every failure a client can see, mapped in one place to an HTTP status and a JSON body
//! `{"error":{"code":"…","message":"…"}}`.
//!
//! Core modules return their own `thiserror` enums; the `From` impls here are the only
//! place that decides which status each of them deserves.
#![warn(missing_docs)]

use serde::Serialize;

use crate::auth::{AdminError, AuthError};
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
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An answer with the caller's status and code, for failures no `From` impl covers.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The JSON body sent with the status.
    pub fn body(&self) -> String {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
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

    /// 403: the token's `rooms` claim does not grant the room asked for.
    pub fn room_not_granted() -> Self {
        Self::new(
            403,
            "room_not_granted",
            "the token does not grant this room",
        )
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
            AuthError::BadPublishKey => (401, "invalid_key"),
            AuthError::MissingScope(_) => (403, "forbidden"),
        };
        Self::new(status, code, err.to_string())
    }
}

impl From<InputError> for ApiError {
    fn from(err: InputError) -> Self {
        match err {
            InputError::TooLarge { .. } => Self::new(413, "payload_too_large", err.to_string()),
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

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> Self {
        let (status, code) = match err {
            AdminError::NotConfigured => (404, "not_found"),
            AdminError::MissingKey => (401, "missing_token"),
            AdminError::WrongKey => (401, "invalid_key"),
            AdminError::NotAdmin => (403, "forbidden"),
        };
        Self::new(status, code, err.to_string())
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
    fn expired_token_is_401_with_its_own_code() {
        let err = ApiError::from(AuthError::Expired);
        assert_eq!((err.status, err.code), (401, "token_expired"));
    }
}
