//! HS256 tokens for the subscribers, signed here so a run needs nothing but the secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

/// What Herald needs to let a subscriber in: as a user, and into any `bench:` room.
#[derive(Debug, Serialize)]
pub struct Claims<'a> {
    pub sub: String,
    pub rooms: [&'a str; 1],
    pub exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<&'a str>,
}

impl<'a> Claims<'a> {
    /// Claims for user `sub`, valid for an hour from `now_s` (unix seconds).
    pub fn bench(sub: String, now_s: u64, iss: Option<&'a str>, aud: Option<&'a str>) -> Self {
        Claims {
            sub,
            rooms: ["bench:*"],
            exp: now_s + 3600,
            iss,
            aud,
        }
    }
}

/// A compact JWS over `claims`.
pub fn sign(claims: &Claims<'_>, secret: &[u8]) -> String {
    let payload = serde_json::to_string(claims).expect("claims serialise");
    sign_payload(&payload, secret)
}

/// Signs an already-serialised payload (split out so a published test vector, whose key
/// order matters, can be checked byte for byte).
pub fn sign_payload(payload_json: &str, secret: &[u8]) -> String {
    const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(payload_json)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The well-known HS256 example token from jwt.io / RFC-style docs.
    #[test]
    fn known_vector() {
        let token = sign_payload(
            r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#,
            b"your-256-bit-secret",
        );
        assert_eq!(
            token,
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
    }

    #[test]
    fn bench_token_verifies_and_carries_the_claims() {
        let secret = b"test-jwt-secret-that-is-long-enough-0123456789";
        let claims = Claims::bench(
            "u7".into(),
            1_700_000_000,
            Some("https://auth.example.test"),
            Some("herald-test"),
        );
        let token = sign(&claims, secret);
        let (input, signature) = token.rsplit_once('.').unwrap();

        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap())
            .expect("signature verifies");

        let (header, payload) = input.split_once('.').unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(header["alg"], "HS256");
        let payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(
            payload,
            serde_json::json!({"sub":"u7","rooms":["bench:*"],"exp":1_700_003_600u64,
                               "iss":"https://auth.example.test","aud":"herald-test"})
        );
    }

    #[test]
    fn issuer_and_audience_are_optional() {
        let token = sign(&Claims::bench("u0".into(), 0, None, None), b"k");
        let payload = token.split('.').nth(1).unwrap();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(payload, r#"{"sub":"u0","rooms":["bench:*"],"exp":3600}"#);
    }
}
