//! Who is calling: bearer extraction from an upgrade request, JWT verification and the
//! producer key check.
//!
//! Verification is split in two so that it stays testable without a clock: the signature
//! is checked by `jsonwebtoken` against exactly one algorithm taken from an allow-list, and
//! the time and audience claims are checked here against a `now` the caller passes in.
//! The user id only ever comes out of a verified token; nothing here reads it from a URL.
#![warn(missing_docs)]

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

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
    /// A producer credential that is neither `PUBLISH_KEY` nor shaped like a token.
    #[error("the publish key is not valid")]
    BadPublishKey,
}

/// The configured public keys could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    /// `JWT_JWKS` does not parse as a JWK set; holds the parser's message.
    #[error("JWT_JWKS is not a JWK set: {0}")]
    Jwks(String),
    /// One key of the set cannot verify tokens.
    #[error("JWT_JWKS key {kid:?} is unusable: {reason}")]
    Key {
        /// The key's `kid`; empty when it has none.
        kid: String,
        /// What is wrong with it.
        reason: String,
    },
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

/// One asymmetric key from the JWK set, bound to the single algorithm it may verify.
struct PublicKey {
    kid: String,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies tokens against the deployment's secret and public keys.
pub struct TokenVerifier {
    /// `JWT_SECRET`, for HS256.
    secret: Option<DecodingKey>,
    /// `JWT_JWKS`, for RS256, ES256 and EdDSA, chosen by `kid`.
    public_keys: Vec<PublicKey>,
    /// `JWT_ISSUER`: when set, `iss` must equal it.
    issuer: Option<String>,
    /// `JWT_AUDIENCE`: when set, `aud` (string or list) must contain it.
    audience: Option<String>,
}

impl TokenVerifier {
    /// A verifier for the deployment's `JWT_SECRET`, `JWT_JWKS`, `JWT_ISSUER` and
    /// `JWT_AUDIENCE`; an empty value counts as unset. Fails when the JWK set is unusable.
    pub fn new(
        secret: Option<&str>,
        jwks: Option<&str>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Self, KeyError> {
        let public_keys = match jwks.map(str::trim).filter(|j| !j.is_empty()) {
            Some(json) => parse_jwks(json)?,
            None => Vec::new(),
        };
        Ok(Self {
            secret: secret
                .filter(|s| !s.is_empty())
                .map(|s| DecodingKey::from_secret(s.as_bytes())),
            public_keys,
            issuer: issuer.filter(|s| !s.is_empty()),
            audience: audience.filter(|s| !s.is_empty()),
        })
    }

    /// Checks `token` at time `now_s` (seconds since the epoch) and returns its claims.
    pub fn verify(&self, token: &str, now_s: u64) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLong);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if !ALLOWED_ALGORITHMS.contains(&header.alg) {
            return Err(AuthError::AlgorithmNotAllowed(format!("{:?}", header.alg)));
        }
        // The key decides the algorithm, never the token: an HS256 token is only checked
        // against the shared secret, so a public key can never be used as an HMAC secret.
        let key = if header.alg == Algorithm::HS256 {
            self.secret.as_ref().ok_or(AuthError::UnknownKey)?
        } else {
            let kid = header.kid.as_deref().ok_or(AuthError::UnknownKey)?;
            let found = self
                .public_keys
                .iter()
                .find(|k| k.kid == kid)
                .ok_or(AuthError::UnknownKey)?;
            if found.algorithm != header.alg {
                return Err(AuthError::AlgorithmNotAllowed(format!("{:?}", header.alg)));
            }
            &found.key
        };

        let mut validation = Validation::new(header.alg);
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
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
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
/// `publish` and `rooms:write` scopes and the `demo:*` rooms.
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
        "scope": "publish rooms:write",
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

fn parse_jwks(json: &str) -> Result<Vec<PublicKey>, KeyError> {
    let set: JwkSet = serde_json::from_str(json).map_err(|e| KeyError::Jwks(e.to_string()))?;
    set.keys
        .iter()
        .map(|jwk| {
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            let bad = |reason: &str| KeyError::Key {
                kid: kid.clone(),
                reason: reason.to_owned(),
            };
            if kid.is_empty() {
                return Err(bad("every key needs a kid"));
            }
            let inferred = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                    Algorithm::EdDSA
                }
                _ => return Err(bad("only RSA, P-256 and Ed25519 public keys are supported")),
            };
            let algorithm = match jwk.common.key_algorithm {
                None => inferred,
                Some(KeyAlgorithm::RS256) if inferred == Algorithm::RS256 => inferred,
                Some(KeyAlgorithm::ES256) if inferred == Algorithm::ES256 => inferred,
                Some(KeyAlgorithm::EdDSA) if inferred == Algorithm::EdDSA => inferred,
                Some(_) => return Err(bad("alg must be RS256, ES256 or EdDSA and fit the key")),
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(&e.to_string()))?;
            Ok(PublicKey {
                kid,
                algorithm,
                key,
            })
        })
        .collect()
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
) -> Result<UpgradeToken, AuthError> {
    let offered: Vec<&str> = protocols
        .map(|p| p.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let answer_protocol = offered.contains(&PROTOCOL);
    let token = bearer(authorization)
        .or_else(|| offered.iter().find_map(|p| p.strip_prefix("bearer.")))
        .or(query_token)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::MissingToken)?;
    Ok(UpgradeToken {
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

/// Compares a presented producer key with `PUBLISH_KEY` in constant time. Both sides are
/// hashed first so that neither the content nor the length of the key leaks through timing.
pub fn publish_key_matches(presented: &str, expected: &str) -> bool {
    if expected.is_empty() {
        return false;
    }
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

/// Why `GET /v1/stats` was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum AdminError {
    /// No `ADMIN_KEY` is configured: the route is off.
    #[error("GET /v1/stats is off: set the ADMIN_KEY secret to turn it on")]
    NotConfigured,
    /// No `Authorization: Bearer` credential.
    #[error("no bearer credential: send Authorization: Bearer <ADMIN_KEY>")]
    MissingKey,
    /// A credential that is neither the admin key nor any other Herald credential.
    #[error("the admin key does not match")]
    WrongKey,
    /// A valid credential of another kind (the producer key, a user token).
    #[error("this credential does not grant stats; use the admin key")]
    NotAdmin,
}

/// Checks `Authorization` against `ADMIN_KEY` in constant time. A credential that is not
/// the admin key but that `is_other_credential` recognises (the producer key, a valid
/// token) is refused as forbidden rather than unauthenticated.
pub fn authorize_admin(
    authorization: Option<&str>,
    admin_key: Option<&str>,
    is_other_credential: impl FnOnce(&str) -> bool,
) -> Result<(), AdminError> {
    let admin_key = admin_key
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(AdminError::NotConfigured)?;
    let presented = bearer(authorization).ok_or(AdminError::MissingKey)?;
    // The publish-key comparison is a constant-time comparison of any two keys.
    if publish_key_matches(presented, admin_key) {
        Ok(())
    } else if is_other_credential(presented) {
        Err(AdminError::NotAdmin)
    } else {
        Err(AdminError::WrongKey)
    }
}

/// A producer's credential: the producer key, or a user token with the `publish` scope,
/// which `verify` checks. Something with a JWT's three parts is judged as a token, so a
/// bad token is told apart from a mistyped key.
pub fn authorize_producer<E: From<AuthError>>(
    authorization: Option<&str>,
    publish_key: &str,
    verify: impl FnOnce(&str) -> Result<Claims, E>,
) -> Result<(), E> {
    let presented = bearer(authorization).ok_or(AuthError::MissingToken)?;
    if publish_key_matches(presented, publish_key) {
        return Ok(());
    }
    if presented.split('.').count() != 3 {
        return Err(AuthError::BadPublishKey.into());
    }
    if verify(presented)?.has_scope("publish") {
        Ok(())
    } else {
        Err(AuthError::MissingScope("publish").into())
    }
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
        assert_eq!(
            upgrade_token(None, None, None),
            Err(AuthError::MissingToken)
        );
        assert_eq!(
            upgrade_token(Some("Basic xyz"), None, Some("")),
            Err(AuthError::MissingToken)
        );
    }

    #[test]
    fn publish_key_compare() {
        assert!(publish_key_matches("k-123", "k-123"));
        assert!(!publish_key_matches("k-124", "k-123"));
        assert!(!publish_key_matches("k-12", "k-123"));
        assert!(!publish_key_matches("", ""));
    }

    #[test]
    fn a_producer_is_the_key_or_a_token_with_the_publish_scope() {
        let claims = |scope: &[&str]| Claims {
            sub: "alice".into(),
            rooms: Vec::new(),
            scope: scope.iter().map(|s| s.to_string()).collect(),
            exp: 0,
        };
        let verify_as =
            |scope: &'static [&'static str]| move |_: &str| Ok::<_, AuthError>(claims(scope));
        let no_token = |_: &str| -> Result<Claims, AuthError> { panic!("not a token") };
        assert_eq!(
            authorize_producer(Some("Bearer k-1"), "k-1", no_token),
            Ok(())
        );
        assert_eq!(
            authorize_producer(Some("Bearer k-2"), "k-1", no_token),
            Err(AuthError::BadPublishKey)
        );
        assert_eq!(
            authorize_producer(None, "k-1", no_token),
            Err(AuthError::MissingToken)
        );
        assert_eq!(
            authorize_producer(Some("Bearer a.b.c"), "k-1", verify_as(&["publish"])),
            Ok(())
        );
        assert_eq!(
            authorize_producer(Some("Bearer a.b.c"), "k-1", verify_as(&["rooms:write"])),
            Err(AuthError::MissingScope("publish"))
        );
        let bad = |_: &str| Err::<Claims, _>(AuthError::BadSignature);
        assert_eq!(
            authorize_producer(Some("Bearer a.b.c"), "", bad),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn dev_tokens_pass_verification() {
        let token = dev_token("s3cret", "alice", Some("iss"), Some("aud"), 1_000).unwrap();
        let verifier =
            TokenVerifier::new(Some("s3cret"), None, Some("iss".into()), Some("aud".into()))
                .unwrap();
        assert_eq!(verifier.verify(&token, 1_000).unwrap().sub, "alice");
        assert_eq!(
            verifier.verify(&token, 1_000 + DEV_TOKEN_TTL_S + LEEWAY_S + 1),
            Err(AuthError::Expired)
        );
    }
}
