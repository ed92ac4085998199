//! The rows the inbox's queries read back, and the conversions between them and the
//! core's types.

use serde::Deserialize;
use worker::SqlStorageValue;

use crate::edge::unsigned;
use crate::inbox::{Horizon, InboxError};
use crate::model::Notification;

#[derive(Deserialize)]
pub(super) struct Number {
    pub(super) n: Option<i64>,
}

/// The live unread items: how many, and when the first of them expires.
#[derive(Deserialize)]
pub(super) struct UnreadRow {
    pub(super) n: Option<i64>,
    pub(super) until: Option<i64>,
}

/// What a prune is about to remove: the count and age bounds' cut (`through`, and its
/// live `unread` items, the stats' drops), and everything going, TTL-expired rows too.
#[derive(Deserialize, Clone, Copy, Default)]
pub(super) struct Cut {
    pub(super) through: Option<i64>,
    pub(super) unread: Option<i64>,
    pub(super) removed: i64,
    pub(super) last_removed: Option<i64>,
    pub(super) unread_removed: Option<i64>,
    pub(super) held_removed: Option<i64>,
}

/// The retention horizon (`HORIZON`, and within `FIGURES`).
#[derive(Deserialize)]
pub(super) struct HorizonRow {
    pub(super) oldest_item_at: Option<i64>,
    pub(super) earliest_expiry: Option<i64>,
    pub(super) oldest_key_at: Option<i64>,
    pub(super) oldest_ack_at: Option<i64>,
}

impl HorizonRow {
    pub(super) fn horizon(&self) -> Horizon {
        Horizon {
            oldest_item_at: self.oldest_item_at.map(unsigned),
            earliest_expiry: self.earliest_expiry.map(unsigned),
            oldest_key_at: self.oldest_key_at.map(unsigned),
            oldest_ack_at: self.oldest_ack_at.map(unsigned),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct ItemRow {
    pub(super) item: String,
    pub(super) read: i64,
}

#[derive(Deserialize)]
pub(super) struct IdRow {
    pub(super) id: String,
}

#[derive(Deserialize)]
pub(super) struct KeyRow {
    pub(super) id: String,
    pub(super) seq: i64,
    pub(super) at: i64,
}

/// What a woken inbox reads first (`FIGURES`).
#[derive(Deserialize)]
pub(super) struct FiguresRow {
    pub(super) latest_seq: i64,
    pub(super) item_count: i64,
    pub(super) window_closes_at: Option<i64>,
    pub(super) window_held: i64,
    pub(super) attention_held: i64,
    pub(super) preferences: Option<String>,
    #[serde(flatten)]
    pub(super) horizon: HorizonRow,
}

pub(super) fn storage_error(e: impl std::fmt::Display) -> InboxError {
    InboxError::Storage(e.to_string())
}

/// A list bound as one JSON array, for `IN (SELECT value FROM json_each(?))`. A Durable
/// Object's SQLite takes at most 100 bound parameters per statement, so one `?` per item
/// failed for a `read` of 100 ids (plus `now`) or a digest of 100 held items.
pub(super) fn json_list<T: serde::Serialize>(items: &[T]) -> Result<SqlStorageValue, InboxError> {
    serde_json::to_string(items)
        .map(SqlStorageValue::String)
        .map_err(storage_error)
}

pub(super) const IN_LIST: &str = "IN (SELECT value FROM json_each(?))";

pub(super) fn notification(item: &str, read: i64) -> Result<Notification, InboxError> {
    let mut item: Notification = serde_json::from_str(item).map_err(storage_error)?;
    item.read = read != 0;
    Ok(item)
}
