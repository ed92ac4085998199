//! Who is calling: bearer extraction from an upgrade request, JWT verification and the
//! producer key check.
//!
//! Verification is split in two so that it stays testable without a clock: the signature
//! is checked by `jsonwebtoken` against exactly one algorithm taken from an allow-list, and
//! the time and audience claims are checked here against a `now` the caller passes in.
//! The user id only ever comes out of a verified token; nothing here reads it from a URL.
#![warn(missing_docs)]

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::keys::{KeyError, KeySet, PublicKey};
use crate::model::valid_user_id;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_S: u64 = 60;

/// The only algorithms Herald accepts. Anything else, `none` above all, is refused before
/// a key is even looked up.
pub const ALLOWED_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::HS256,
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// The WebSocket subprotocol of this API version; browsers offer it next to `bearer.<jwt>`.
pub const PROTOCOL: &str = "herald.v1";

/// Longest token accepted. Real tokens are well under 2 KB; the bound keeps a validly
/// signed but bloated token (thousands of room grants) from costing every request that
/// carries it a large parse and grant check.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a caller was turned away. Messages never include the token or key itself.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token in the header, the subprotocol list or the query.
    #[error("no token: send Authorization: Bearer, the bearer.<jwt> subprotocol or ?token=")]
    MissingToken,
    /// The header or claims do not decode, or a time claim is not a number of seconds.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// Over [`MAX_TOKEN_BYTES`]; refused before anything is parsed.
    #[error("the token is longer than 8192 bytes")]
    TooLong,
    /// The header's algorithm (named) is not in [`ALLOWED_ALGORITHMS`] or is not the
    /// one its key is bound to.
    #[error("the token's algorithm {0} is not allowed")]
    AlgorithmNotAllowed(String),
    /// No key to check it with: no `JWT_SECRET` for HS256, or no `JWT_JWKS` key with the
    /// token's `kid`.
    #[error("no configured key matches the token")]
    UnknownKey,
    /// The signature does not match the key.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// `exp` passed more than [`LEEWAY_S`] ago.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is more than [`LEEWAY_S`] ahead.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// No `exp`: a token that never expires is not accepted.
    #[error("the token has no exp claim")]
    MissingExpiry,
    /// `iss` is not `JWT_ISSUER`.
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    /// `aud` does not include `JWT_AUDIENCE`.
    #[error("the token's audience is not accepted")]
    WrongAudience,
    /// `sub` is missing or not a valid user id.
    #[error("the token's sub must be a non-empty string of at most 128 printable characters")]
    BadSubject,
    /// A valid token without the scope (named) that the request needs.
    #[error("the token lacks the {0} scope")]
    MissingScope(&'static str),
    /// Neither a key of this deployment nor a JWT.
    #[error("the key is not valid")]
    BadKey,
    /// A valid credential of a kind that may not do this (named).
    #[error("this credential may not {0}")]
    NotAllowed(&'static str),
    /// A valid token whose `rooms` claim does not grant the room.
    #[error("the token does not grant this room")]
    RoomNotGranted,
    /// No `ADMIN_KEY` is configured: the stats route is off.
    #[error("GET /v1/stats is off: set the ADMIN_KEY secret to turn it on")]
    StatsOff,
}

/// What a verified token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user: the only source of a user id anywhere in Herald.
    pub sub: String,
    /// Rooms granted, exact names or `prefix:*`.
    pub rooms: Vec<String>,
    /// Scopes granted (`publish`, …).
    pub scope: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

impl Claims {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.iter().any(|s| s == scope)
    }
}

/// Verifies tokens against the deployment's secret and public keys.
pub struct TokenVerifier {
    /// `JWT_SECRET`, for HS256.
    secret: Option<DecodingKey>,
    /// `JWT_JWKS`, for RS256, ES256 and EdDSA, chosen by `kid`.
    inline: KeySet,
    /// `JWT_ISSUER` (comma-separated): when set, `iss` must be one of them; with one per
    /// `JWT_JWKS_URL`, a key from a URL only verifies tokens of that URL's issuer.
    issuers: Vec<String>,
    /// `JWT_AUDIENCE`: when set, `aud` (string or list) must contain it.
    audience: Option<String>,
}

/// A key fetched from a JWKS URL, with the issuer that URL speaks for (if one is paired
/// with it): a token verified by it must carry that `iss`.
#[derive(Clone, Copy)]
pub struct RemoteKey<'a> {
    /// The key the token's `kid` named.
    pub key: &'a PublicKey,
    /// The issuer paired with the key's URL.
    pub issuer: Option<&'a str>,
}

/// What a token says about itself before it is verified: enough to pick the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peek {
    /// The header's `alg`, already checked against [`ALLOWED_ALGORITHMS`].
    pub algorithm: Algorithm,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The payload's `iss`, unverified: it only picks which JWKS URLs to ask, so it is
    /// read for public-key tokens only.
    pub issuer: Option<String>,
}

/// Reads a token's header (and, for a public-key token, its issuer) without verifying
/// anything, refusing what no key could ever verify.
pub fn peek(token: &str) -> Result<Peek, AuthError> {
    let (algorithm, kid) = checked_header(token)?;
    let issuer = match algorithm {
        Algorithm::HS256 => None,
        _ => jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token)
            .map_err(|_| AuthError::Malformed)?
            .get("iss")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    Ok(Peek {
        algorithm,
        kid,
        issuer,
    })
}

/// The algorithm and `kid` of a token that is not too long, is a JWT, and names an
/// algorithm on the allow-list.
fn checked_header(token: &str) -> Result<(Algorithm, Option<String>), AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TooLong);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
    if !ALLOWED_ALGORITHMS.contains(&header.alg) {
        return Err(AuthError::AlgorithmNotAllowed(format!("{:?}", header.alg)));
    }
    Ok((header.alg, header.kid))
}

impl TokenVerifier {
    /// A verifier for the deployment's `JWT_SECRET`, `JWT_JWKS`, `JWT_ISSUER` and
    /// `JWT_AUDIENCE`; an empty value counts as unset. Fails only when `JWT_JWKS` is not a
    /// JWK set; keys in it that Herald cannot use are skipped (see [`Self::skipped`]).
    pub fn new(
        secret: Option<&str>,
        jwks: Option<&str>,
        issuers: Vec<String>,
        audience: Option<String>,
    ) -> Result<Self, KeyError> {
        let inline = match jwks.map(str::trim).filter(|j| !j.is_empty()) {
            Some(json) => KeySet::parse(json)?,
            None => KeySet::default(),
        };
        Ok(Self {
            secret: secret
                .filter(|s| !s.is_empty())
                .map(|s| DecodingKey::from_secret(s.as_bytes())),
            inline,
            issuers,
            audience: audience.filter(|s| !s.is_empty()),
        })
    }

    /// The `JWT_JWKS` keys left out, with why (for one log line per isolate).
    pub fn skipped(&self) -> &[KeyError] {
        &self.inline.skipped
    }

    /// What is wrong with a configuration that would accept too much: with public keys
    /// (inline or from `remote_sources` URLs), which an identity provider shares across
    /// every app and API it signs for, a token must be pinned to Herald by `JWT_ISSUER` or
    /// `JWT_AUDIENCE`. An HS256 secret is Herald's alone and needs neither.
    pub fn misconfiguration(&self, remote_sources: usize) -> Option<&'static str> {
        let public_keys = !self.inline.keys.is_empty() || remote_sources > 0;
        (public_keys && self.issuers.is_empty() && self.audience.is_none())
            .then_some("JWT_ISSUER or JWT_AUDIENCE must be set when JWT_JWKS or JWT_JWKS_URL is")
    }

    /// Checks `token` at time `now_s` (seconds since the epoch) and returns its claims.
    pub fn verify(&self, token: &str, now_s: u64) -> Result<Claims, AuthError> {
        self.verify_with(token, now_s, None)
    }

    /// Checks `token` at `now_s`, with `remote`, the key its `kid` names at one of the
    /// JWKS URLs for its issuer, if the caller found one. Inline keys are tried first.
    pub fn verify_with(
        &self,
        token: &str,
        now_s: u64,
        remote: Option<RemoteKey<'_>>,
    ) -> Result<Claims, AuthError> {
        let (algorithm, kid) = checked_header(token)?;
        // The key decides the algorithm, never the token: an HS256 token is only checked
        // against the shared secret, so a public key can never be used as an HMAC secret.
        let (key, pinned_issuer) = if algorithm == Algorithm::HS256 {
            (self.secret.as_ref().ok_or(AuthError::UnknownKey)?, None)
        } else {
            let kid = kid.as_deref().ok_or(AuthError::UnknownKey)?;
            let (found, issuer) = match self.inline.find(kid) {
                Some(key) => (key, None),
                None => {
                    let remote = remote
                        .filter(|r| r.key.kid == kid)
                        .ok_or(AuthError::UnknownKey)?;
                    (remote.key, remote.issuer)
                }
            };
            if found.algorithm != algorithm {
                return Err(AuthError::AlgorithmNotAllowed(format!("{algorithm:?}")));
            }
            (&found.key, issuer)
        };

        let mut validation = Validation::new(algorithm);
        // Time and audience are checked below against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                _ => AuthError::Malformed,
            }
        })?;
        if let Some(issuer) = pinned_issuer {
            if data.claims.get("iss").and_then(Value::as_str) != Some(issuer) {
                return Err(AuthError::WrongIssuer);
            }
        }
        self.check_claims(&data.claims, now_s)
    }

    fn check_claims(&self, claims: &Value, now_s: u64) -> Result<Claims, AuthError> {
        let exp = match claims.get("exp") {
            None => return Err(AuthError::MissingExpiry),
            Some(exp) => numeric_date(exp)?,
        };
        if now_s > exp.saturating_add(LEEWAY_S) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = numeric_date(nbf)?;
            if now_s.saturating_add(LEEWAY_S) < nbf {
                return Err(AuthError::NotYetValid);
            }
        }
        if !self.issuers.is_empty() {
            let iss = claims.get("iss").and_then(Value::as_str);
            if !self
                .issuers
                .iter()
                .any(|accepted| Some(accepted.as_str()) == iss)
            {
                return Err(AuthError::WrongIssuer);
            }
        }
        if let Some(audience) = &self.audience {
            let matches = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !matches {
                return Err(AuthError::WrongAudience);
            }
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| valid_user_id(s))
            .ok_or(AuthError::BadSubject)?
            .to_owned();
        Ok(Claims {
            sub,
            rooms: string_list(claims.get("rooms")),
            scope: string_list(claims.get("scope")),
            exp,
        })
    }
}

/// How long a dev token lives, in seconds.
pub const DEV_TOKEN_TTL_S: u64 = 24 * 3600;

/// Mints an HS256 token for `sub`, for local development only (`GET /dev/token` answers
/// only when `DEV_MODE=true`). It carries the configured issuer and audience so that it
/// passes exactly the checks a real token passes, and what the demo page needs: the
/// `rooms:write` scope and the `demo:*` rooms. It carries no producer rights: the demo
/// page publishes through the dev-mode-only `POST /dev/publish`.
pub fn dev_token(
    secret: &str,
    sub: &str,
    issuer: Option<&str>,
    audience: Option<&str>,
    now_s: u64,
) -> Result<String, AuthError> {
    if !valid_user_id(sub) {
        return Err(AuthError::BadSubject);
    }
    let mut claims = json!({
        "sub": sub,
        "iat": now_s,
        "exp": now_s + DEV_TOKEN_TTL_S,
        "scope": "rooms:write",
        "rooms": ["demo:*"],
    });
    if let Some(iss) = issuer.filter(|s| !s.is_empty()) {
        claims["iss"] = iss.into();
    }
    if let Some(aud) = audience.filter(|s| !s.is_empty()) {
        claims["aud"] = aud.into();
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|_| AuthError::Malformed)
}

/// RFC 7519 NumericDate: seconds since the epoch, possibly fractional; the fraction is
/// dropped, which errs towards treating a token as expired a fraction of a second early.
fn numeric_date(value: &Value) -> Result<u64, AuthError> {
    match value.as_u64() {
        Some(seconds) => Ok(seconds),
        None => match value.as_f64() {
            Some(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(seconds as u64),
            _ => Err(AuthError::Malformed),
        },
    }
}

/// `scope` may be an OAuth-style space-separated string or a list; `rooms` is a list.
fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// Where an upgrade's token came from, which decides the subprotocol answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeToken {
    /// The JWT as presented, not yet verified.
    pub token: String,
    /// The client offered `herald.v1`, so the 101 must name it (browsers fail otherwise).
    pub answer_protocol: bool,
}

/// Finds the token of an upgrade request, in order of preference: `Authorization: Bearer`,
/// the `bearer.<jwt>` subprotocol, then `?token=`.
pub fn upgrade_token(
    authorization: Option<&str>,
    protocols: Option<&str>,
    query_token: Option<&str>,
) -> Option<UpgradeToken> {
    let offered: Vec<&str> = protocols
        .map(|p| p.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let answer_protocol = offered.contains(&PROTOCOL);
    let token = bearer(authorization)
        .or_else(|| offered.iter().find_map(|p| p.strip_prefix("bearer.")))
        .or(query_token)
        .filter(|t| !t.is_empty())?;
    Some(UpgradeToken {
        token: token.to_owned(),
        answer_protocol,
    })
}

/// The credential of an `Authorization: Bearer <credential>` header.
pub fn bearer(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?.trim();
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
}

/// Compares a presented key with a deployment's key (`PUBLISH_KEY`, `ADMIN_KEY`) in
/// constant time. Both sides are hashed first so that neither the content nor the length
/// of the key leaks through timing.
pub fn key_matches(presented: &str, expected: &str) -> bool {
    if expected.is_empty() {
        return false;
    }
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_wins_over_subprotocol_and_query() {
        let t = upgrade_token(
            Some("Bearer aaa"),
            Some("herald.v1, bearer.bbb"),
            Some("ccc"),
        )
        .unwrap();
        assert_eq!(t.token, "aaa");
        assert!(t.answer_protocol);
    }

    #[test]
    fn subprotocol_then_query() {
        let t = upgrade_token(None, Some("herald.v1, bearer.bbb"), Some("ccc")).unwrap();
        assert_eq!(t.token, "bbb");
        let t = upgrade_token(None, None, Some("ccc")).unwrap();
        assert_eq!(t.token, "ccc");
        assert!(!t.answer_protocol);
        assert_eq!(upgrade_token(None, None, None), None);
        assert_eq!(upgrade_token(Some("Basic xyz"), None, Some("")), None);
    }

    #[test]
    fn publish_key_compare() {
        assert!(key_matches("k-123", "k-123"));
        assert!(!key_matches("k-124", "k-123"));
        assert!(!key_matches("k-12", "k-123"));
        assert!(!key_matches("", ""));
    }

    #[test]
    fn dev_tokens_pass_verification() {
        let token = dev_token("s3cret", "alice", Some("iss"), Some("aud"), 1_000).unwrap();
        let verifier =
            TokenVerifier::new(Some("s3cret"), None, vec!["iss".into()], Some("aud".into()))
                .unwrap();
        assert_eq!(verifier.verify(&token, 1_000).unwrap().sub, "alice");
        assert_eq!(
            verifier.verify(&token, 1_000 + DEV_TOKEN_TTL_S + LEEWAY_S + 1),
            Err(AuthError::Expired)
        );
    }
}
