//! Token verification: every way a token can be good or bad, against real keys.
//!
//! The key pairs in `tests/fixtures/` are test-only; `jwks.json` holds their public halves
//! with kids `rsa-1`, `ec-1` and `ed-1`. Tokens are signed here with `jsonwebtoken`, or
//! assembled by hand where a well-behaved library would refuse to produce them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use herald::auth::{AuthError, TokenVerifier, LEEWAY_S, MAX_TOKEN_BYTES};
use herald::keys::KeyError;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const JWKS: &str = include_str!("fixtures/jwks.json");
const RSA_PRIVATE: &str = include_str!("fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("fixtures/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("fixtures/ec_private.pem");
const ED_PRIVATE: &str = include_str!("fixtures/ed25519_private.pem");

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "herald";
/// The verifier's clock in every test; tokens are built relative to it.
const NOW: u64 = 1_700_000_000;

// ---- verifiers ----------------------------------------------------------------------

/// Secret, JWK set, issuer and audience all configured, as in a full deployment.
fn verifier() -> TokenVerifier {
    TokenVerifier::new(
        Some(SECRET),
        Some(JWKS),
        vec![ISSUER.into()],
        Some(AUDIENCE.into()),
    )
    .expect("the fixture JWK set is valid")
}

fn verify(token: &str) -> Result<herald::auth::Claims, AuthError> {
    verifier().verify(token, NOW)
}

// ---- claims -------------------------------------------------------------------------

/// Claims that pass every check, to be bent one field at a time.
fn good_claims() -> Value {
    json!({ "sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 600 })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

// ---- signing ------------------------------------------------------------------------

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("test tokens always sign")
}

fn hs256_with(secret: &[u8], claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(secret),
        claims,
    )
}

fn hs256(claims: &Value) -> String {
    hs256_with(SECRET.as_bytes(), claims)
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap()
}

fn ed_key() -> EncodingKey {
    EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap()
}

fn rs256(kid: Option<&str>, claims: &Value) -> String {
    sign(Algorithm::RS256, kid, &rsa_key(), claims)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The `header.payload` part of a compact JWT from arbitrary bytes, no library involved.
fn signing_input(header: &[u8], payload: &[u8]) -> String {
    format!("{}.{}", b64(header), b64(payload))
}

/// Signs arbitrary bytes with the real secret, so that only their content can be wrong.
fn hs256_raw(payload: &[u8]) -> String {
    let input = signing_input(br#"{"alg":"HS256","typ":"JWT"}"#, payload);
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{input}.{signature}")
}

// ---- accepted tokens ----------------------------------------------------------------

#[test]
fn accepts_hs256_signed_with_the_secret() {
    let claims = verify(&hs256(&good_claims())).unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.exp, NOW + 600);
}

#[test]
fn accepts_each_asymmetric_algorithm_by_kid() {
    let cases = [
        (Algorithm::RS256, "rsa-1", rsa_key()),
        (Algorithm::ES256, "ec-1", ec_key()),
        (Algorithm::EdDSA, "ed-1", ed_key()),
    ];
    for (alg, kid, key) in cases {
        let token = sign(alg, Some(kid), &key, &good_claims());
        let claims = verify(&token).unwrap_or_else(|e| panic!("{alg:?} refused: {e:?}"));
        assert_eq!(claims.sub, "alice", "{alg:?}");
    }
}

#[test]
fn rooms_and_scope_are_read_into_claims() {
    let token = hs256(&with(
        with(good_claims(), "rooms", json!(["team:42", "org:7:*"])),
        "scope",
        json!("publish  read"),
    ));
    let claims = verify(&token).unwrap();
    assert_eq!(claims.rooms, ["team:42", "org:7:*"]);
    // OAuth-style: space-separated, extra whitespace ignored.
    assert_eq!(claims.scope, ["publish", "read"]);
    assert!(claims.has_scope("publish"));
    assert!(!claims.has_scope("admin"));

    let token = hs256(&with(good_claims(), "scope", json!(["publish", "read"])));
    assert_eq!(verify(&token).unwrap().scope, ["publish", "read"]);
}

#[test]
fn rooms_and_scope_default_to_empty() {
    let claims = verify(&hs256(&good_claims())).unwrap();
    assert!(claims.rooms.is_empty());
    assert!(claims.scope.is_empty());
}

// ---- time ---------------------------------------------------------------------------

#[test]
fn expiry_is_enforced_beyond_the_leeway() {
    let expired = hs256(&with(good_claims(), "exp", json!(NOW - LEEWAY_S - 1)));
    assert_eq!(verify(&expired), Err(AuthError::Expired));
}

#[test]
fn expiry_within_the_leeway_is_tolerated() {
    // Clock skew between the issuer and the edge must not lock users out.
    for exp in [NOW - 1, NOW - LEEWAY_S] {
        let token = hs256(&with(good_claims(), "exp", json!(exp)));
        assert!(verify(&token).is_ok(), "exp = now - {}", NOW - exp);
    }
}

#[test]
fn not_before_is_enforced_beyond_the_leeway() {
    let early = hs256(&with(good_claims(), "nbf", json!(NOW + LEEWAY_S + 1)));
    assert_eq!(verify(&early), Err(AuthError::NotYetValid));

    let skewed = hs256(&with(good_claims(), "nbf", json!(NOW + LEEWAY_S)));
    assert!(verify(&skewed).is_ok());
}

#[test]
fn a_token_without_exp_is_refused() {
    let token = hs256(&without(good_claims(), "exp"));
    assert_eq!(verify(&token), Err(AuthError::MissingExpiry));
}

// ---- issuer and audience ------------------------------------------------------------

#[test]
fn wrong_or_missing_issuer_is_refused() {
    let wrong = hs256(&with(good_claims(), "iss", json!("https://evil.example")));
    assert_eq!(verify(&wrong), Err(AuthError::WrongIssuer));
    let missing = hs256(&without(good_claims(), "iss"));
    assert_eq!(verify(&missing), Err(AuthError::WrongIssuer));
}

#[test]
fn wrong_audience_is_refused_as_string_or_list() {
    for aud in [json!("other"), json!(["other", "another"]), json!([])] {
        let token = hs256(&with(good_claims(), "aud", aud.clone()));
        assert_eq!(verify(&token), Err(AuthError::WrongAudience), "aud = {aud}");
    }
    let missing = hs256(&without(good_claims(), "aud"));
    assert_eq!(verify(&missing), Err(AuthError::WrongAudience));
}

#[test]
fn an_audience_list_containing_ours_is_accepted() {
    let token = hs256(&with(good_claims(), "aud", json!(["other", AUDIENCE])));
    assert!(verify(&token).is_ok());
}

// ---- signatures and algorithms ------------------------------------------------------

#[test]
fn a_token_signed_with_another_secret_is_refused() {
    let token = hs256_with(b"some-other-secret-of-reasonable-length", &good_claims());
    assert_eq!(verify(&token), Err(AuthError::BadSignature));
}

#[test]
fn a_tampered_payload_is_refused() {
    let token = hs256(&good_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged = with(good_claims(), "sub", json!("mallory"));
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(forged.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(verify(&tampered), Err(AuthError::BadSignature));
}

#[test]
fn alg_none_is_refused_in_any_casing() {
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({ "alg": alg, "typ": "JWT" }).to_string();
        let token = format!(
            "{}.",
            signing_input(header.as_bytes(), good_claims().to_string().as_bytes())
        );
        assert!(verify(&token).is_err(), "alg {alg} was accepted");
    }
}

#[test]
fn the_rsa_public_key_is_not_an_hmac_secret() {
    // Key confusion: sign HS256 with the public key PEM, point kid at the RSA key, and hope
    // the verifier uses the PEM bytes as the HMAC secret.
    let token = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        &good_claims(),
    );
    assert!(verify(&token).is_err());
    let no_secret = TokenVerifier::new(None, Some(JWKS), Vec::new(), None).unwrap();
    assert!(no_secret.verify(&token, NOW).is_err());
}

#[test]
fn an_rs256_token_with_an_unknown_or_missing_kid_is_refused() {
    assert_eq!(
        verify(&rs256(Some("rsa-2"), &good_claims())),
        Err(AuthError::UnknownKey)
    );
    assert_eq!(
        verify(&rs256(None, &good_claims())),
        Err(AuthError::UnknownKey)
    );
}

#[test]
fn a_kid_only_verifies_its_own_algorithm() {
    // The header claims ES256 but names the RSA key: the key's algorithm must win. The
    // library would also balk at the mismatch, so check that the verifier's own guard,
    // with its clearer reason, is what refuses it.
    let token = sign(Algorithm::ES256, Some("rsa-1"), &ec_key(), &good_claims());
    assert_eq!(
        verify(&token),
        Err(AuthError::AlgorithmNotAllowed("ES256".into()))
    );
}

#[test]
fn algorithms_outside_the_allow_list_are_refused() {
    // Correctly signed with the right secret, but HS384 is not on the list.
    let token = sign(
        Algorithm::HS384,
        None,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        &good_claims(),
    );
    assert!(matches!(
        verify(&token),
        Err(AuthError::AlgorithmNotAllowed(_))
    ));
}

#[test]
fn without_a_secret_hs256_has_no_key() {
    let token = hs256(&good_claims());
    for secret in [None, Some("")] {
        let v = TokenVerifier::new(secret, Some(JWKS), Vec::new(), None).unwrap();
        assert_eq!(v.verify(&token, NOW), Err(AuthError::UnknownKey));
    }
}

// ---- subject ------------------------------------------------------------------------

#[test]
fn a_missing_or_unusable_sub_is_refused() {
    let bad_subs = [
        json!(""),
        json!(42),
        json!("x".repeat(129)),
        json!("alice\nbob"),
    ];
    assert_eq!(
        verify(&hs256(&without(good_claims(), "sub"))),
        Err(AuthError::BadSubject)
    );
    for sub in bad_subs {
        let token = hs256(&with(good_claims(), "sub", sub.clone()));
        assert_eq!(verify(&token), Err(AuthError::BadSubject), "sub = {sub}");
    }
}

// ---- malformed input ----------------------------------------------------------------

#[test]
fn garbage_is_malformed_not_a_panic() {
    let header_only = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let garbage = [
        String::new(),
        "abc".into(),
        "a.b.c".into(),
        "..".into(),
        "q83vEjRWeJAB2N5Bq83vEjRWeJA".into(),
        format!("{header_only}.!!!.???"),
    ];
    for token in garbage {
        assert_eq!(verify(&token), Err(AuthError::Malformed), "token {token:?}");
    }
}

#[test]
fn a_correctly_signed_token_over_the_size_bound_is_refused_before_parsing() {
    let padded = |len: usize| {
        // Grow the padding until the token is exactly `len` bytes long (base64 rounds).
        (0..)
            .skip(MAX_TOKEN_BYTES * 3 / 4 - 300)
            .map(|pad| hs256(&with(good_claims(), "pad", json!("x".repeat(pad)))))
            .find(|token| token.len() >= len)
            .unwrap()
    };
    let fits = padded(MAX_TOKEN_BYTES - 3);
    assert!(fits.len() <= MAX_TOKEN_BYTES);
    assert!(verify(&fits).is_ok());
    let bloated = padded(MAX_TOKEN_BYTES + 1);
    assert!(bloated.len() > MAX_TOKEN_BYTES);
    assert_eq!(verify(&bloated), Err(AuthError::TooLong));
}

#[test]
fn a_correctly_signed_payload_that_is_not_a_claim_set_is_malformed() {
    for payload in [&b"not json"[..], b"[1,2]", b"\"alice\""] {
        let token = hs256_raw(payload);
        assert_eq!(
            verify(&token),
            Err(AuthError::Malformed),
            "payload {payload:?}"
        );
    }
}

#[test]
fn time_claims_of_the_wrong_type_are_refused() {
    // Signed correctly, so only the claim types can be to blame.
    let cases = [
        with(good_claims(), "exp", json!("tomorrow")),
        with(good_claims(), "exp", json!(-1)),
        with(good_claims(), "nbf", json!("now")),
    ];
    for claims in cases {
        let token = hs256_raw(claims.to_string().as_bytes());
        assert!(verify(&token).is_err(), "claims {claims} were accepted");
    }
}

// ---- key configuration --------------------------------------------------------------

#[test]
fn a_malformed_jwks_is_a_configuration_error() {
    for jwks in ["not json", "{\"keys\": 7}", "[]"] {
        let result = TokenVerifier::new(None, Some(jwks), Vec::new(), None);
        assert!(
            matches!(result, Err(KeyError::Jwks(_))),
            "JWT_JWKS {jwks:?} was accepted"
        );
    }
}

#[test]
fn a_jwk_without_a_kid_is_skipped_not_fatal() {
    let mut set: Value = serde_json::from_str(JWKS).unwrap();
    set["keys"][1].as_object_mut().unwrap().remove("kid");
    let verifier = TokenVerifier::new(None, Some(&set.to_string()), Vec::new(), None).unwrap();
    assert_eq!(verifier.skipped().len(), 1);
}

#[test]
fn fractional_numeric_dates_are_read_as_whole_seconds() {
    // RFC 7519 allows non-integer NumericDates.
    let claims = with(good_claims(), "exp", json!(NOW as f64 + 600.5));
    let claims = with(claims, "nbf", json!(NOW as f64 - 0.5));
    assert_eq!(verify(&hs256(&claims)).unwrap().sub, "alice");
    let expired = with(
        good_claims(),
        "exp",
        json!((NOW - LEEWAY_S - 2) as f64 + 0.5),
    );
    assert_eq!(verify(&hs256(&expired)), Err(AuthError::Expired));
}

#[test]
fn an_absurd_exp_saturates_instead_of_wrapping() {
    // 1e300 reads as u64::MAX seconds; scaled to ms for the socket's deadline it must stay
    // in the far future, not wrap to a time long past (which closed the socket with 4001
    // at once and had the SDK reconnect in a loop).
    for exp in [json!(1e300), json!(u64::MAX)] {
        let claims = verify(&hs256(&with(good_claims(), "exp", exp.clone()))).unwrap();
        assert_eq!(claims.exp, u64::MAX, "{exp}");
        let deadline = herald::socket::token_deadline(Some(claims.exp)).unwrap();
        assert!(deadline > NOW * 1000 * 1000, "{exp}: closed at {deadline}");
        // It is stored in the socket's attachment, a JavaScript value.
        assert_eq!(deadline, herald::socket::LATEST_DEADLINE_MS, "{exp}");
    }
}
