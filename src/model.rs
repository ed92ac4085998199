//! The product's own words, below every rule: ids and names, [`Seq`], [`Notification`],
//! [`Draft`], [`Receipt`], and [`InputError`] for input a client got wrong.
//!
//! Everything else in the core is built on these. This module imports nothing of the
//! crate, decides nothing but what a well-formed name is, and never stores or sends.
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// A per-user, strictly increasing notification number. The first notification is 1.
pub type Seq = u64;

/// How urgently a notification wants attention.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Never pushed into focus mode or quiet hours; fine to batch.
    Low,
    #[default]
    /// The default.
    Normal,
    /// Worth attention soon.
    High,
    /// Breaks through focus mode and quiet hours.
    Urgent,
}

/// A notification as stored in an inbox and sent in `notification` and `batch` frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Publish-wide id: the same for every recipient of one published message.
    pub id: String,
    /// This recipient's sequence number.
    pub seq: Seq,
    /// What happened, e.g. `task.updated`.
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Short headline for a notification center.
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Longer text.
    pub body: Option<String>,
    /// Arbitrary JSON from the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default)]
    /// How urgently it wants attention; decides what focus and quiet hours hold.
    pub priority: Priority,
    /// Who caused it, as the producer names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The room it was published to, for room messages (and their inbox copies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Who put it in a room's history: a producer over HTTPS or a member's `publish`
    /// frame. Set on room history items only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Milliseconds since the epoch, when the hub stored it.
    pub created_at: u64,
    /// When the producer's `ttl_s` runs out (ms since the epoch); gone from every view after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Whether the user has read it (on any device).
    #[serde(default)]
    pub read: bool,
}

impl Notification {
    /// Its content's size, as [`Draft::stored_size`] counts it.
    pub fn stored_size(&self) -> usize {
        content_size(
            &self.event,
            [&self.title, &self.body, &self.actor],
            &self.data,
        )
    }

    /// Visible at `now_ms`: not past its TTL.
    pub fn live_at(&self, now_ms: u64) -> bool {
        self.expires_at.is_none_or(|at| at > now_ms)
    }
}

/// Who put an item in a room's history. A member's client event and a producer's
/// notification look alike otherwise, and a client must be able to tell them apart (a
/// chat message from a person, or a system notice) in a replay as much as live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Published by the product's backend through `POST /v1/publish`.
    Producer,
    /// Sent by a room member's socket (`publish` frame, `rooms:write` scope).
    Member,
}

/// What a publish stored for this user: the publish-wide id and the seq it got here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The publish-wide id (the first one stored, for a repeated idempotency key).
    pub id: String,
    /// The seq it got in this log.
    pub seq: Seq,
    /// The idempotency key had been seen: this is the original receipt and nothing new
    /// was stored or delivered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// A notification as the producer described it, with its publish-wide id, before a hub
/// gives it a seq. This is what the Worker sends to each recipient's hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    /// Publish-wide id, the same in every recipient's log.
    pub id: String,
    /// What happened, e.g. `task.updated`.
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Short headline.
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Longer text.
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Arbitrary JSON from the producer.
    pub data: Option<Value>,
    #[serde(default)]
    /// How urgently it wants attention.
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Who caused it, as the producer (or, in a room, the verified sender) names them.
    pub actor: Option<String>,
    /// The room it was published to, for room messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// A retry with the same key within the idempotency window stores nothing new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Seconds until the notification expires and leaves every view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
}

impl Draft {
    /// What the notification weighs in storage and on the wire, as
    /// `MAX_NOTIFICATION_BYTES` counts it: event, title, body, data (as JSON) and actor.
    pub fn stored_size(&self) -> usize {
        content_size(
            &self.event,
            [&self.title, &self.body, &self.actor],
            &self.data,
        )
    }
}

fn content_size(event: &str, texts: [&Option<String>; 3], data: &Option<Value>) -> usize {
    let texts: usize = texts
        .iter()
        .map(|t| t.as_ref().map_or(0, String::len))
        .sum();
    event.len() + texts + data.as_ref().map_or(0, |d| d.to_string().len())
}

/// A request body (or query) the client got wrong: the answer is 400 naming the field, or
/// 413 for a body over its limit. Shared by every route that validates input.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InputError {
    /// The body is over its limit.
    #[error("the body is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Bytes sent (or declared).
        size: usize,
        /// Bytes allowed.
        limit: usize,
    },
    /// One notification is over `MAX_NOTIFICATION_BYTES`.
    #[error("{field}: the notification is {size} bytes (event, title, body, data and actor); the limit is {limit}")]
    ItemTooLarge {
        /// Path of the message, e.g. `messages[2]` (`message` for a single one).
        field: String,
        /// Its stored size.
        size: usize,
        /// Bytes allowed.
        limit: usize,
    },
    #[error("the body is not valid JSON: {0}")]
    /// Not JSON at all, or JSON of the wrong shape.
    Json(String),
    #[error("{field}: {message}")]
    /// One field is wrong.
    Field {
        /// Path of the field, e.g. `messages[2].event`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Longest user id accepted in `sub`, in a publish's `to.users` or a member list.
pub const MAX_USER_ID_LEN: usize = 128;
/// Longest room name.
pub const MAX_ROOM_LEN: usize = 128;
/// Longest `?device=` name.
pub const MAX_DEVICE_LEN: usize = 64;
/// Longest `event` name.
pub const MAX_EVENT_LEN: usize = 128;
/// Longest `title`, in characters.
pub const MAX_TITLE_LEN: usize = 256;
/// Longest `body`, in characters.
pub const MAX_BODY_LEN: usize = 4_096;

/// A user id is 1–128 printable characters: it names a Durable Object and shows up in
/// logs, so control characters are refused.
pub fn valid_user_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_USER_ID_LEN && !id.chars().any(char::is_control)
}

/// The one charset of names that appear in routes, frames and logs (rooms, devices,
/// events): 1 to `max` of `A–Z a–z 0–9 . _ : -`. Nothing in it needs escaping in a path,
/// a tag or a log line, and `/`, `#`, `*` and spaces stay free for routes, shard names
/// and grant patterns.
pub fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

/// What a valid name of at most `max` characters is, as error messages say it.
pub fn name_rule(max: usize) -> String {
    format!("1 to {max} letters, digits or . _ : -")
}

/// `value` as the name in `field` (a room, a device), or the error saying what one is.
pub fn check_name<'a>(field: &str, value: &'a str, max: usize) -> Result<&'a str, InputError> {
    if valid_name(value, max) {
        Ok(value)
    } else {
        Err(InputError::Field {
            field: field.to_owned(),
            message: name_rule(max),
        })
    }
}

/// The reserved room of system-wide notices: a producer reaches it with
/// `to: {"broadcast": true}` and every valid token listens on `GET /v1/broadcast/connect`.
/// No token can be granted it and no producer can name it as a room, so that nothing
/// meant for a project room (presence, client events, member filings) ever reaches it.
pub const BROADCAST_ROOM: &str = "broadcast";

/// A room name, e.g. `project:42`: a valid name that is not [`BROADCAST_ROOM`].
pub fn valid_room(name: &str) -> bool {
    valid_name(name, MAX_ROOM_LEN) && name != BROADCAST_ROOM
}

/// `value` as the room named in `field`, or the error saying what a room name is.
pub fn check_room<'a>(field: &str, value: &'a str) -> Result<&'a str, InputError> {
    if value == BROADCAST_ROOM {
        return Err(InputError::Field {
            field: field.to_owned(),
            message: format!(
                "`{BROADCAST_ROOM}` is reserved for system-wide notices: listen on \
                 /v1/broadcast/connect, publish with to: {{\"broadcast\": true}}"
            ),
        });
    }
    check_name(field, value, MAX_ROOM_LEN)
}

/// An event name, e.g. `task.updated`.
pub fn valid_event(event: &str) -> bool {
    valid_name(event, MAX_EVENT_LEN)
}

/// A device name (`?device=`), e.g. `laptop`.
pub fn valid_device(device: &str) -> bool {
    valid_name(device, MAX_DEVICE_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(valid_room("project:42"));
        assert!(!valid_room(""));
        assert!(!valid_room("a/b"));
        assert!(!valid_room(&"x".repeat(129)));
        assert!(!valid_room(BROADCAST_ROOM));
        assert!(check_room("room", "broadcast")
            .unwrap_err()
            .to_string()
            .contains("reserved"));
        assert_eq!(check_room("room", "broadcasts"), Ok("broadcasts"));
    }

    #[test]
    fn user_ids() {
        assert!(valid_user_id("alice"));
        assert!(valid_user_id("ümlaut@example.com"));
        assert!(!valid_user_id(""));
        assert!(!valid_user_id("a\nb"));
        assert!(!valid_user_id(&"x".repeat(129)));
    }

    #[test]
    fn devices_and_events_share_the_name_charset() {
        assert!(valid_device("laptop-2"));
        assert!(!valid_device(&"d".repeat(MAX_DEVICE_LEN + 1)));
        assert!(!valid_device("my phone"));
        assert!(valid_event("task.updated"));
        assert!(!valid_event("task/updated"));
    }

    #[test]
    fn a_bad_name_is_a_field_error_saying_what_a_name_is() {
        assert_eq!(
            check_name("room", "project:1", MAX_ROOM_LEN),
            Ok("project:1")
        );
        let error = check_name("device", "my phone", MAX_DEVICE_LEN).unwrap_err();
        assert_eq!(
            error.to_string(),
            "device: 1 to 64 letters, digits or . _ : -"
        );
    }
}
