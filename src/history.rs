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
        // Bounded by count as well as by age, so that a producer minting a fresh key per
        // request cannot grow the table for a whole window; the oldest go first.
        let excess = inbox
            .key_count()?
            .saturating_sub(limits.idempotency_max_keys);
        if excess > 0 {
            inbox.forget_oldest_keys(excess)?;
        }
    }
    Ok(Stored::New(notification))
}

/// A resume after a cursor: everything stored after it, oldest first, in `batch` frames,
/// then `synced`; or `reset` and `synced` when the cursor falls in a gap.
///
/// The glue pulls it one slice ([`REPLAY_BATCH`] items) at a time with [`Replay::next`] and
/// sends each slice before pulling the next, so a replay holds one slice in memory
/// whatever the log holds. All pulls happen within one event, and an object handles one
/// event at a time, so nothing published meanwhile can be interleaved, sent twice or
/// skipped: it is either in the replay or arrives live after `synced`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The latest seq stored when the replay was taken: what `synced` says.
    latest: Seq,
    step: Step,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The cursor falls in a gap: `reset` naming the oldest stored seq, then `synced`.
    Reset(Option<Seq>),
    /// Items after this seq come next.
    After(Seq),
    /// Every item is out; `synced` comes next.
    Synced,
    Done,
}

/// Starts the replay of what `inbox` stored after `since`.
pub fn replay(inbox: &impl Inbox, since: Seq) -> Result<Replay, InboxError> {
    let latest = inbox.latest_seq()?;
    // Items after `since` were cut by retention, or the cursor comes from a log this
    // reader never had: either way a replay would hide a gap.
    let step = if since < inbox.pruned_through()? || since > latest {
        Step::Reset(inbox.oldest_seq()?)
    } else {
        Step::After(since)
    };
    Ok(Replay { latest, step })
}

impl Replay {
    /// The highest seq this replay sends items up to: the latest stored, unless it is a
    /// `reset`, which sends none.
    pub fn through(&self) -> Option<Seq> {
        match self.step {
            Step::Reset(_) => None,
            _ => Some(self.latest),
        }
    }

    /// The next frames to send, or `None` once `synced` has been sent.
    pub fn next(
        &mut self,
        inbox: &impl Inbox,
        now_ms: u64,
    ) -> Result<Option<Vec<ServerFrame>>, InboxError> {
        let synced = ServerFrame::Synced { seq: self.latest };
        match self.step {
            Step::Done => Ok(None),
            Step::Synced => {
                self.step = Step::Done;
                Ok(Some(vec![synced]))
            }
            Step::Reset(oldest_seq) => {
                self.step = Step::Done;
                let reset = ServerFrame::Reset {
                    oldest_seq,
                    latest_seq: self.latest,
                };
                Ok(Some(vec![reset, synced]))
            }
            Step::After(cursor) => {
                let items = inbox.items(&Range {
                    after: Some(cursor),
                    before: Some(self.latest + 1),
                    newest_first: false,
                    limit: REPLAY_BATCH,
                    unread_only: false,
                    now_ms,
                })?;
                self.step = match items.last() {
                    Some(last) if items.len() == REPLAY_BATCH => Step::After(last.seq),
                    _ => Step::Synced,
                };
                match items.is_empty() {
                    true => self.next(inbox, now_ms),
                    false => Ok(Some(ServerFrame::batches(BatchReason::Replay, items))),
                }
            }
        }
    }

    /// Every frame of the replay at once, for logs whose size is bounded small enough to
    /// hold whole (a room's history, `ROOM_HISTORY_ITEMS`).
    pub fn all(mut self, inbox: &impl Inbox, now_ms: u64) -> Result<Vec<ServerFrame>, InboxError> {
        let mut frames = Vec::new();
        while let Some(slice) = self.next(inbox, now_ms)? {
            frames.extend(slice);
        }
        Ok(frames)
    }
}

/// Applies every retention bound at `now_ms`: age, TTL, idempotency keys and device acks,
/// then the count bound `limits.inbox_max_items`. A bound is due at the very time
/// [`retention_due`] names for it, so an alarm firing on time always removes something,
/// and one that fired for another deadline, before any bound is due, deletes nothing by
/// time. Answers how many unread items it removed before anyone read them.
pub fn retain(inbox: &mut impl Inbox, limits: &Limits, now_ms: u64) -> Result<u64, InboxError> {
    let by_time = by_time(limits, now_ms);
    let mut dropped = 0;
    if retention_due(inbox, limits)?.is_some_and(|due| due <= now_ms) {
        dropped += inbox.prune(&by_time)?;
    }
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

/// What the time bounds (age, TTL, keys, acks) remove at `now_ms`.
fn by_time(limits: &Limits, now_ms: u64) -> Prune {
    // "Older than x at now" is "stored before now + 1 - x".
    let due = |age: u64| (now_ms + 1).saturating_sub(age);
    Prune {
        through_seq: None,
        created_before: due(limits.inbox_max_age_ms),
        expired_by: now_ms,
        keys_before: due(limits.idempotency_window_ms),
        acks_before: due(limits.inbox_max_age_ms),
    }
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
