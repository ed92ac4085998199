//! Bearer tokens: where an upgrade's token is found, and what `TokenVerifier::verify`
//! makes of it with a configured secret and JWK set.
//!
//! The input is read as lines (a header cannot hold a line break):
//!
//! 0. the `Authorization` header, 1. `Sec-WebSocket-Protocol`, 2. the `?token=` value
//!    (an empty or missing line means the request has none of it);
//! 3. optionally, a JWT claims set and 4. a JOSE header (default HS256), which the target
//!    signs with the secret, so that the claim checks are reached with any claims at all.
//!
//! The tokens found in lines 0–2 come from the caller, and no caller knows the secret: if
//! one of them verifies, it must carry exactly the secret's HS256 signature (no `none`, no
//! algorithm confusion, no key from the JWK set that the fuzzer cannot sign for). A token
//! the target signed must verify exactly when its claims say so (a valid `sub`, an `exp`
//! not yet past, `iss` and `aud` when the verifier asks for them), and every refusal must
//! map to a 401 or 403 answer.

#![no_main]

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use herald::auth::{bearer, upgrade_token, AuthError, Claims, TokenVerifier, LEEWAY_S, PROTOCOL};
use herald::error::ApiError;
use herald::model::valid_user_id;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// `JWT_SECRET` of the verifiers under test. It guards nothing.
const SECRET: &str = "herald-fuzz-secret";
/// `JWT_JWKS`: the public test keys of `tests/fixtures/` (kids `rsa-1`, `ec-1`, `ed-1`).
const JWKS: &str = include_str!("../../tests/fixtures/jwks.json");
const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "herald";
/// The fake clock, in seconds since the epoch.
const NOW_S: u64 = 1_700_000_000;
const DEFAULT_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

struct Verifiers {
    /// Secret and JWK set, no issuer or audience.
    open: TokenVerifier,
    /// The secret, with `JWT_ISSUER` and `JWT_AUDIENCE` set.
    strict: TokenVerifier,
}

thread_local! {
    // Built once: reading the RSA key of the JWK set costs more than one run.
    static VERIFIERS: Verifiers = Verifiers {
        open: TokenVerifier::new(Some(SECRET), Some(JWKS), Vec::new(), None).expect("the fixture JWKS loads"),
        strict: TokenVerifier::new(Some(SECRET), None, vec![ISSUER.into()], Some(AUDIENCE.into()))
            .expect("a secret alone always loads"),
    };
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let mut lines = input.split('\n');
    let mut next = || lines.next().filter(|line| !line.is_empty());
    let (authorization, protocols, query) = (next(), next(), next());
    let (claims, header) = (next(), next());
    VERIFIERS.with(|v| {
        presented(v, authorization, protocols, query);
        if let Some(claims) = claims {
            signed(v, claims, header.unwrap_or(DEFAULT_HEADER));
        }
    });
});

fn presented(
    v: &Verifiers,
    authorization: Option<&str>,
    protocols: Option<&str>,
    query: Option<&str>,
) {
    let credential = bearer(authorization);
    if let Some(credential) = credential {
        let value = authorization.unwrap().trim();
        assert!(value.len() > 7, "{value:?}");
        assert!(
            value.as_bytes()[..7].eq_ignore_ascii_case(b"bearer "),
            "{value:?}"
        );
        assert!(!credential.is_empty() && credential == credential.trim());
    }
    let offered: Vec<&str> =
        protocols.map_or(Vec::new(), |p| p.split(',').map(str::trim).collect());
    match upgrade_token(authorization, protocols, query) {
        Some(found) => {
            assert!(!found.token.is_empty());
            assert_eq!(found.answer_protocol, offered.contains(&PROTOCOL));
            let mut candidates = offered
                .iter()
                .filter_map(|p| p.strip_prefix("bearer."))
                .chain(credential)
                .chain(query);
            assert!(candidates.any(|c| c == found.token), "{found:?}");
            if let Some(credential) = credential {
                assert_eq!(
                    found.token, credential,
                    "the Authorization header comes first"
                );
            }
            untrusted(v, &found.token);
        }
        None => {
            assert!(credential.is_none());
            answer(AuthError::MissingToken);
        }
    }
}

/// A token nobody signed for us: it may only pass if it carries the secret's signature.
fn untrusted(v: &Verifiers, token: &str) {
    for verifier in [&v.open, &v.strict] {
        match verifier.verify(token, NOW_S) {
            Ok(claims) => {
                assert!(
                    signed_with_secret(token),
                    "a forged token verified: {claims:?}"
                );
                check(&claims);
            }
            Err(e) => answer(e),
        }
    }
}

fn signed_with_secret(token: &str) -> bool {
    let Some((message, signature)) = token.rsplit_once('.') else {
        return false;
    };
    let hs256 = jsonwebtoken::decode_header(token).is_ok_and(|h| h.alg == Algorithm::HS256);
    let expected = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::HS256,
    );
    hs256 && expected.is_ok_and(|s| s == signature)
}

/// A token signed with the secret, carrying `claims` under `header`.
fn signed(v: &Verifiers, claims: &str, header: &str) {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .expect("HMAC signs anything");
    let token = format!("{message}.{signature}");
    let set: Option<Value> = serde_json::from_str(claims).ok();
    let field = |name: &str| set.as_ref().and_then(|s| s.get(name));

    let open = v.open.verify(&token, NOW_S);
    match &open {
        Ok(verified) => {
            assert!(header_is_hs256(header), "{header:?}");
            check(verified);
            assert_eq!(
                field("sub").and_then(Value::as_str),
                Some(verified.sub.as_str())
            );
        }
        Err(e) => answer(e.clone()),
    }
    // The plainest good token must pass: our header, a valid `sub`, a whole-number `exp`
    // still ahead, and no `nbf` to argue about. RFC 7519 lets a parser refuse a claim name
    // given twice (jsonwebtoken does), so such a set is not plainly good.
    let plainly_good = header == DEFAULT_HEADER
        && set.as_ref().is_some_and(Value::is_object)
        && !repeats_a_name(claims)
        && field("sub")
            .and_then(Value::as_str)
            .is_some_and(valid_user_id)
        && field("exp")
            .and_then(Value::as_u64)
            .is_some_and(|exp| exp >= NOW_S)
        && field("nbf").is_none();
    if plainly_good {
        assert!(open.is_ok(), "a good token was refused: {open:?}");
    }

    if let Ok(verified) = v.strict.verify(&token, NOW_S) {
        assert_eq!(
            open.as_ref().ok(),
            Some(&verified),
            "strict accepted what open refused"
        );
        assert_eq!(field("iss").and_then(Value::as_str), Some(ISSUER));
        let aud = match field("aud") {
            Some(Value::String(aud)) => aud == AUDIENCE,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(AUDIENCE)),
            _ => false,
        };
        assert!(aud, "the audience was not checked");
    }
}

/// Whether a JSON object names one of its members twice (`serde_json::Value` keeps the
/// last silently).
fn repeats_a_name(json: &str) -> bool {
    struct Repeats(bool);
    struct Names;
    impl<'de> Visitor<'de> for Names {
        type Value = Repeats;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Repeats, A::Error> {
            let mut seen = HashSet::new();
            let mut repeated = false;
            while let Some(name) = map.next_key::<String>()? {
                repeated |= !seen.insert(name);
                map.next_value::<IgnoredAny>()?;
            }
            Ok(Repeats(repeated))
        }
    }
    impl<'de> Deserialize<'de> for Repeats {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(Names)
        }
    }
    serde_json::from_str::<Repeats>(json).map_or(true, |r| r.0)
}

fn header_is_hs256(header: &str) -> bool {
    serde_json::from_str::<Value>(header).is_ok_and(|h| h["alg"] == "HS256")
}

/// What every verified token must say, whoever signed it.
fn check(claims: &Claims) {
    assert!(valid_user_id(&claims.sub), "{:?}", claims.sub);
    assert!(
        NOW_S <= claims.exp.saturating_add(LEEWAY_S),
        "expired at {}",
        claims.exp
    );
}

/// Every refusal becomes a 401 or 403 with a JSON body.
fn answer(e: AuthError) {
    let answer = ApiError::from(e);
    assert!(matches!(answer.status, 401 | 403), "{answer:?}");
    answer.body();
}
