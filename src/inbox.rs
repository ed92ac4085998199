//! One user's stored notifications: the log that the delivery promise rests on.
//!
//! The [`Inbox`] trait is the storage interface of a `UserHub`: a small set of dumb
//! operations (append, range reads, mark read, delete, prune) that the Durable Object maps
//! onto SQLite and tests run on [`MemoryInbox`]. The rules built on them — which seq comes
//! next, what a resume replays, what retention removes — live in [`crate::hub`], so that
//! both stores behave alike by construction.
//!
//! Sequence numbers are never reused: `latest_seq` is kept apart from the rows, so deleting
//! or pruning items cannot make a number come back. `pruned_through` records how far
//! retention has cut the log, which is how a resume tells an honest gap from a silent one.
#![warn(missing_docs)]

use std::collections::BTreeMap;

use thiserror::Error;

use crate::attention::Preferences;
use crate::model::{Notification, Receipt, Seq};

/// A slice of the log, for replays and inbox pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Only seqs greater than this.
    pub after: Option<Seq>,
    /// Only seqs smaller than this.
    pub before: Option<Seq>,
    /// Oldest first (replays, forward paging) or newest first (the notification center).
    pub newest_first: bool,
    /// At most this many items.
    pub limit: usize,
    /// Only unread items.
    pub unread_only: bool,
    /// Items expired at this time are left out.
    pub now_ms: u64,
}

/// What retention removes in one pass. Every bound is inclusive of what it removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prune {
    /// Items with seq ≤ this (the count bound).
    pub through_seq: Option<Seq>,
    /// Items created before this time (the age bound).
    pub created_before: u64,
    /// Items whose TTL ran out at or before this time.
    pub expired_by: u64,
    /// Idempotency keys remembered before this time.
    pub keys_before: u64,
    /// Device acks last updated before this time.
    pub acks_before: u64,
}

/// The earliest time each kind of stored thing will need pruning, from which the hub
/// computes its one alarm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Horizon {
    /// When the oldest stored item was created; the age bound removes it.
    pub oldest_item_at: Option<u64>,
    /// The soonest TTL end among stored items.
    pub earliest_expiry: Option<u64>,
    /// When the oldest idempotency key was remembered; the idempotency window forgets it.
    pub oldest_key_at: Option<u64>,
    /// When the least recently updated device ack was written; the age bound removes it.
    pub oldest_ack_at: Option<u64>,
}

/// Why a stored notification has not been pushed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Waiting for the batch window to close.
    Window,
    /// Waiting for focus mode or quiet hours to end.
    Attention,
}

/// Why the inbox could not be read or written.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InboxError {
    /// The store underneath (SQLite in the Durable Object) failed, with its message.
    #[error("inbox storage failed: {0}")]
    Storage(String),
}

/// The storage a `UserHub` needs. Writes must be durable when the event that made them
/// ends: the publish route answers 202 on the strength of `append`.
pub trait Inbox {
    /// The highest seq ever assigned (0 for a new user), even if that item is gone.
    fn latest_seq(&self) -> Result<Seq, InboxError>;
    /// The highest seq that retention (count or age) has removed; 0 if none.
    fn pruned_through(&self) -> Result<Seq, InboxError>;
    /// The smallest seq still stored, if any.
    fn oldest_seq(&self) -> Result<Option<Seq>, InboxError>;
    /// How many items are stored (expired or not).
    fn item_count(&self) -> Result<u64, InboxError>;
    /// Stores `notification` and records its seq as the latest.
    fn append(&mut self, notification: &Notification) -> Result<(), InboxError>;
    /// Items in `range`, in the order it asks for.
    fn items(&self, range: &Range) -> Result<Vec<Notification>, InboxError>;
    /// The live items among `ids` (any order).
    fn items_by_id(&self, ids: &[String], now_ms: u64) -> Result<Vec<Notification>, InboxError>;
    /// Live unread items.
    fn unread_count(&self, now_ms: u64) -> Result<u64, InboxError>;
    /// Marks the live unread items with seq ≤ `through` (or in `seqs`) read; returns their
    /// ids in seq order.
    fn mark_read(&mut self, target: ReadTarget<'_>, now_ms: u64)
        -> Result<Vec<String>, InboxError>;
    /// Removes the item `seq`; false if it was not there.
    fn remove(&mut self, seq: Seq) -> Result<bool, InboxError>;
    /// Removes what `prune` names and records the highest seq the count or age bound
    /// removed as `pruned_through`. Returns how many of the items those bounds removed
    /// were live and unread: notifications no device will now see (`dropped` in the
    /// stats). Items that ran out their TTL are not counted.
    fn prune(&mut self, prune: &Prune) -> Result<u64, InboxError>;
    /// When each kind of stored thing next needs pruning.
    fn horizon(&self) -> Result<Horizon, InboxError>;
    /// The receipt stored under an idempotency key, with when it was remembered.
    fn receipt_for(&self, key: &str) -> Result<Option<(Receipt, u64)>, InboxError>;
    /// Remembers `receipt` under `key`.
    fn remember(&mut self, key: &str, receipt: &Receipt, now_ms: u64) -> Result<(), InboxError>;
    /// How many idempotency keys are remembered.
    fn key_count(&self) -> Result<u64, InboxError>;
    /// Forgets the `count` idempotency keys remembered longest ago.
    fn forget_oldest_keys(&mut self, count: u64) -> Result<(), InboxError>;
    /// Records that `device` has seen everything up to `seq`; a lower seq than the one
    /// stored (from an older session of the device) leaves it in place.
    fn record_ack(&mut self, device: &str, seq: Seq, now_ms: u64) -> Result<(), InboxError>;
    /// Forgets the ack recorded under `device`.
    fn forget_ack(&mut self, device: &str) -> Result<(), InboxError>;
    /// The user's preferences (the defaults until any are set).
    fn preferences(&self) -> Result<Preferences, InboxError>;
    /// Replaces the user's preferences.
    fn set_preferences(&mut self, preferences: &Preferences) -> Result<(), InboxError>;
    /// Marks the items `seqs` as held for `hold`, or releases them with `None`.
    fn set_hold(&mut self, seqs: &[Seq], hold: Option<Hold>) -> Result<(), InboxError>;
    /// Up to `limit` held items (expired ones included) with seqs in `after + 1..=through`,
    /// oldest first.
    fn held(&self, after: Seq, through: Seq, limit: usize)
        -> Result<Vec<Notification>, InboxError>;
    /// Whether any item is held for `hold`.
    fn holds(&self, hold: Hold) -> Result<bool, InboxError>;
    /// Holds every item held for `from` for `to` instead.
    fn move_holds(&mut self, from: Hold, to: Hold) -> Result<(), InboxError>;
    /// When the open batch window closes, if one is open.
    fn window_closes_at(&self) -> Result<Option<u64>, InboxError>;
    /// Records when the open batch window closes; `None` once it has closed.
    fn set_window_closes_at(&mut self, at: Option<u64>) -> Result<(), InboxError>;
}

/// Which items a read marks, after the hub has resolved ids to seqs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadTarget<'a> {
    /// Exactly these items (a `read` naming ids).
    Seqs(&'a [Seq]),
    /// Every item up to and including this seq (`up_to_seq`, or `all`).
    Through(Seq),
}

impl ReadTarget<'_> {
    fn covers(&self, seq: Seq) -> bool {
        match self {
            ReadTarget::Seqs(seqs) => seqs.contains(&seq),
            ReadTarget::Through(through) => seq <= *through,
        }
    }
}

/// An in-memory [`Inbox`] for tests of the core.
#[derive(Debug, Default)]
pub struct MemoryInbox {
    items: BTreeMap<Seq, Notification>,
    latest_seq: Seq,
    pruned_through: Seq,
    keys: BTreeMap<String, (Receipt, u64)>,
    /// Device → (acked seq, updated at).
    pub acks: BTreeMap<String, (Seq, u64)>,
    preferences: Option<Preferences>,
    holds: BTreeMap<Seq, Hold>,
    window_closes_at: Option<u64>,
}

impl Inbox for MemoryInbox {
    fn latest_seq(&self) -> Result<Seq, InboxError> {
        Ok(self.latest_seq)
    }

    fn pruned_through(&self) -> Result<Seq, InboxError> {
        Ok(self.pruned_through)
    }

    fn oldest_seq(&self) -> Result<Option<Seq>, InboxError> {
        Ok(self.items.keys().next().copied())
    }

    fn item_count(&self) -> Result<u64, InboxError> {
        Ok(self.items.len() as u64)
    }

    fn append(&mut self, notification: &Notification) -> Result<(), InboxError> {
        self.latest_seq = notification.seq;
        self.items.insert(notification.seq, notification.clone());
        Ok(())
    }

    fn items(&self, range: &Range) -> Result<Vec<Notification>, InboxError> {
        let matches = |n: &&Notification| {
            range.after.is_none_or(|a| n.seq > a)
                && range.before.is_none_or(|b| n.seq < b)
                && (!range.unread_only || !n.read)
                && n.live_at(range.now_ms)
        };
        let picked: Vec<Notification> = if range.newest_first {
            let it = self.items.values().rev().filter(matches);
            it.take(range.limit).cloned().collect()
        } else {
            let it = self.items.values().filter(matches);
            it.take(range.limit).cloned().collect()
        };
        Ok(picked)
    }

    fn items_by_id(&self, ids: &[String], now_ms: u64) -> Result<Vec<Notification>, InboxError> {
        Ok(self
            .items
            .values()
            .filter(|n| ids.contains(&n.id) && n.live_at(now_ms))
            .cloned()
            .collect())
    }

    fn unread_count(&self, now_ms: u64) -> Result<u64, InboxError> {
        Ok(self
            .items
            .values()
            .filter(|n| !n.read && n.live_at(now_ms))
            .count() as u64)
    }

    fn mark_read(
        &mut self,
        target: ReadTarget<'_>,
        now_ms: u64,
    ) -> Result<Vec<String>, InboxError> {
        let mut marked = Vec::new();
        for n in self.items.values_mut() {
            if !n.read && n.live_at(now_ms) && target.covers(n.seq) {
                n.read = true;
                marked.push(n.id.clone());
            }
        }
        Ok(marked)
    }

    fn remove(&mut self, seq: Seq) -> Result<bool, InboxError> {
        self.holds.remove(&seq);
        Ok(self.items.remove(&seq).is_some())
    }

    fn prune(&mut self, prune: &Prune) -> Result<u64, InboxError> {
        let mut retained_cut = None;
        let mut unread = 0;
        self.items.retain(|&seq, n| {
            let by_retention =
                prune.through_seq.is_some_and(|t| seq <= t) || n.created_at < prune.created_before;
            if by_retention {
                retained_cut = retained_cut.max(Some(seq));
                unread += u64::from(!n.read && n.live_at(prune.expired_by));
            }
            !by_retention && n.live_at(prune.expired_by)
        });
        if let Some(cut) = retained_cut {
            self.pruned_through = self.pruned_through.max(cut);
        }
        let items = &self.items;
        self.holds.retain(|seq, _| items.contains_key(seq));
        self.keys.retain(|_, (_, at)| *at >= prune.keys_before);
        self.acks.retain(|_, (_, at)| *at >= prune.acks_before);
        Ok(unread)
    }

    fn horizon(&self) -> Result<Horizon, InboxError> {
        Ok(Horizon {
            oldest_item_at: self.items.values().map(|n| n.created_at).min(),
            earliest_expiry: self.items.values().filter_map(|n| n.expires_at).min(),
            oldest_key_at: self.keys.values().map(|(_, at)| *at).min(),
            oldest_ack_at: self.acks.values().map(|(_, at)| *at).min(),
        })
    }

    fn receipt_for(&self, key: &str) -> Result<Option<(Receipt, u64)>, InboxError> {
        Ok(self.keys.get(key).cloned())
    }

    fn remember(&mut self, key: &str, receipt: &Receipt, now_ms: u64) -> Result<(), InboxError> {
        self.keys.insert(key.to_owned(), (receipt.clone(), now_ms));
        Ok(())
    }

    fn key_count(&self) -> Result<u64, InboxError> {
        Ok(self.keys.len() as u64)
    }

    fn forget_oldest_keys(&mut self, count: u64) -> Result<(), InboxError> {
        let mut by_age: Vec<(u64, String)> = self
            .keys
            .iter()
            .map(|(k, (_, at))| (*at, k.clone()))
            .collect();
        by_age.sort();
        for (_, key) in by_age.into_iter().take(count as usize) {
            self.keys.remove(&key);
        }
        Ok(())
    }

    fn forget_ack(&mut self, device: &str) -> Result<(), InboxError> {
        self.acks.remove(device);
        Ok(())
    }

    fn record_ack(&mut self, device: &str, seq: Seq, now_ms: u64) -> Result<(), InboxError> {
        let ack = self.acks.entry(device.to_owned()).or_insert((seq, now_ms));
        *ack = (ack.0.max(seq), now_ms);
        Ok(())
    }

    fn preferences(&self) -> Result<Preferences, InboxError> {
        Ok(self.preferences.clone().unwrap_or_default())
    }

    fn set_preferences(&mut self, preferences: &Preferences) -> Result<(), InboxError> {
        self.preferences = Some(preferences.clone());
        Ok(())
    }

    fn set_hold(&mut self, seqs: &[Seq], hold: Option<Hold>) -> Result<(), InboxError> {
        for seq in seqs.iter().filter(|s| self.items.contains_key(s)) {
            match hold {
                Some(hold) => self.holds.insert(*seq, hold),
                None => self.holds.remove(seq),
            };
        }
        Ok(())
    }

    fn held(
        &self,
        after: Seq,
        through: Seq,
        limit: usize,
    ) -> Result<Vec<Notification>, InboxError> {
        if after >= through {
            return Ok(Vec::new());
        }
        Ok(self
            .holds
            .range(after + 1..=through)
            .filter_map(|(seq, _)| self.items.get(seq).cloned())
            .take(limit)
            .collect())
    }

    fn holds(&self, hold: Hold) -> Result<bool, InboxError> {
        Ok(self.holds.values().any(|h| *h == hold))
    }

    fn move_holds(&mut self, from: Hold, to: Hold) -> Result<(), InboxError> {
        for hold in self.holds.values_mut().filter(|h| **h == from) {
            *hold = to;
        }
        Ok(())
    }

    fn window_closes_at(&self) -> Result<Option<u64>, InboxError> {
        Ok(self.window_closes_at)
    }

    fn set_window_closes_at(&mut self, at: Option<u64>) -> Result<(), InboxError> {
        self.window_closes_at = at;
        Ok(())
    }
}
