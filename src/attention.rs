//! A user's attention preferences and what they mean for one notification at one moment:
//! push it now, hold it for the batch window, hold it until focus or quiet hours end, or
//! only store it.
//!
//! Pure rules over a `now` in milliseconds; quiet hours are evaluated in the user's IANA
//! time zone with the tz database compiled in, so daylight-saving changes are exact.
//! Nothing here stores or sends anything.
#![warn(missing_docs)]

use chrono::{Duration, NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{valid_event, InputError, Notification, Priority};

/// Longest batch window a user may choose.
pub const MAX_BATCH_WINDOW_MS: u64 = 60_000;
/// Most muted event names.
pub const MAX_MUTED_EVENTS: usize = 100;
/// Longest focus period that can be set in one go.
pub const MAX_FOCUS_MS: u64 = 7 * 24 * 3_600_000;

/// Quiet hours: a daily local time range in a time zone. `start` after `end` spans
/// midnight; `start == end` is never quiet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// Local `HH:MM`.
    pub start: String,
    /// Local `HH:MM`.
    pub end: String,
    /// IANA name, e.g. `Europe/Berlin`.
    pub time_zone: String,
}

/// What a user wants from live delivery. Stored per user; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    /// Notifications arriving within this many ms of the first go out as one `batch`.
    pub batch_window_ms: u64,
    /// Focus mode is on until this time (ms since the epoch); `None` is off.
    pub focus_until: Option<u64>,
    /// A daily period in which only urgent items are pushed; the rest wait until it ends.
    pub quiet_hours: Option<QuietHours>,
    /// Events stored but never pushed live.
    pub muted_events: Vec<String>,
    /// Items below this priority are stored but not pushed live.
    pub min_priority: Priority,
}

impl Default for Preferences {
    /// No batching, no focus, no quiet hours, nothing muted, every priority pushed.
    fn default() -> Self {
        Self {
            batch_window_ms: 0,
            focus_until: None,
            quiet_hours: None,
            muted_events: Vec::new(),
            min_priority: Priority::Low,
        }
    }
}

/// What happens to a just-stored notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Send it now.
    Push,
    /// Hold it until the batch window closes.
    Window,
    /// Hold it until focus mode or quiet hours end.
    Attention,
    /// Store and count it, never push it live (muted or below the minimum priority).
    StoreOnly,
}

fn field(name: &str, message: impl Into<String>) -> InputError {
    InputError::Field {
        field: name.to_owned(),
        message: message.into(),
    }
}

fn parse_time(name: &str, value: &str) -> Result<NaiveTime, InputError> {
    let b = value.as_bytes();
    let valid = b.len() == 5 && b[2] == b':' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit());
    valid
        .then(|| NaiveTime::parse_from_str(value, "%H:%M").ok())
        .flatten()
        .ok_or_else(|| field(name, "must be a local time HH:MM (00:00 to 23:59)"))
}

fn parse_zone(value: &str) -> Result<Tz, InputError> {
    value.parse::<Tz>().map_err(|_| {
        field(
            "quiet_hours.time_zone",
            format!("{value:?} is not an IANA time zone"),
        )
    })
}

impl QuietHours {
    /// If `now_ms` is within quiet hours, when they end (ms since the epoch).
    pub fn ends_after(&self, now_ms: u64) -> Option<u64> {
        let (start, end, zone) = (
            parse_time("start", &self.start).ok()?,
            parse_time("end", &self.end).ok()?,
            parse_zone(&self.time_zone).ok()?,
        );
        let now = zone.timestamp_millis_opt(now_ms as i64).single()?;
        let time = now.time().with_second(0)?.with_nanosecond(0)?;
        let quiet = if start < end {
            start <= time && time < end
        } else if start > end {
            time >= start || time < end
        } else {
            false
        };
        if !quiet {
            return None;
        }
        // The end is today if it is still ahead, otherwise (a range across midnight, now
        // in its evening part) tomorrow.
        let mut day = now.date_naive();
        if time >= end {
            day = day.succ_opt()?;
        }
        let mut local = day.and_time(end);
        // An end inside a spring-forward gap does not exist: the first minute that does.
        for _ in 0..=180 {
            let candidates = zone.from_local_datetime(&local);
            // In the repeated hour of a fall-back night the end exists twice: the first
            // occurrence still ahead is the one that ends the quiet period.
            let ahead = [candidates.earliest(), candidates.latest()]
                .into_iter()
                .flatten()
                .map(|at| at.timestamp_millis() as u64)
                .find(|at| *at > now_ms);
            if let Some(at) = ahead {
                return Some(at);
            }
            if candidates.earliest().is_some() {
                return None;
            }
            local += Duration::minutes(1);
        }
        None
    }
}

impl Preferences {
    /// Validates a `PUT /v1/preferences` body (or a stored copy). Missing fields take their
    /// defaults; unknown ones are refused so that a typo does not silently do nothing.
    pub fn parse(body: &[u8]) -> Result<Self, InputError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| InputError::Json(e.to_string()))?;
        let Value::Object(fields) = value else {
            return Err(field("body", "must be a JSON object"));
        };
        const FIELDS: [&str; 5] = [
            "batch_window_ms",
            "focus_until",
            "quiet_hours",
            "muted_events",
            "min_priority",
        ];
        if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(field(unknown, "unknown field"));
        }
        let batch_window_ms = match fields.get("batch_window_ms") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .filter(|w| *w <= MAX_BATCH_WINDOW_MS)
                .ok_or_else(|| {
                    field(
                        "batch_window_ms",
                        format!("must be a whole number from 0 to {MAX_BATCH_WINDOW_MS}"),
                    )
                })?,
        };
        let focus_until = match fields.get("focus_until") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                field(
                    "focus_until",
                    "must be a time in ms since the epoch, or null",
                )
            })?),
        };
        let quiet_hours = match fields.get("quiet_hours") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let quiet: QuietHours = serde_json::from_value(v.clone()).map_err(|_| {
                    field(
                        "quiet_hours",
                        "must be {\"start\":\"HH:MM\",\"end\":\"HH:MM\",\"time_zone\":\"Area/City\"}",
                    )
                })?;
                parse_time("quiet_hours.start", &quiet.start)?;
                parse_time("quiet_hours.end", &quiet.end)?;
                parse_zone(&quiet.time_zone)?;
                Some(quiet)
            }
        };
        let muted_events = match fields.get("muted_events") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => {
                let events: Vec<String> = serde_json::from_value(v.clone())
                    .map_err(|_| field("muted_events", "must be an array of event names"))?;
                if events.len() > MAX_MUTED_EVENTS {
                    return Err(field(
                        "muted_events",
                        format!("at most {MAX_MUTED_EVENTS} events"),
                    ));
                }
                if let Some(i) = events.iter().position(|e| !valid_event(e)) {
                    return Err(field(
                        &format!("muted_events[{i}]"),
                        "must be an event name",
                    ));
                }
                events
            }
        };
        let min_priority = match fields.get("min_priority") {
            None | Some(Value::Null) => Priority::Low,
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|_| field("min_priority", "must be one of low, normal, high, urgent"))?,
        };
        Ok(Self {
            batch_window_ms,
            focus_until,
            quiet_hours,
            muted_events,
            min_priority,
        })
    }

    /// A `focus_until` set through `PUT /v1/preferences` at `now_ms` may lie at most
    /// [`MAX_FOCUS_MS`] ahead, like one set by a `focus` frame: a mistyped year must not
    /// silence a user's devices for good. A past time stays valid: it means off.
    pub fn check_focus_horizon(&self, now_ms: u64) -> Result<(), InputError> {
        match self.focus_until {
            Some(until) if until > now_ms.saturating_add(MAX_FOCUS_MS) => Err(field(
                "focus_until",
                "must be at most 7 days ahead (or past, or null, for off)",
            )),
            _ => Ok(()),
        }
    }

    /// If focus mode or quiet hours hold back live delivery at `now_ms`, when that ends.
    pub fn attention_ends(&self, now_ms: u64) -> Option<u64> {
        let focus = self.focus_until.filter(|until| *until > now_ms);
        let quiet = self.quiet_hours.as_ref().and_then(|q| q.ends_after(now_ms));
        match (focus, quiet) {
            // Both hold: delivery resumes only when neither does. Quiet hours that end
            // during focus are over by the time focus ends, and the other way round,
            // unless a new quiet period starts meanwhile; the next check catches that.
            (Some(f), Some(q)) => Some(f.max(q)),
            (f, q) => f.or(q),
        }
    }

    /// What to do with `notification`, stored at `now_ms`.
    pub fn deliver(&self, notification: &Notification, now_ms: u64) -> Delivery {
        if self.muted_events.contains(&notification.event)
            || notification.priority < self.min_priority
        {
            Delivery::StoreOnly
        } else if notification.priority == Priority::Urgent {
            Delivery::Push
        } else if self.attention_ends(now_ms).is_some() {
            Delivery::Attention
        } else if self.batch_window_ms > 0 {
            Delivery::Window
        } else {
            Delivery::Push
        }
    }
}
