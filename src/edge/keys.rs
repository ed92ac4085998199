//! The Worker's signing keys: the verifier built once per isolate from the secrets, and
//! each `JWT_JWKS_URL`'s cache, fetched when [`crate::keys::SourceCache`] says so.
//!
//! The caches live in the isolate (every request it serves shares them), keyed by URL, and
//! a key is only ever looked up in the caches of the URLs paired with the token's issuer.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::{select, Either};
use jsonwebtoken::Algorithm;
use serde_json::json;
use worker::{AbortController, Delay, Env, Fetch, Method, Request, RequestInit};

use super::{config, log, now_ms, now_s, secret, var};
use crate::auth::{self, AuthError, Claims, RemoteKey, TokenVerifier};
use crate::config::JwksSource;
use crate::error::ApiError;
use crate::keys::{self, KeySet, PublicKey, SourceCache};

/// A JWKS fetch that takes longer is abandoned (the last good set, if any, stays).
const FETCH_TIMEOUT_MS: u64 = 5_000;
/// A JWK set larger than this is not read: real ones are a few KB.
const MAX_JWKS_BYTES: usize = 256 * 1024;

thread_local! {
    static SOURCES: RefCell<HashMap<String, SourceCache>> = RefCell::new(HashMap::new());
}

/// What a token is checked with: the deployment's verifier and the key its `kid` names
/// at one of its issuer's JWKS URLs, fetched first if need be.
pub(crate) struct Keys {
    verifier: &'static TokenVerifier,
    remote: Option<(PublicKey, Option<String>)>,
}

impl Keys {
    /// The keys for `token` (a bearer credential, perhaps not a JWT at all). 503
    /// `misconfigured` when public keys are configured without an issuer or audience.
    pub(crate) async fn for_token(env: &Env, token: Option<&str>) -> Result<Self, ApiError> {
        let verifier = verifier(env)?;
        let config = config(env)?;
        if let Some(problem) = verifier.misconfiguration(config.jwks_sources.len()) {
            return Err(ApiError::misconfigured(problem));
        }
        let remote = match token.map(auth::peek) {
            Some(Ok(peek)) if peek.algorithm != Algorithm::HS256 => match peek.kid {
                Some(kid) => remote_key(&config.jwks_sources, &kid, peek.issuer.as_deref()).await,
                None => None,
            },
            _ => None,
        };
        Ok(Self { verifier, remote })
    }

    /// Verifies `token` now.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let remote = self.remote.as_ref().map(|(key, issuer)| RemoteKey {
            key,
            issuer: issuer.as_deref(),
        });
        self.verifier.verify_with(token, now_s(), remote)
    }
}

/// The verifier of `JWT_SECRET`, `JWT_JWKS`, `JWT_ISSUER` and `JWT_AUDIENCE`, built once
/// per isolate like the configuration (secrets cannot change while it lives). What is
/// wrong with them is logged then, once.
fn verifier(env: &Env) -> Result<&'static TokenVerifier, ApiError> {
    static VERIFIER: std::sync::OnceLock<TokenVerifier> = std::sync::OnceLock::new();
    if let Some(verifier) = VERIFIER.get() {
        return Ok(verifier);
    }
    let config = config(env)?;
    let fresh = TokenVerifier::new(
        secret(env, "JWT_SECRET").as_deref(),
        secret(env, "JWT_JWKS").as_deref(),
        config.issuers.clone(),
        var(env, "JWT_AUDIENCE"),
    )
    .map_err(|e| ApiError::internal(format!("configuration: {e}")))?;
    for skipped in fresh.skipped() {
        log::event(
            "config",
            json!({ "source": "JWT_JWKS", "message": skipped.to_string() }),
        );
    }
    let sources = config.jwks_sources.len();
    if let Some(problem) = fresh.misconfiguration(sources) {
        log::event(
            "error",
            json!({ "code": "misconfigured", "message": problem }),
        );
    }
    Ok(VERIFIER.get_or_init(|| fresh))
}

/// Whether the deployment's keys are misconfigured, for `/healthz`.
pub(crate) fn misconfiguration(env: &Env) -> Result<Option<&'static str>, ApiError> {
    Ok(verifier(env)?.misconfiguration(config(env)?.jwks_sources.len()))
}

/// The key `kid` at the first URL paired with `issuer` that has it, fetching each URL
/// first when its cache asks for it.
async fn remote_key(
    sources: &[JwksSource],
    kid: &str,
    issuer: Option<&str>,
) -> Option<(PublicKey, Option<String>)> {
    let paired = sources
        .iter()
        .filter(|s| s.issuer.is_none() || s.issuer.as_deref() == issuer);
    for source in paired {
        refresh(&source.url, kid).await;
        let found = with_cache(&source.url, |cache| cache.key(kid, now_ms()).cloned());
        if let Some(key) = found {
            return Some((key, source.issuer.clone()));
        }
    }
    None
}

fn with_cache<T>(url: &str, f: impl FnOnce(&mut SourceCache) -> T) -> T {
    SOURCES.with(|sources| f(sources.borrow_mut().entry(url.to_owned()).or_default()))
}

/// Fetches `url` if its cache asks for it. A request arriving while another fetches it
/// waits for that fetch (bounded) instead of starting a second.
async fn refresh(url: &str, kid: &str) {
    let waited_since = now_ms();
    while with_cache(url, |c| c.in_flight()) && now_ms() < waited_since + FETCH_TIMEOUT_MS {
        Delay::from(Duration::from_millis(20)).await;
    }
    let now = now_ms();
    let starts = with_cache(url, |cache| {
        let wants = cache.wants_fetch(kid, now);
        if wants {
            cache.fetching(now);
        }
        wants
    });
    if !starts {
        return;
    }
    match fetch(url).await {
        Ok((set, max_age_s)) => {
            log::event(
                "jwks_fetch",
                json!({
                    "url": url,
                    "keys": set.keys.len(),
                    "skipped": set.skipped.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "max_age_s": max_age_s,
                }),
            );
            with_cache(url, |cache| cache.fetched(set, max_age_s, now_ms()));
        }
        Err(message) => {
            log::event(
                "error",
                json!({ "url": url, "message": format!("jwks fetch: {message}") }),
            );
            with_cache(url, SourceCache::failed);
        }
    }
}

/// One GET of a JWK set, within [`FETCH_TIMEOUT_MS`] and [`MAX_JWKS_BYTES`].
async fn fetch(url: &str) -> Result<(KeySet, u64), String> {
    let mut init = RequestInit::new();
    init.with_method(Method::Get);
    let request = Request::new_with_init(url, &init).map_err(|e| e.to_string())?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let send = Fetch::Request(request);
    let sending = Box::pin(send.send_with_signal(&signal));
    let timeout = Box::pin(Delay::from(Duration::from_millis(FETCH_TIMEOUT_MS)));
    let mut response = match select(sending, timeout).await {
        Either::Left((answer, _)) => answer.map_err(|e| e.to_string())?,
        Either::Right(_) => {
            controller.abort();
            return Err(format!("no answer within {FETCH_TIMEOUT_MS} ms"));
        }
    };
    if response.status_code() != 200 {
        return Err(format!("answered {}", response.status_code()));
    }
    let declared = response
        .headers()
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|l| l.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_JWKS_BYTES) {
        return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
    }
    let cache_control = response.headers().get("Cache-Control").ok().flatten();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if body.len() > MAX_JWKS_BYTES {
        return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
    }
    let set = KeySet::parse(&body).map_err(|e| e.to_string())?;
    Ok((set, keys::max_age_s(cache_control.as_deref())))
}
