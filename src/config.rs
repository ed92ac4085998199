//! The deployment's settings: allowed origins, dev mode and the limits from DESIGN.md.
//!
//! Values come from `wrangler.toml` `[vars]` (or secrets) through a lookup function, so
//! this module never touches the runtime and a test can build any configuration it likes.
//! A var that is present but unparsable is an error, not a silent default: a typo in a
//! limit must not quietly lift it.
#![warn(missing_docs)]

use thiserror::Error;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// How often an object reports its counters at most, unless `STATS_REPORT_MS` says
/// otherwise (see [`crate::stats`]). A minute, like the per-minute figures of hosted
/// services: a report that has to wait costs the object an alarm run, so with many users
/// each getting a notification now and then, a short interval costs about one alarm
/// run per notification.
pub const DEFAULT_REPORT_INTERVAL_MS: u64 = 60_000;

/// Limits that bound what one client or producer can make Herald do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest client WebSocket frame accepted (`MAX_FRAME_BYTES`); larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Largest publish request body (`MAX_PUBLISH_BYTES`); larger is a 413.
    pub max_publish_bytes: usize,
    /// Most messages in one batch publish (`MAX_BATCH_MESSAGES`).
    pub max_batch_messages: usize,
    /// Largest stored size of one notification: its event, title, body, data (as JSON)
    /// and actor together (`MAX_NOTIFICATION_BYTES`); larger is a 413. With the inbox's
    /// item bound it bounds what a user object ever holds and replays.
    pub max_notification_bytes: usize,
    /// Most distinct recipients one publish request may reach (`MAX_RECIPIENTS`); each is a
    /// subrequest to a Durable Object, and the platform caps subrequests per request.
    pub max_recipients: usize,
    /// Most simultaneous sockets per user (`MAX_DEVICES`); one more is closed with 4009.
    pub max_devices: usize,
    /// How often clients are told to send `ping` (`HEARTBEAT_MS`).
    pub heartbeat_ms: u64,
    /// Sustained client frames per second per socket (`CLIENT_FRAMES_PER_S`); above it the
    /// socket is closed with 4008.
    pub frame_rate_per_s: u64,
    /// Client frames a socket may send in a burst (`CLIENT_FRAME_BURST`).
    pub frame_burst: u64,
    /// Most notifications kept per user (`INBOX_MAX_ITEMS`); older ones are pruned on write.
    pub inbox_max_items: u64,
    /// How long notifications are kept, in ms (`INBOX_MAX_AGE_DAYS`).
    pub inbox_max_age_ms: u64,
    /// How long an idempotency key is remembered, in ms (`IDEMPOTENCY_HOURS`).
    pub idempotency_window_ms: u64,
    /// Most idempotency keys remembered per user (`IDEMPOTENCY_MAX_KEYS`); past it the
    /// oldest are forgotten first.
    pub idempotency_max_keys: u64,
    /// A socket silent (no ping, no frame) this long is closed (`IDLE_TIMEOUT_MS`).
    pub idle_timeout_ms: u64,
    /// Items kept in a room's history (`ROOM_HISTORY_ITEMS`).
    pub room_history_items: u64,
    /// Sockets a room object holds before new ones go to shard objects (`ROOM_SHARD_SIZE`).
    pub room_shard_size: u64,
    /// How long a user who left a room may come back before `left` is announced
    /// (`ROOM_PRESENCE_GRACE_MS`).
    pub room_presence_grace_ms: u64,
    /// How often an object reports its counters to the stats object at most
    /// (`STATS_REPORT_MS`); see [`crate::stats`].
    pub stats_report_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            max_publish_bytes: 256 * 1024,
            max_batch_messages: 100,
            max_notification_bytes: 16 * 1024,
            max_recipients: 1_000,
            max_devices: 16,
            heartbeat_ms: 25_000,
            frame_rate_per_s: 20,
            frame_burst: 40,
            inbox_max_items: 1_000,
            inbox_max_age_ms: 30 * DAY_MS,
            idempotency_window_ms: 24 * HOUR_MS,
            idempotency_max_keys: 10_000,
            idle_timeout_ms: 75_000,
            room_history_items: 500,
            room_shard_size: 5_000,
            room_presence_grace_ms: 5_000,
            stats_report_ms: DEFAULT_REPORT_INTERVAL_MS,
        }
    }
}

/// Everything the Worker and the hubs read from their environment, except secrets used
/// for verification (those go straight into [`crate::auth::TokenVerifier`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Origins a browser request may come from (`ALLOWED_ORIGINS`, comma-separated).
    pub allowed_origins: Vec<String>,
    /// Where the identity provider publishes its signing keys (`JWT_JWKS_URL`).
    pub jwks_sources: Vec<JwksSource>,
    /// Issuers a token's `iss` must be one of, when any (`JWT_ISSUER`, comma-separated).
    pub issuers: Vec<String>,
    /// `DEV_MODE=true`: local development only.
    pub dev_mode: bool,
    /// The bounds above.
    pub limits: Limits,
}

/// One JWKS URL, and the issuer whose tokens its keys may verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSource {
    /// `https://…` (or loopback `http://` in dev mode), checked by [`outbound_url`].
    pub url: String,
    /// The `JWT_ISSUER` paired with it: the one issuer, or the one in the same position.
    pub issuer: Option<String>,
}

/// Whether Herald may send requests to `url`, which a deployment (or, for Web Push, a
/// user) chose: only `https://`, so a Worker cannot be pointed at internal plain-HTTP
/// services; in dev mode also `http://` to this machine's loopback address, for tests.
/// Every URL Herald calls out to is checked here.
pub fn outbound_url(url: &str, dev_mode: bool) -> Result<(), &'static str> {
    let (rest, secure) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (rest, true),
        (None, Some(rest)) => (rest, false),
        _ => return Err("must start with https://"),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("must not carry credentials");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, port)) => (host, port.strip_prefix(':')),
            None => return Err("has a malformed host"),
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty()
        || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("has a malformed host");
    }
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "::1");
    match (secure, dev_mode && loopback) {
        (true, _) | (false, true) => Ok(()),
        (false, false) => Err("must start with https:// (http:// only to loopback in DEV_MODE)"),
    }
}

/// Why the deployment's vars could not be read; the Worker refuses to run on them.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A URL Herald would call is not one it may call (see [`outbound_url`]).
    #[error("{name}: {value:?} {reason}")]
    BadUrl {
        /// The var.
        name: &'static str,
        /// The URL.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `JWT_ISSUER` lists neither one issuer nor one per `JWT_JWKS_URL`.
    #[error("JWT_ISSUER lists {issuers} issuers for {urls} JWT_JWKS_URL entries; give one, or one per URL in the same order")]
    IssuerCount {
        /// Issuers listed.
        issuers: usize,
        /// URLs listed.
        urls: usize,
    },
    /// A limit is set but is not a whole number above zero.
    #[error("{name} must be a positive whole number, got {value:?}")]
    NotANumber {
        /// The var, as named in `wrangler.toml`.
        name: &'static str,
        /// What it was set to.
        value: String,
    },
}

impl Limits {
    /// The limits a room's history runs under: the inbox rules with the room's size.
    pub fn for_room(&self) -> Limits {
        Limits {
            inbox_max_items: self.room_history_items,
            ..self.clone()
        }
    }
}

impl Config {
    /// Reads the configuration through `lookup(name)`, which returns a var's value if set.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Limits::default();
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match lookup(name) {
                None => Ok(default),
                Some(value) => match value.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(ConfigError::NotANumber { name, value }),
                },
            }
        };
        let size =
            |name: &'static str, default: usize| number(name, default as u64).map(|n| n as usize);
        let limits = Limits {
            max_frame_bytes: size("MAX_FRAME_BYTES", defaults.max_frame_bytes)?,
            max_publish_bytes: size("MAX_PUBLISH_BYTES", defaults.max_publish_bytes)?,
            max_batch_messages: size("MAX_BATCH_MESSAGES", defaults.max_batch_messages)?,
            max_notification_bytes: size(
                "MAX_NOTIFICATION_BYTES",
                defaults.max_notification_bytes,
            )?,
            max_recipients: size("MAX_RECIPIENTS", defaults.max_recipients)?,
            max_devices: size("MAX_DEVICES", defaults.max_devices)?,
            heartbeat_ms: number("HEARTBEAT_MS", defaults.heartbeat_ms)?,
            frame_rate_per_s: number("CLIENT_FRAMES_PER_S", defaults.frame_rate_per_s)?,
            frame_burst: number("CLIENT_FRAME_BURST", defaults.frame_burst)?,
            inbox_max_items: number("INBOX_MAX_ITEMS", defaults.inbox_max_items)?,
            inbox_max_age_ms: number("INBOX_MAX_AGE_DAYS", defaults.inbox_max_age_ms / DAY_MS)?
                * DAY_MS,
            idempotency_window_ms: number(
                "IDEMPOTENCY_HOURS",
                defaults.idempotency_window_ms / HOUR_MS,
            )? * HOUR_MS,
            idempotency_max_keys: number("IDEMPOTENCY_MAX_KEYS", defaults.idempotency_max_keys)?,
            idle_timeout_ms: number("IDLE_TIMEOUT_MS", defaults.idle_timeout_ms)?,
            room_history_items: number("ROOM_HISTORY_ITEMS", defaults.room_history_items)?,
            room_shard_size: number("ROOM_SHARD_SIZE", defaults.room_shard_size)?,
            room_presence_grace_ms: number(
                "ROOM_PRESENCE_GRACE_MS",
                defaults.room_presence_grace_ms,
            )?,
            stats_report_ms: number("STATS_REPORT_MS", defaults.stats_report_ms)?,
        };
        let allowed_origins = lookup("ALLOWED_ORIGINS")
            .map(|list| {
                list.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let dev_mode = lookup("DEV_MODE").is_some_and(|v| v.trim() == "true");
        let issuers = list(&lookup, "JWT_ISSUER");
        Ok(Self {
            allowed_origins,
            jwks_sources: jwks_sources(list(&lookup, "JWT_JWKS_URL"), &issuers, dev_mode)?,
            issuers,
            dev_mode,
            limits,
        })
    }

    /// Whether a request carrying `Origin: origin` may proceed. Requests without an Origin
    /// (servers, native apps) are not checked here; they rely on their token alone.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        self.allowed_origins.iter().any(|allowed| allowed == origin)
    }
}

/// The comma-separated values of `name`, trimmed, empty ones left out.
fn list(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Vec<String> {
    lookup(name)
        .map(|value| {
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The `JWT_JWKS_URL` `urls`, each paired with its issuer of `issuers` (`JWT_ISSUER`).
fn jwks_sources(
    urls: Vec<String>,
    issuers: &[String],
    dev_mode: bool,
) -> Result<Vec<JwksSource>, ConfigError> {
    if issuers.len() > 1 && issuers.len() != urls.len() && !urls.is_empty() {
        return Err(ConfigError::IssuerCount {
            issuers: issuers.len(),
            urls: urls.len(),
        });
    }
    urls.iter()
        .enumerate()
        .map(|(i, url)| {
            outbound_url(url, dev_mode).map_err(|reason| ConfigError::BadUrl {
                name: "JWT_JWKS_URL",
                value: url.clone(),
                reason,
            })?;
            let issuer = match issuers.len() {
                0 => None,
                1 => Some(issuers[0].clone()),
                _ => Some(issuers[i].clone()),
            };
            Ok(JwksSource {
                url: url.clone(),
                issuer,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_design_limits() {
        let c = config(&[]).unwrap();
        assert_eq!(c.limits.max_frame_bytes, 65_536);
        assert_eq!(c.limits.max_publish_bytes, 262_144);
        assert_eq!(c.limits.max_devices, 16);
        assert!(!c.dev_mode);
    }

    #[test]
    fn a_malformed_limit_is_an_error_not_a_default() {
        assert_eq!(
            config(&[("MAX_DEVICES", "sixteen")]),
            Err(ConfigError::NotANumber {
                name: "MAX_DEVICES",
                value: "sixteen".into()
            })
        );
        assert!(config(&[("MAX_DEVICES", "0")]).is_err());
    }

    #[test]
    fn origins_match_exactly() {
        let c = config(&[(
            "ALLOWED_ORIGINS",
            "https://app.example.com, http://127.0.0.1:8787/",
        )])
        .unwrap();
        assert!(c.origin_allowed("https://app.example.com"));
        assert!(c.origin_allowed("http://127.0.0.1:8787"));
        assert!(!c.origin_allowed("https://app.example.com.evil.test"));
        assert!(!c.origin_allowed("http://app.example.com"));
    }

    #[test]
    fn outbound_urls_are_https_or_loopback_in_dev_mode() {
        assert_eq!(
            outbound_url("https://idp.example.com/.well-known/jwks.json", false),
            Ok(())
        );
        assert!(outbound_url("http://idp.example.com/jwks", false).is_err());
        assert!(outbound_url("http://127.0.0.1:8080/jwks", false).is_err());
        assert_eq!(outbound_url("http://127.0.0.1:8080/jwks", true), Ok(()));
        assert_eq!(outbound_url("http://[::1]:9/jwks", true), Ok(()));
        assert!(outbound_url("http://10.0.0.1/jwks", true).is_err());
        assert!(outbound_url("http://127.0.0.1.evil.test/jwks", true).is_err());
        assert!(outbound_url("https://user:pw@idp.example.com/", false).is_err());
        assert!(outbound_url("ftp://idp.example.com/", false).is_err());
        assert!(outbound_url("https://:443/", false).is_err());
    }

    #[test]
    fn jwks_urls_pair_with_one_issuer_or_one_each() {
        let c = config(&[
            (
                "JWT_JWKS_URL",
                "https://a.example/jwks, https://b.example/jwks",
            ),
            ("JWT_ISSUER", "https://a.example/,https://b.example/"),
        ])
        .unwrap();
        assert_eq!(
            c.jwks_sources[1].issuer.as_deref(),
            Some("https://b.example/")
        );
        let one = config(&[
            (
                "JWT_JWKS_URL",
                "https://a.example/jwks,https://b.example/jwks",
            ),
            ("JWT_ISSUER", "https://a.example/"),
        ])
        .unwrap();
        assert!(one
            .jwks_sources
            .iter()
            .all(|s| s.issuer.as_deref() == Some("https://a.example/")));
        assert!(matches!(
            config(&[
                ("JWT_JWKS_URL", "https://a.example/jwks"),
                ("JWT_ISSUER", "x,y"),
            ]),
            Err(ConfigError::IssuerCount { .. })
        ));
        assert!(matches!(
            config(&[("JWT_JWKS_URL", "http://a.example/jwks")]),
            Err(ConfigError::BadUrl { .. })
        ));
    }
}
