//! The public keys tokens are verified with: a JWK set (pasted into `JWT_JWKS`, or served
//! at an identity provider's `JWT_JWKS_URL`) read into the keys Herald can use, and the
//! rules of one URL's cache: when to fetch, how long a fetched set is good for, and how
//! long the last good set outlives a failing provider.
//!
//! The Worker does the fetching; everything it decides with is here, at a `now` it passes.
//! A set is read leniently: a key Herald cannot use (an encryption key, RS384, P-384) is
//! skipped with its reason, for the log, instead of making every request fail.
#![warn(missing_docs)]

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use thiserror::Error;

/// A fetched set is fresh for the provider's `Cache-Control: max-age`, but at least this
/// long (s): a provider answering `no-cache` must not be fetched on every request.
pub const MIN_MAX_AGE_S: u64 = 5 * 60;
/// … and at most this long (s), so a rotation is seen within a day whatever it says.
pub const MAX_MAX_AGE_S: u64 = 24 * 3600;
/// At most one fetch per URL in this many seconds, whatever asks for it: a flood of tokens
/// with made-up `kid`s costs the provider one request a minute.
pub const REFETCH_INTERVAL_S: u64 = 60;
/// How long after it was fetched the last good set keeps verifying tokens while the
/// provider cannot be reached (s).
pub const STALE_FOR_S: u64 = 24 * 3600;

/// Why a JWK set, or one key in it, cannot be used. Never names key material.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The set is not a JWK set at all.
    #[error("the JWK set is not valid JSON of the right shape: {0}")]
    Jwks(String),
    /// One key was skipped; the others still count.
    #[error("JWK {kid:?} skipped: {reason}")]
    Key {
        /// The key's `kid` (empty when it has none).
        kid: String,
        /// What Herald cannot use about it.
        reason: String,
    },
}

/// One public key from a JWK set, bound to the single algorithm it may verify.
#[derive(Clone)]
pub struct PublicKey {
    pub(crate) kid: String,
    pub(crate) algorithm: Algorithm,
    pub(crate) key: DecodingKey,
}

impl PublicKey {
    /// The key's id, which a token names in its header.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// The usable keys of a JWK set, and the ones skipped with why.
#[derive(Clone, Default)]
pub struct KeySet {
    /// Keys that verify RS256, ES256 or EdDSA signatures.
    pub keys: Vec<PublicKey>,
    /// Keys left out, each with its reason (to be logged once).
    pub skipped: Vec<KeyError>,
}

impl KeySet {
    /// Reads a JWK set. Only a body that is not a JWK set is an error.
    pub fn parse(json: &str) -> Result<Self, KeyError> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| KeyError::Jwks(e.to_string()))?;
        let mut keys = KeySet::default();
        for jwk in &set.keys {
            match usable(jwk) {
                Ok(key) => keys.keys.push(key),
                Err(skipped) => keys.skipped.push(skipped),
            }
        }
        Ok(keys)
    }

    /// The key with id `kid`.
    pub fn find(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

fn usable(jwk: &Jwk) -> Result<PublicKey, KeyError> {
    let kid = jwk.common.key_id.clone().unwrap_or_default();
    let skip = |reason: &str| KeyError::Key {
        kid: kid.clone(),
        reason: reason.to_owned(),
    };
    if kid.is_empty() {
        return Err(skip("every key needs a kid"));
    }
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err(skip("not a signing key (use is not \"sig\")"));
    }
    let inferred = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => {
            return Err(skip(
                "only RSA, P-256 and Ed25519 public keys are supported",
            ))
        }
    };
    let algorithm = match jwk.common.key_algorithm {
        None => inferred,
        Some(KeyAlgorithm::RS256) if inferred == Algorithm::RS256 => inferred,
        Some(KeyAlgorithm::ES256) if inferred == Algorithm::ES256 => inferred,
        Some(KeyAlgorithm::EdDSA) if inferred == Algorithm::EdDSA => inferred,
        Some(_) => return Err(skip("alg must be RS256, ES256 or EdDSA and fit the key")),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| skip(&e.to_string()))?;
    Ok(PublicKey {
        kid,
        algorithm,
        key,
    })
}

/// How long a fetched set is fresh (s), from the answer's `Cache-Control`, clamped to
/// [`MIN_MAX_AGE_S`, `MAX_MAX_AGE_S`]. No `max-age` counts as the minimum.
pub fn max_age_s(cache_control: Option<&str>) -> u64 {
    let max_age = cache_control.and_then(|value| {
        value.split(',').find_map(|directive| {
            let (name, seconds) = directive.trim().split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| seconds.trim().trim_matches('"').parse::<u64>().ok())?
        })
    });
    max_age.unwrap_or(0).clamp(MIN_MAX_AGE_S, MAX_MAX_AGE_S)
}

/// One JWKS URL's keys as this isolate knows them. Times are ms since the epoch.
#[derive(Clone, Default)]
pub struct SourceCache {
    /// The last set fetched and read.
    set: KeySet,
    /// When it was fetched; `None` before the first good fetch.
    fetched_at: Option<u64>,
    /// Until when it is fresh.
    fresh_until: u64,
    /// When the last fetch started, good or not.
    attempted_at: Option<u64>,
    /// A fetch is under way (other requests wait for it rather than start their own).
    in_flight: bool,
}

impl SourceCache {
    /// Whether a token naming `kid` should have this URL fetched first: nothing fetched
    /// yet, the set is stale, or it lacks `kid` (a rotation). Never while a fetch is under
    /// way, and at most once per [`REFETCH_INTERVAL_S`].
    pub fn wants_fetch(&self, kid: &str, now_ms: u64) -> bool {
        if self.in_flight {
            return false;
        }
        let Some(attempted_at) = self.attempted_at else {
            return true;
        };
        let stale = now_ms >= self.fresh_until;
        let unknown = self.set.find(kid).is_none();
        (stale || unknown) && now_ms >= attempted_at.saturating_add(REFETCH_INTERVAL_S * 1000)
    }

    /// Whether a fetch is under way.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// A fetch starts now.
    pub fn fetching(&mut self, now_ms: u64) {
        self.attempted_at = Some(now_ms);
        self.in_flight = true;
    }

    /// The fetch answered `set`, fresh for `max_age_s`.
    pub fn fetched(&mut self, set: KeySet, max_age_s: u64, now_ms: u64) {
        self.set = set;
        self.fetched_at = Some(now_ms);
        self.fresh_until = now_ms.saturating_add(max_age_s.saturating_mul(1000));
        self.in_flight = false;
    }

    /// The fetch failed: the last good set stays, until it is [`STALE_FOR_S`] old.
    pub fn failed(&mut self) {
        self.in_flight = false;
    }

    /// The key `kid` of this URL, if the set holding it may still be used at `now_ms`.
    pub fn key(&self, kid: &str, now_ms: u64) -> Option<&PublicKey> {
        let fetched_at = self.fetched_at?;
        if now_ms >= fetched_at.saturating_add(STALE_FOR_S * 1000) {
            return None;
        }
        self.set.find(kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;
    const FIXTURE: &str = include_str!("../tests/fixtures/jwks.json");

    /// The fixture's RSA key under another `kid`, with `extra` members.
    fn rsa(kid: &str, extra: &str) -> String {
        let set: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        let n = set["keys"][0]["n"].as_str().unwrap();
        format!(r#"{{"kty":"RSA","kid":"{kid}","n":"{n}","e":"AQAB"{extra}}}"#)
    }

    fn set(keys: &[String]) -> KeySet {
        KeySet::parse(&format!(r#"{{"keys":[{}]}}"#, keys.join(","))).unwrap()
    }

    #[test]
    fn unusable_keys_are_skipped_with_their_reason_not_fatal() {
        let read = set(&[
            rsa("good", ""),
            rsa("enc", r#","use":"enc""#),
            rsa("rs384", r#","alg":"RS384""#),
            r#"{"kty":"EC","kid":"p384","crv":"P-384","x":"AA","y":"AA"}"#.to_owned(),
        ]);
        let kids: Vec<&str> = read.keys.iter().map(PublicKey::kid).collect();
        assert_eq!(kids, ["good"]);
        let skipped: Vec<String> = read.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(skipped[0].contains("\"enc\""));
        assert!(KeySet::parse("not json").is_err());
    }

    #[test]
    fn max_age_is_clamped_between_five_minutes_and_a_day() {
        assert_eq!(max_age_s(Some("public, max-age=3600")), 3600);
        assert_eq!(max_age_s(Some("max-age=10")), MIN_MAX_AGE_S);
        assert_eq!(
            max_age_s(Some("max-age=31536000, immutable")),
            MAX_MAX_AGE_S
        );
        assert_eq!(max_age_s(Some("no-cache")), MIN_MAX_AGE_S);
        assert_eq!(max_age_s(None), MIN_MAX_AGE_S);
    }

    #[test]
    fn the_first_token_fetches_then_a_fresh_set_answers_without_fetching() {
        let mut cache = SourceCache::default();
        assert!(cache.wants_fetch("good", T0));
        cache.fetching(T0);
        assert!(!cache.wants_fetch("good", T0), "one fetch at a time");
        cache.fetched(set(&[rsa("good", "")]), 600, T0);
        assert!(!cache.wants_fetch("good", T0 + 599_000));
        assert!(cache.key("good", T0 + 599_000).is_some());
        // Stale: fetched again, at most once a minute.
        assert!(cache.wants_fetch("good", T0 + 600_000));
    }

    #[test]
    fn unknown_kids_refetch_at_most_once_a_minute() {
        let mut cache = SourceCache::default();
        cache.fetching(T0);
        cache.fetched(set(&[rsa("old", "")]), 3600, T0);
        let later = T0 + 120_000;
        assert!(cache.wants_fetch("rotated", later));
        cache.fetching(later);
        cache.fetched(set(&[rsa("rotated", "")]), 3600, later);
        assert!(cache.key("rotated", later).is_some());
        // A flood of made-up kids right after: no fetch for a minute.
        for second in 0..60 {
            assert!(!cache.wants_fetch(&format!("random-{second}"), later + second * 1000));
        }
        assert!(cache.wants_fetch("random-60", later + 60_000));
    }

    #[test]
    fn the_last_good_set_outlives_a_failing_provider_for_a_day() {
        let mut cache = SourceCache::default();
        cache.fetching(T0);
        cache.fetched(set(&[rsa("good", "")]), 300, T0);
        let stale = T0 + 3_600_000;
        assert!(cache.wants_fetch("good", stale));
        cache.fetching(stale);
        cache.failed();
        assert!(cache.key("good", stale).is_some(), "kept after a failure");
        assert!(cache.key("good", T0 + STALE_FOR_S * 1000 - 1).is_some());
        assert!(cache.key("good", T0 + STALE_FOR_S * 1000).is_none());
    }
}
