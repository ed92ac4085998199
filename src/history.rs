//! The rules of a seq-numbered log, over any [`Inbox`]: what a stored draft becomes, what
//! a resume replays, what retention removes and when it is next due.
//!
//! A user's inbox and a room's history are the same kind of log and keep the same
//! promise: seqs are assigned in order and never reused; a resume replays everything
//! after the cursor or says `reset`, never a silent gap; retention keeps the log bounded.
//! Both hubs call these functions, so the promise has one implementation. What a hub
//! does with a stored item (push it, hold it, relay it to a room) is the hub's own rule.
#![warn(missing_docs)]

use crate::config::Limits;
use crate::frame::{BatchReason, ServerFrame};
use crate::inbox::{Inbox, InboxError, Prune, Range};
use crate::model::{Draft, Notification, Receipt, Seq, Source};

/// Items per `batch` frame of a replay.
pub const REPLAY_BATCH: usize = 100;

/// What storing one draft did.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// New: this notification now has the next seq.
    New(Notification),
    /// Its idempotency key was seen within the window: the original receipt, and
    /// nothing was stored or is to be delivered.
    Duplicate(Receipt),
}

impl Stored {
    /// The receipt a publish answers for this draft.
    pub fn receipt(&self) -> Receipt {
        match self {
            Stored::New(n) => Receipt {
                id: n.id.clone(),
                seq: n.seq,
                duplicate: false,
            },
            Stored::Duplicate(original) => Receipt {
                duplicate: true,
                ..original.clone()
            },
        }
    }
}

/// Stores `draft` with the seq after `latest`, unless its idempotency key was seen within
/// `limits.idempotency_window_ms`. `source` is set on room history items only.
pub fn store(
    inbox: &mut impl Inbox,
    draft: Draft,
    source: Option<Source>,
    latest: Seq,
    limits: &Limits,
    now_ms: u64,
) -> Result<Stored, InboxError> {
    if let Some(key) = &draft.idempotency_key {
        if let Some((original, at)) = inbox.receipt_for(key)? {
            if now_ms < at + limits.idempotency_window_ms {
                return Ok(Stored::Duplicate(original));
            }
        }
    }
    let notification = Notification {
        id: draft.id,
        seq: latest + 1,
        event: draft.event,
        title: draft.title,
        body: draft.body,
        data: draft.data,
        priority: draft.priority,
        actor: draft.actor,
        room: draft.room,
        source,
        created_at: now_ms,
        expires_at: draft.ttl_s.map(|ttl| now_ms + ttl * 1000),
        read: false,
    };
    inbox.append(&notification)?;
    if let Some(key) = &draft.idempotency_key {
        let receipt = Stored::New(notification.clone()).receipt();
        inbox.remember(key, &receipt, now_ms)?;
    }
    Ok(Stored::New(notification))
}

/// Everything stored after `since`, oldest first, in `batch` frames, then `synced`.
///
/// The whole replay is produced within one event, and an object handles one event at a
/// time, so nothing published meanwhile can be interleaved, sent twice or skipped: it is
/// either in the replay or arrives live after `synced`.
pub fn replay(inbox: &impl Inbox, since: Seq, now_ms: u64) -> Result<Vec<ServerFrame>, InboxError> {
    let latest = inbox.latest_seq()?;
    // Items after `since` were cut by retention, or the cursor comes from a log this
    // reader never had: either way a replay would hide a gap.
    if since < inbox.pruned_through()? || since > latest {
        return Ok(vec![
            ServerFrame::Reset {
                oldest_seq: inbox.oldest_seq()?,
                latest_seq: latest,
            },
            ServerFrame::Synced { seq: latest },
        ]);
    }
    let mut frames = Vec::new();
    let mut cursor = since;
    loop {
        let items = inbox.items(&Range {
            after: Some(cursor),
            before: None,
            newest_first: false,
            limit: REPLAY_BATCH,
            unread_only: false,
            now_ms,
        })?;
        let Some(last) = items.last() else { break };
        cursor = last.seq;
        let full = items.len() == REPLAY_BATCH;
        frames.extend(ServerFrame::batches(BatchReason::Replay, items));
        if !full {
            break;
        }
    }
    frames.push(ServerFrame::Synced { seq: latest });
    Ok(frames)
}

/// Applies every retention bound at `now_ms`: age, TTL, idempotency keys and device acks,
/// then the count bound `limits.inbox_max_items`. A bound is due at the very time
/// [`retention_due`] names for it, so an alarm firing on time always removes something.
/// Answers how many unread items it removed before anyone read them.
pub fn retain(inbox: &mut impl Inbox, limits: &Limits, now_ms: u64) -> Result<u64, InboxError> {
    // "Older than x at now" is "stored before now + 1 - x".
    let due = |age: u64| (now_ms + 1).saturating_sub(age);
    let by_time = Prune {
        through_seq: None,
        created_before: due(limits.inbox_max_age_ms),
        expired_by: now_ms,
        keys_before: due(limits.idempotency_window_ms),
        acks_before: due(limits.inbox_max_age_ms),
    };
    let mut dropped = inbox.prune(&by_time)?;
    // Only then the count bound, so that expired items make room before live ones go.
    let excess = inbox.item_count()?.saturating_sub(limits.inbox_max_items);
    if excess > 0 {
        let oldest = inbox.items(&Range {
            after: None,
            before: None,
            newest_first: false,
            limit: excess as usize,
            unread_only: false,
            now_ms,
        })?;
        dropped += inbox.prune(&Prune {
            through_seq: oldest.last().map(|n| n.seq),
            ..by_time
        })?;
    }
    Ok(dropped)
}

/// The earliest moment a retention bound removes something, if anything is stored.
pub fn retention_due(inbox: &impl Inbox, limits: &Limits) -> Result<Option<u64>, InboxError> {
    let h = inbox.horizon()?;
    let age = limits.inbox_max_age_ms;
    Ok([
        h.oldest_item_at.map(|at| at + age),
        h.earliest_expiry,
        h.oldest_key_at.map(|at| at + limits.idempotency_window_ms),
        h.oldest_ack_at.map(|at| at + age),
    ]
    .into_iter()
    .flatten()
    .min())
}
