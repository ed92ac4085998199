//! One user's stored notifications: the log that the delivery promise rests on.
//!
//! The [`Inbox`] trait is the storage interface of a `UserHub`; the Durable Object maps it
//! onto its SQLite database and tests use [`MemoryInbox`]. Sequence numbers are assigned
//! by the hub, never by storage, and are never reused: `latest_seq` is kept on its own so
//! that deleting items cannot make a number come back.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// A per-user, strictly increasing notification number. The first notification is 1.
pub type Seq = u64;

/// How urgently a notification wants attention.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

/// A notification as stored in an inbox and sent in a `notification` frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Publish-wide id: the same for every recipient of one published message.
    pub id: String,
    /// This recipient's sequence number.
    pub seq: Seq,
    /// What happened, e.g. `task.updated`.
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Arbitrary JSON from the producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default)]
    pub priority: Priority,
    /// Who caused it, as the producer names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Milliseconds since the epoch, when the hub stored it.
    pub created_at: u64,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InboxError {
    #[error("inbox storage failed: {0}")]
    Storage(String),
}

/// The storage a `UserHub` needs. Implementations must make `append` durable before they
/// return: the publish route answers 202 on the strength of it.
pub trait Inbox {
    /// The highest seq ever assigned (0 for a new user), even if that item is gone.
    fn latest_seq(&self) -> Result<Seq, InboxError>;
    /// Stores `notification` and records its seq as the latest.
    fn append(&mut self, notification: &Notification) -> Result<(), InboxError>;
    /// How many stored items are unread.
    fn unread_count(&self) -> Result<u64, InboxError>;
}

/// An in-memory [`Inbox`] for tests of the core.
#[derive(Debug, Default)]
pub struct MemoryInbox {
    pub items: Vec<Notification>,
    latest_seq: Seq,
}

impl Inbox for MemoryInbox {
    fn latest_seq(&self) -> Result<Seq, InboxError> {
        Ok(self.latest_seq)
    }

    fn append(&mut self, notification: &Notification) -> Result<(), InboxError> {
        self.latest_seq = notification.seq;
        self.items.push(notification.clone());
        Ok(())
    }

    fn unread_count(&self) -> Result<u64, InboxError> {
        Ok(self.items.len() as u64)
    }
}
