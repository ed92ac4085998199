//! [`Inbox`] on a Durable Object's SQLite database.
//!
//! Statements run synchronously inside the object, and the runtime coalesces the writes of
//! one event into a single atomic commit that must succeed before any response or socket
//! message leaves the object (its output gate). That is what lets the publish route say
//! "stored" the moment `append` returns.

use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue};

use crate::inbox::{Inbox, InboxError, Notification, Seq};

/// Schema, applied idempotently when the object starts. `hub_meta` keeps counters that
/// must not be derived from rows that retention may delete.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notifications (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    read_at INTEGER,
    item TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hub_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

pub struct SqlInbox {
    sql: SqlStorage,
}

#[derive(Deserialize)]
struct Count {
    n: i64,
}

fn storage_error(e: impl std::fmt::Display) -> InboxError {
    InboxError::Storage(e.to_string())
}

impl SqlInbox {
    pub fn open(sql: SqlStorage) -> Result<Self, InboxError> {
        sql.exec(SCHEMA, None).map_err(storage_error)?;
        Ok(Self { sql })
    }

    fn count(&self, query: &str) -> Result<u64, InboxError> {
        let rows: Vec<Count> = self
            .sql
            .exec(query, None)
            .and_then(|c| c.to_array())
            .map_err(storage_error)?;
        Ok(rows.first().map_or(0, |r| r.n.max(0) as u64))
    }
}

impl Inbox for SqlInbox {
    fn latest_seq(&self) -> Result<Seq, InboxError> {
        self.count("SELECT value AS n FROM hub_meta WHERE key = 'latest_seq'")
    }

    fn append(&mut self, notification: &Notification) -> Result<(), InboxError> {
        let item = serde_json::to_string(notification).map_err(storage_error)?;
        let seq = SqlStorageValue::Integer(notification.seq as i64);
        self.sql
            .exec(
                "INSERT INTO notifications (seq, id, created_at, item) VALUES (?, ?, ?, ?)",
                vec![
                    seq.clone(),
                    notification.id.as_str().into(),
                    SqlStorageValue::Integer(notification.created_at as i64),
                    item.into(),
                ],
            )
            .map_err(storage_error)?;
        self.sql
            .exec(
                "INSERT INTO hub_meta (key, value) VALUES ('latest_seq', ?)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                vec![seq],
            )
            .map_err(storage_error)?;
        Ok(())
    }

    fn unread_count(&self) -> Result<u64, InboxError> {
        self.count("SELECT COUNT(*) AS n FROM notifications WHERE read_at IS NULL")
    }
}
