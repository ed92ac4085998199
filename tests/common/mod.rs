//! Helpers shared by the integration tests of the hub core (`hub.rs`, `inbox.rs`,
//! `attention.rs`).

use herald::hub::Arrival;
use herald::inbox::{Inbox, MemoryInbox, Notification, Priority, Range};
use herald::publish::Draft;

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
