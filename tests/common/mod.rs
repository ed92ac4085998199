//! Helpers shared by the integration tests of the core (`hub.rs`, `inbox.rs`,
//! `attention.rs`, `stats.rs`, `fanout.rs`).

// Each test crate that declares `mod common;` uses a different part of this module.
#![allow(dead_code)]

use herald::config::Limits;
use herald::hub::{Arrival, Effect, Hub, Session};
use herald::inbox::{Inbox, MemoryInbox, Range};
use herald::model::{Draft, Notification, Priority, Receipt, Seq};

/// The fake clock's starting point, in milliseconds since the epoch.
pub const T0: u64 = 1_700_000_000_000;

/// A draft with only the fields every notification needs.
pub fn draft(id: &str, event: &str) -> Draft {
    Draft {
        id: id.into(),
        event: event.into(),
        title: None,
        body: None,
        data: None,
        priority: Priority::Normal,
        actor: None,
        room: None,
        idempotency_key: None,
        ttl_s: None,
    }
}

/// A stored notification `n{seq}` (event `task.updated`, created at `T0`), for tests
/// that need items without a hub to store them.
pub fn notification(seq: Seq) -> Notification {
    Notification {
        id: format!("n{seq}"),
        seq,
        event: "task.updated".into(),
        title: None,
        body: None,
        data: None,
        priority: Priority::Normal,
        actor: None,
        room: None,
        source: None,
        created_at: T0,
        expires_at: None,
        read: false,
    }
}

/// Everything in storage, oldest first, including items whose TTL has run out but that no
/// prune has removed yet: what the store holds rather than what a client may see.
pub fn stored(inbox: &MemoryInbox) -> Vec<Notification> {
    inbox
        .items(&Range {
            after: None,
            before: None,
            newest_first: false,
            limit: usize::MAX,
            unread_only: false,
            // Every expiry is after the epoch, so nothing is left out as expired.
            now_ms: 0,
        })
        .unwrap()
}

/// Alice's device arriving on connection `session_id`: no device name, no resume cursor and
/// a token without `exp`. Tests change what they care about with struct update syntax:
/// `Arrival { since: Some(3), ..arrival("ses_1") }`.
pub fn arrival(session_id: &str) -> Arrival {
    Arrival {
        user: "alice".into(),
        session_id: session_id.into(),
        device: None,
        since: None,
        token_exp: None,
    }
}

// ---- the world under test -----------------------------------------------------------

/// One user's hub over a memory inbox, with a clock that moves only when a test says so.
///
/// This holds what `inbox.rs` and `attention.rs` share; each adds its own methods in a
/// further `impl World` block.
pub struct World {
    pub inbox: MemoryInbox,
    pub limits: Limits,
    pub now: u64,
    /// Drafts made so far: the k-th is `n{k}`, so while nothing is deduplicated, `nK` has
    /// seq K and tests can name items either way.
    pub minted: u64,
}

impl World {
    /// Default limits, with the clock at `T0`.
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// Default limits, with the clock at `now`.
    pub fn at(now: u64) -> Self {
        Self { now, ..Self::new() }
    }

    /// The given limits, with the clock at `T0`.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            inbox: MemoryInbox::default(),
            limits,
            now: T0,
            minted: 0,
        }
    }

    pub fn hub(&mut self) -> Hub<'_, MemoryInbox> {
        Hub {
            inbox: &mut self.inbox,
            limits: &self.limits,
        }
    }

    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
    }

    /// The next draft, `n{k}` with event `task.updated`.
    pub fn draft(&mut self) -> Draft {
        self.minted += 1;
        draft(&format!("n{}", self.minted), "task.updated")
    }

    /// Publishes `draft` alone, now, and returns its receipt and the effects.
    pub fn publish_one(&mut self, draft: Draft) -> (Receipt, Vec<Effect>) {
        let now = self.now;
        let (mut receipts, effects) = self.hub().publish(vec![draft], now).unwrap();
        assert_eq!(receipts.len(), 1);
        (receipts.remove(0), effects)
    }

    /// The next deadline with no socket open.
    pub fn deadline(&mut self) -> Option<u64> {
        let now = self.now;
        self.hub().next_deadline(&[], now).unwrap()
    }

    /// A client frame arriving now on `session`.
    pub fn send(&mut self, session: &mut Session, text: &str) -> Vec<Effect> {
        let now = self.now;
        self.hub().client_text(session, text, now)
    }

    /// The unread count according to the store itself.
    pub fn unread(&self) -> u64 {
        self.inbox.unread_count(self.now).unwrap()
    }

    /// Seqs of everything in storage, expired or not.
    pub fn stored_seqs(&self) -> Vec<Seq> {
        stored(&self.inbox).iter().map(|n| n.seq).collect()
    }
}
