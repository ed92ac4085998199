//! The durable inbox, driven natively through the hub core with a `MemoryInbox` and a fake
//! clock in milliseconds: replay and reset, count and age retention, TTL, idempotency keys,
//! read state, deletes, pages, acks, the alarm, the client frames that reach all of these,
//! and an unread count that must never drift from the stored log.

mod common;

use common::{arrival, stored, World, T0};
use herald::config::Limits;
use herald::frame::{BatchReason, Page, PageRequest, ReadRequest, ServerFrame};
use herald::history::REPLAY_BATCH;
use herald::hub::{
    page_query, Admission, Arrival, Effect, HubError, ReadOutcome, Session, MAX_READ_IDS,
};
use herald::inbox::{Inbox, MemoryInbox};
use herald::model::{Draft, Notification, Receipt, Seq};

const SECOND: u64 = 1_000;
const HOUR: u64 = 3_600 * SECOND;
const DAY: u64 = 24 * HOUR;

// ---- the world under test -----------------------------------------------------------

// `World` itself, with its constructors, `hub`, `advance`, `draft`, `publish_one`,
// `deadline`, `send`, `unread` and `stored_seqs`, is in `common`.

impl World {
    /// An inbox that keeps only ten items, so count retention is easy to cross.
    fn keeping_ten() -> Self {
        Self::with_limits(Limits {
            inbox_max_items: 10,
            ..Limits::default()
        })
    }

    fn max_age(&self) -> u64 {
        self.limits.inbox_max_age_ms
    }

    fn draft_with_ttl(&mut self, ttl_s: u64) -> Draft {
        Draft {
            ttl_s: Some(ttl_s),
            ..self.draft()
        }
    }

    fn draft_with_key(&mut self, key: &str) -> Draft {
        Draft {
            idempotency_key: Some(key.into()),
            ..self.draft()
        }
    }

    fn publish(&mut self, drafts: Vec<Draft>) -> (Vec<Receipt>, Vec<Effect>) {
        let now = self.now;
        self.hub().publish(drafts, now).unwrap()
    }

    /// Publishes `n` plain drafts, one request each, as separate producers would.
    fn publish_n(&mut self, n: usize) {
        for _ in 0..n {
            let draft = self.draft();
            self.publish_one(draft);
        }
    }

    /// The frames a device gets on connecting with `since`.
    fn connect(&mut self, since: Option<Seq>) -> Vec<ServerFrame> {
        let now = self.now;
        match self.hub().connect(
            Arrival {
                since,
                ..arrival("ses_1")
            },
            0,
            now,
        ) {
            Ok(Admission::Welcome {
                welcome, replay, ..
            }) => {
                let mut frames = vec![welcome];
                if let Some(replay) = replay {
                    frames.extend(replay.all(&self.inbox, now).unwrap());
                }
                frames
            }
            other => panic!("connect failed: {other:?}"),
        }
    }

    fn session(&mut self, device: Option<&str>) -> Session {
        let now = self.now;
        let device = device.map(str::to_owned);
        match self.hub().connect(
            Arrival {
                device,
                ..arrival("ses_1")
            },
            0,
            now,
        ) {
            Ok(Admission::Welcome { session, .. }) => session,
            other => panic!("connect failed: {other:?}"),
        }
    }

    fn read(&mut self, request: ReadRequest) -> Result<(ReadOutcome, Vec<Effect>), HubError> {
        let now = self.now;
        self.hub().read(&request, now)
    }

    fn delete(&mut self, id: &str) -> Result<(Seq, Vec<Effect>), HubError> {
        let now = self.now;
        self.hub().delete(id, now)
    }

    fn page(&mut self, request: PageRequest) -> Result<Page, HubError> {
        let now = self.now;
        self.hub().page(&request, now)
    }

    fn ack(&mut self, session: &mut Session, seq: Seq) -> Result<(), HubError> {
        let now = self.now;
        self.hub().ack(session, seq, now)
    }

    /// Runs the alarm and returns the deadline the glue would set next. With the default
    /// preferences nothing is ever held, so the alarm must have nothing to send: all it
    /// does here is retention, reporting at most the unread items it dropped.
    fn alarm(&mut self) -> Option<u64> {
        let now = self.now;
        let effects = self.hub().alarm(now).unwrap();
        assert!(
            effects.iter().all(|e| matches!(e, Effect::Dropped(_))),
            "nothing is held without preferences: {effects:?}"
        );
        self.deadline()
    }

    fn latest_seq(&self) -> Seq {
        self.inbox.latest_seq().unwrap()
    }

    fn pruned_through(&self) -> Seq {
        self.inbox.pruned_through().unwrap()
    }

    /// Seqs of stored items marked read.
    fn read_seqs(&self) -> Vec<Seq> {
        let items = stored(&self.inbox);
        items.iter().filter(|n| n.read).map(|n| n.seq).collect()
    }

    /// Ids of the items a client may still see.
    fn live_ids(&self) -> Vec<String> {
        let items = stored(&self.inbox);
        let live = items.into_iter().filter(|n| n.live_at(self.now));
        live.map(|n| n.id).collect()
    }

    /// Everything a client sees paging back from the newest item by `next_before`.
    fn walk_back(&mut self, limit: u64, unread: bool) -> Vec<Notification> {
        let mut seen: Vec<Notification> = Vec::new();
        let mut before = None;
        loop {
            let page = self
                .page(PageRequest {
                    before,
                    limit: Some(limit),
                    unread,
                    ..PageRequest::default()
                })
                .unwrap();
            assert_eq!(page.next_after, None, "newest-first pages point backwards");
            // A cursor must never lead to an empty page: "more" has to mean more.
            assert!(before.is_none() || !page.items.is_empty(), "empty page");
            seen.extend(page.items);
            match page.next_before {
                Some(next) => {
                    assert_eq!(Some(next), seen.last().map(|n| n.seq));
                    before = Some(next);
                }
                None => return seen,
            }
        }
    }

    /// Everything a client sees paging forward from `after` by `next_after`.
    fn walk_forward(&mut self, after: Seq, limit: u64) -> Vec<Notification> {
        let mut seen: Vec<Notification> = Vec::new();
        let mut after = after;
        loop {
            let page = self
                .page(PageRequest {
                    after: Some(after),
                    limit: Some(limit),
                    ..PageRequest::default()
                })
                .unwrap();
            assert_eq!(page.next_before, None, "oldest-first pages point forwards");
            seen.extend(page.items);
            match page.next_after {
                Some(next) => after = next,
                None => return seen,
            }
        }
    }
}

// ---- small helpers ------------------------------------------------------------------

fn seqs(items: &[Notification]) -> Vec<Seq> {
    items.iter().map(|n| n.seq).collect()
}

fn ids(names: &[&str]) -> Vec<String> {
    names.iter().map(|&s| s.to_owned()).collect()
}

fn read_ids(names: &[&str]) -> ReadRequest {
    ReadRequest {
        ids: Some(ids(names)),
        ..ReadRequest::default()
    }
}

fn read_up_to(seq: Seq) -> ReadRequest {
    ReadRequest {
        up_to_seq: Some(seq),
        ..ReadRequest::default()
    }
}

fn read_all() -> ReadRequest {
    ReadRequest {
        all: Some(true),
        ..ReadRequest::default()
    }
}

fn newest(limit: u64) -> PageRequest {
    PageRequest {
        limit: Some(limit),
        ..PageRequest::default()
    }
}

fn receipt(id: &str, seq: Seq, duplicate: bool) -> Receipt {
    Receipt {
        id: id.into(),
        seq,
        duplicate,
    }
}

/// The stable code of an `Invalid` answer; any other outcome fails the test.
fn invalid_code<T: std::fmt::Debug>(result: Result<T, HubError>) -> &'static str {
    match result {
        Err(HubError::Invalid { code, .. }) => code,
        other => panic!("expected an invalid request, got {other:?}"),
    }
}

/// The code of the one error frame a client frame was answered with.
fn error_reply(effects: &[Effect]) -> &str {
    match effects {
        [Effect::Reply(ServerFrame::Error { code, .. })] => code,
        other => panic!("expected a single error reply, got {other:?}"),
    }
}

/// What a connect or resume sent, reduced to what the replay rules are about.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Welcome {
        seq: Seq,
        unread_count: u64,
    },
    /// A `batch` frame (reason `replay`) with these seqs.
    Batch(Vec<Seq>),
    Synced(Seq),
    Reset {
        oldest_seq: Option<Seq>,
        latest_seq: Seq,
    },
}

fn steps(frames: &[ServerFrame]) -> Vec<Step> {
    frames
        .iter()
        .map(|frame| match frame {
            ServerFrame::Welcome {
                seq, unread_count, ..
            } => Step::Welcome {
                seq: *seq,
                unread_count: *unread_count,
            },
            ServerFrame::Batch { reason, items } => {
                assert_eq!(*reason, BatchReason::Replay);
                assert!(items.len() <= REPLAY_BATCH, "{} items", items.len());
                Step::Batch(seqs(items))
            }
            ServerFrame::Synced { seq } => Step::Synced(*seq),
            ServerFrame::Reset {
                oldest_seq,
                latest_seq,
            } => Step::Reset {
                oldest_seq: *oldest_seq,
                latest_seq: *latest_seq,
            },
            other => panic!("not a replay frame: {other:?}"),
        })
        .collect()
}

/// The frames of effects that must all be replies to the sender, a replay pulled whole
/// from `inbox`.
fn replies(inbox: &MemoryInbox, effects: Vec<Effect>) -> Vec<ServerFrame> {
    effects
        .into_iter()
        .flat_map(|effect| match effect {
            Effect::Reply(frame) => vec![frame],
            Effect::Replay(replay) => replay.all(inbox, T0).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        })
        .collect()
}

fn welcome(seq: Seq, unread_count: u64) -> Step {
    Step::Welcome { seq, unread_count }
}

fn batch(seqs: impl IntoIterator<Item = Seq>) -> Step {
    Step::Batch(seqs.into_iter().collect())
}

// ---- replay -------------------------------------------------------------------------

#[test]
fn resume_replays_exactly_the_items_after_the_cursor_oldest_first() {
    let mut w = World::new();
    w.publish_n(5);
    assert_eq!(
        steps(&w.connect(Some(2))),
        [welcome(5, 5), batch([3, 4, 5]), Step::Synced(5)]
    );
}

#[test]
fn resume_at_the_latest_seq_sends_no_batch() {
    let mut w = World::new();
    assert_eq!(
        steps(&w.connect(Some(0))),
        [welcome(0, 0), Step::Synced(0)],
        "a new user resuming from 0 is up to date"
    );
    w.publish_n(5);
    assert_eq!(steps(&w.connect(Some(5))), [welcome(5, 5), Step::Synced(5)]);
}

#[test]
fn connect_without_since_sends_only_the_welcome() {
    let mut w = World::new();
    w.publish_n(3);
    assert_eq!(steps(&w.connect(None)), [welcome(3, 3)]);
}

#[test]
fn a_long_replay_comes_in_batches_of_at_most_100() {
    let mut w = World::new();
    w.publish_n(250);
    assert_eq!(
        steps(&w.connect(Some(0))),
        [
            welcome(250, 250),
            batch(1..=100),
            batch(101..=200),
            batch(201..=250),
            Step::Synced(250),
        ]
    );
}

#[test]
fn a_replay_is_pulled_one_slice_at_a_time() {
    // What bounds a user object's memory on resume: each pull reads one slice of the
    // log, whatever the log holds, and nothing published after the start is included.
    let mut w = World::new();
    w.publish_n(250);
    let mut replay = herald::history::replay(&w.inbox, 0).unwrap();
    w.publish_n(1);
    let mut pulls = Vec::new();
    while let Some(frames) = replay.next(&w.inbox, w.now).unwrap() {
        pulls.push(steps(&frames));
    }
    assert_eq!(
        pulls,
        [
            vec![batch(1..=100)],
            vec![batch(101..=200)],
            vec![batch(201..=250)],
            vec![Step::Synced(250)],
        ]
    );
}

#[test]
fn a_replay_of_whole_batches_ends_without_an_empty_one() {
    let mut w = World::new();
    w.publish_n(200);
    assert_eq!(
        steps(&w.connect(Some(0))),
        [
            welcome(200, 200),
            batch(1..=100),
            batch(101..=200),
            Step::Synced(200),
        ]
    );
}

// ---- retention: count ---------------------------------------------------------------

#[test]
fn count_retention_keeps_the_newest_items_and_records_the_cut() {
    let mut w = World::keeping_ten();
    w.publish_n(15);
    assert_eq!(w.stored_seqs(), (6..=15).collect::<Vec<_>>());
    assert_eq!(w.pruned_through(), 5);
    assert_eq!(w.latest_seq(), 15);
}

#[test]
fn a_cursor_behind_the_count_boundary_gets_reset() {
    let mut w = World::keeping_ten();
    w.publish_n(15);
    let reset = Step::Reset {
        oldest_seq: Some(6),
        latest_seq: 15,
    };
    // Items 3..=5 are gone: replaying 6..=15 would hide that gap.
    for since in [0, 2, 4] {
        assert_eq!(
            steps(&w.connect(Some(since))),
            [welcome(15, 10), reset.clone(), Step::Synced(15)],
            "since {since}"
        );
    }
}

#[test]
fn a_cursor_exactly_at_the_count_boundary_replays_normally() {
    let mut w = World::keeping_ten();
    w.publish_n(15);
    // The device has everything up to 5, and everything after 5 is still kept.
    assert_eq!(
        steps(&w.connect(Some(5))),
        [welcome(15, 10), batch(6..=15), Step::Synced(15)]
    );
}

#[test]
fn a_cursor_beyond_the_latest_seq_gets_reset() {
    let mut w = World::keeping_ten();
    assert_eq!(
        steps(&w.connect(Some(3))),
        [
            welcome(0, 0),
            Step::Reset {
                oldest_seq: None,
                latest_seq: 0
            },
            Step::Synced(0),
        ],
        "a cursor from a log this user never had"
    );
    w.publish_n(15);
    assert_eq!(
        steps(&w.connect(Some(16))),
        [
            welcome(15, 10),
            Step::Reset {
                oldest_seq: Some(6),
                latest_seq: 15
            },
            Step::Synced(15),
        ]
    );
}

#[test]
fn count_retention_cuts_no_live_item_when_expired_ones_make_room() {
    let mut w = World::keeping_ten();
    w.publish_n(2);
    let short_lived = w.draft_with_ttl(1);
    w.publish_one(short_lived);
    w.publish_n(7);
    // Item 3 has expired but no alarm has removed it yet when the eleventh item arrives.
    w.advance(2 * SECOND);
    w.publish_n(1);
    // Dropping the expired item alone brings storage back to ten: nothing live must go,
    // and a device that has seen nothing can still replay everything without a reset.
    assert_eq!(w.stored_seqs(), [1, 2, 4, 5, 6, 7, 8, 9, 10, 11]);
    assert_eq!(w.pruned_through(), 0);
    assert_eq!(
        steps(&w.connect(Some(0))),
        [
            welcome(11, 10),
            batch([1, 2, 4, 5, 6, 7, 8, 9, 10, 11]),
            Step::Synced(11)
        ]
    );
}

// ---- retention: age -----------------------------------------------------------------

#[test]
fn the_alarm_prunes_items_older_than_the_max_age() {
    let mut w = World::new();
    w.publish_n(3);
    w.advance(DAY);
    w.publish_n(2);

    // One millisecond short of the age, everything stays.
    w.now = T0 + w.max_age() - 1;
    w.alarm();
    assert_eq!(w.stored_seqs(), [1, 2, 3, 4, 5]);
    assert_eq!(w.pruned_through(), 0);

    w.now = T0 + w.max_age() + 1;
    w.alarm();
    assert_eq!(w.stored_seqs(), [4, 5]);
    assert_eq!(w.pruned_through(), 3);
}

#[test]
fn a_cursor_before_aged_out_items_gets_reset() {
    let mut w = World::new();
    w.publish_n(3);
    w.advance(DAY);
    w.publish_n(2);
    w.now = T0 + w.max_age() + 1;
    w.alarm();

    let reset = [
        welcome(5, 2),
        Step::Reset {
            oldest_seq: Some(4),
            latest_seq: 5,
        },
        Step::Synced(5),
    ];
    assert_eq!(steps(&w.connect(Some(0))), reset);
    assert_eq!(steps(&w.connect(Some(2))), reset);
    assert_eq!(
        steps(&w.connect(Some(3))),
        [welcome(5, 2), batch([4, 5]), Step::Synced(5)]
    );
}

// ---- TTL ----------------------------------------------------------------------------

/// Items 1..=5 published at `T0`; item 3 lives for ten seconds.
fn with_short_lived_item_3() -> World {
    let mut w = World::new();
    w.publish_n(2);
    let short_lived = w.draft_with_ttl(10);
    w.publish_one(short_lived);
    w.publish_n(2);
    w
}

#[test]
fn a_ttl_sets_the_expiry_from_the_publish_time() {
    let w = with_short_lived_item_3();
    let expiries: Vec<Option<u64>> = stored(&w.inbox).iter().map(|n| n.expires_at).collect();
    assert_eq!(expiries, [None, None, Some(T0 + 10 * SECOND), None, None]);
}

#[test]
fn ttl_expiry_during_replay_skips_the_item_without_a_reset() {
    let mut w = with_short_lived_item_3();
    w.advance(11 * SECOND);
    // Expiry is not a gap the device must be told about: the item is simply no longer due.
    assert_eq!(
        steps(&w.connect(Some(0))),
        [welcome(5, 4), batch([1, 2, 4, 5]), Step::Synced(5)]
    );
}

#[test]
fn an_expired_item_leaves_pages_and_the_unread_count_at_its_expiry() {
    let mut w = with_short_lived_item_3();
    w.advance(10 * SECOND - 1);
    assert_eq!(w.unread(), 5);
    assert_eq!(seqs(&w.page(newest(10)).unwrap().items), [5, 4, 3, 2, 1]);

    w.advance(1);
    assert_eq!(w.unread(), 4);
    for unread in [false, true] {
        let page = w
            .page(PageRequest {
                unread,
                ..newest(10)
            })
            .unwrap();
        assert_eq!(seqs(&page.items), [5, 4, 2, 1], "unread: {unread}");
        assert_eq!(page.unread_count, 4);
    }
}

#[test]
fn an_expired_item_can_no_longer_be_read_or_deleted() {
    let mut w = with_short_lived_item_3();
    w.advance(11 * SECOND);
    assert_eq!(invalid_code(w.read(read_ids(&["n3"]))), "unknown_id");
    assert_eq!(w.delete("n3"), Err(HubError::NotFound));
    let (outcome, _) = w.read(read_up_to(5)).unwrap();
    assert_eq!(outcome.read, ids(&["n1", "n2", "n4", "n5"]));
}

#[test]
fn the_alarm_removes_expired_items_without_recording_a_retention_gap() {
    let mut w = with_short_lived_item_3();
    w.advance(11 * SECOND);
    w.alarm();
    assert_eq!(w.inbox.item_count().unwrap(), 4);
    assert_eq!(w.stored_seqs(), [1, 2, 4, 5]);
    assert_eq!(w.pruned_through(), 0, "TTL is not retention");
    assert_eq!(
        steps(&w.connect(Some(2))),
        [welcome(5, 4), batch([4, 5]), Step::Synced(5)]
    );
}

// ---- idempotency --------------------------------------------------------------------

#[test]
fn a_retry_within_the_window_gets_the_original_receipt_and_stores_nothing() {
    let mut w = World::new();
    let first = w.draft_with_key("order-1");
    let (original, _) = w.publish_one(first);
    assert_eq!(original, receipt("n1", 1, false));

    w.advance(DAY - 1);
    // A retry is a new request, so it arrives with a new id.
    let retry = w.draft_with_key("order-1");
    let (answer, effects) = w.publish_one(retry);
    assert_eq!(answer, receipt("n1", 1, true));
    assert_eq!(effects, [], "devices already have it");
    assert_eq!(w.latest_seq(), 1);
    assert_eq!(w.inbox.item_count().unwrap(), 1);
}

#[test]
fn past_idempotency_max_keys_the_oldest_key_is_forgotten_first() {
    let mut w = World::new();
    w.limits.idempotency_max_keys = 3;
    for key in ["k1", "k2", "k3", "k4"] {
        let draft = w.draft_with_key(key);
        w.publish_one(draft);
        w.advance(SECOND);
    }
    assert_eq!(w.inbox.key_count().unwrap(), 3);
    // k1 was forgotten: a retry with it is stored again (and forgets k2 in turn).
    let retry = w.draft_with_key("k1");
    assert_eq!(w.publish_one(retry).0, receipt("n5", 5, false));
    // k4 is still remembered.
    let retry = w.draft_with_key("k4");
    assert_eq!(w.publish_one(retry).0, receipt("n4", 4, true));
    assert_eq!(w.inbox.key_count().unwrap(), 3);
}

#[test]
fn a_batch_stores_only_what_its_keys_have_not_stored_before() {
    let mut w = World::new();
    let first = w.draft_with_key("k1");
    w.publish_one(first);

    let drafts = vec![
        w.draft_with_key("k1"),
        w.draft(),
        w.draft_with_key("k2"),
        // The same key twice in one request counts as a retry too.
        w.draft_with_key("k2"),
    ];
    let (receipts, effects) = w.publish(drafts);
    assert_eq!(
        receipts,
        [
            receipt("n1", 1, true),
            receipt("n3", 2, false),
            receipt("n4", 3, false),
            receipt("n4", 3, true),
        ]
    );
    let notified: Vec<Seq> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Broadcast(ServerFrame::Notification(n)) => Some(n.seq),
            _ => None,
        })
        .collect();
    assert_eq!(notified, [2, 3]);
    assert_eq!(
        effects.last(),
        Some(&Effect::Broadcast(ServerFrame::UnreadCount {
            unread_count: 3
        }))
    );
    assert_eq!(w.stored_seqs(), [1, 2, 3]);
}

#[test]
fn a_key_is_forgotten_after_the_window() {
    let mut w = World::new();
    let first = w.draft_with_key("order-1");
    w.publish_one(first);

    w.advance(DAY + 1);
    w.alarm();
    let again = w.draft_with_key("order-1");
    let (answer, effects) = w.publish_one(again);
    assert_eq!(answer, receipt("n2", 2, false));
    assert!(matches!(
        effects.as_slice(),
        [Effect::Broadcast(ServerFrame::Notification(n)), Effect::Broadcast(ServerFrame::UnreadCount { unread_count: 2 })] if n.seq == 2
    ));
    assert_eq!(w.stored_seqs(), [1, 2]);

    // The key now stands for the new item.
    let retry = w.draft_with_key("order-1");
    assert_eq!(w.publish_one(retry).0, receipt("n2", 2, true));
}

// ---- read ---------------------------------------------------------------------------

/// The one `read` frame a read broadcasts.
fn read_frame(names: &[&str], unread_count: u64) -> Vec<Effect> {
    vec![Effect::Broadcast(ServerFrame::Read {
        ids: ids(names),
        unread_count,
    })]
}

#[test]
fn read_by_ids_marks_exactly_those_and_tells_every_device() {
    let mut w = World::new();
    w.publish_n(5);
    let (outcome, effects) = w.read(read_ids(&["n4", "n2"])).unwrap();
    // Answered in seq order, whatever order the client named them in.
    assert_eq!(outcome.read, ids(&["n2", "n4"]));
    assert_eq!(outcome.unread_count, 3);
    assert_eq!(effects, read_frame(&["n2", "n4"], 3));
    assert_eq!(w.read_seqs(), [2, 4]);
    assert_eq!(w.unread(), 3);
}

#[test]
fn read_by_ids_is_all_or_nothing() {
    let mut w = World::new();
    w.publish_n(3);
    assert_eq!(
        invalid_code(w.read(read_ids(&["n1", "nope", "n2"]))),
        "unknown_id"
    );
    assert!(w.read_seqs().is_empty());
    assert_eq!(w.unread(), 3);
}

#[test]
fn read_up_to_seq_marks_the_remaining_unread_items_through_it() {
    let mut w = World::new();
    w.publish_n(8);
    w.read(read_ids(&["n2"])).unwrap();
    w.delete("n3").unwrap();
    w.delete("n5").unwrap();
    // 2 is already read and 3 and 5 are gone: only 1, 4 and 6 change.
    let (outcome, effects) = w.read(read_up_to(6)).unwrap();
    assert_eq!(outcome.read, ids(&["n1", "n4", "n6"]));
    assert_eq!(effects, read_frame(&["n1", "n4", "n6"], 2));
    assert_eq!(w.read_seqs(), [1, 2, 4, 6]);
    assert_eq!(w.unread(), 2);
}

#[test]
fn read_all_marks_every_unread_item() {
    let mut w = World::new();
    w.publish_n(4);
    w.read(read_ids(&["n1"])).unwrap();
    let (outcome, effects) = w.read(read_all()).unwrap();
    assert_eq!(outcome.read, ids(&["n2", "n3", "n4"]));
    assert_eq!(effects, read_frame(&["n2", "n3", "n4"], 0));
    assert_eq!(w.unread(), 0);
}

#[test]
fn reading_what_is_already_read_changes_nothing_and_tells_no_one() {
    let mut w = World::new();
    w.publish_n(3);
    w.read(read_ids(&["n1", "n2"])).unwrap();
    for request in [read_ids(&["n1"]), read_up_to(2), read_ids(&["n2", "n1"])] {
        let (outcome, effects) = w.read(request.clone()).unwrap();
        assert_eq!(outcome.read, Vec::<String>::new(), "{request:?}");
        assert_eq!(outcome.unread_count, 1);
        assert_eq!(effects, [], "{request:?}");
    }
    w.read(read_all()).unwrap();
    let (outcome, effects) = w.read(read_all()).unwrap();
    assert_eq!((outcome.read.len(), effects.len()), (0, 0));
}

#[test]
fn a_read_must_name_exactly_one_target() {
    let mut w = World::new();
    w.publish_n(3);
    let too_many: Vec<String> = (0..=MAX_READ_IDS).map(|i| format!("n{i}")).collect();
    let bad = [
        ReadRequest::default(),
        ReadRequest {
            up_to_seq: Some(2),
            ..read_ids(&["n1"])
        },
        ReadRequest {
            all: Some(true),
            ..read_ids(&["n1"])
        },
        ReadRequest {
            all: Some(true),
            ..read_up_to(2)
        },
        ReadRequest {
            all: Some(false),
            ..ReadRequest::default()
        },
        read_ids(&[]),
        ReadRequest {
            ids: Some(too_many),
            ..ReadRequest::default()
        },
    ];
    for request in bad {
        assert_eq!(
            invalid_code(w.read(request.clone())),
            "bad_request",
            "{request:?}"
        );
    }
    assert!(w.read_seqs().is_empty(), "a refused read marks nothing");
}

#[test]
fn a_read_may_name_up_to_100_ids() {
    let mut w = World::new();
    w.publish_n(MAX_READ_IDS);
    let all_ids: Vec<String> = (1..=MAX_READ_IDS).map(|i| format!("n{i}")).collect();
    let (outcome, _) = w
        .read(ReadRequest {
            ids: Some(all_ids.clone()),
            ..ReadRequest::default()
        })
        .unwrap();
    assert_eq!(outcome.read, all_ids);
}

// ---- delete -------------------------------------------------------------------------

#[test]
fn delete_removes_the_item_and_tells_every_device_the_new_count() {
    let mut w = World::new();
    w.publish_n(3);
    w.read(read_ids(&["n1"])).unwrap();

    let deleted = |id: &str, seq, unread_count| {
        let frame = ServerFrame::Deleted {
            id: id.into(),
            seq,
            unread_count,
        };
        Ok((seq, vec![Effect::Broadcast(frame)]))
    };
    assert_eq!(w.delete("n2"), deleted("n2", 2, 1));
    assert_eq!(w.stored_seqs(), [1, 3]);
    assert_eq!(seqs(&w.page(newest(10)).unwrap().items), [3, 1]);
    // Deleting a read item leaves the count as it was, and still says so.
    assert_eq!(w.delete("n1"), deleted("n1", 1, 1));
}

#[test]
fn deleting_an_unknown_item_is_not_found() {
    let mut w = World::new();
    w.publish_n(1);
    assert_eq!(w.delete("nope"), Err(HubError::NotFound));
    w.delete("n1").unwrap();
    assert_eq!(w.delete("n1"), Err(HubError::NotFound));
}

#[test]
fn a_deleted_item_is_not_replayed_and_causes_no_reset() {
    let mut w = World::new();
    w.publish_n(5);
    w.delete("n1").unwrap();
    w.delete("n3").unwrap();
    assert_eq!(
        steps(&w.connect(Some(0))),
        [welcome(5, 3), batch([2, 4, 5]), Step::Synced(5)]
    );
    // Even an inbox the user emptied is not a gap.
    for id in ["n2", "n4", "n5"] {
        w.delete(id).unwrap();
    }
    assert_eq!(steps(&w.connect(Some(0))), [welcome(5, 0), Step::Synced(5)]);
    assert_eq!(w.pruned_through(), 0);
}

// ---- pages --------------------------------------------------------------------------

#[test]
fn pages_come_newest_first_with_a_cursor_to_older_ones() {
    let mut w = World::new();
    w.publish_n(7);
    let first = w.page(newest(3)).unwrap();
    assert_eq!(seqs(&first.items), [7, 6, 5]);
    assert_eq!((first.next_before, first.next_after), (Some(5), None));
    assert_eq!((first.unread_count, first.latest_seq), (7, 7));

    let second = w
        .page(PageRequest {
            before: Some(5),
            ..newest(3)
        })
        .unwrap();
    assert_eq!(seqs(&second.items), [4, 3, 2]);
    assert_eq!(second.next_before, Some(2));

    let last = w
        .page(PageRequest {
            before: Some(2),
            ..newest(3)
        })
        .unwrap();
    assert_eq!(seqs(&last.items), [1]);
    assert_eq!(last.next_before, None);
}

#[test]
fn following_next_before_visits_every_item_exactly_once() {
    let mut w = World::new();
    w.publish_n(23);
    w.delete("n5").unwrap();
    w.delete("n17").unwrap();
    let expected: Vec<Seq> = (1..=23).rev().filter(|s| ![5, 17].contains(s)).collect();
    // 7 divides the 21 items exactly: the last full page must not promise another.
    for limit in [1, 2, 3, 7, 20, 21, 22, 100] {
        assert_eq!(seqs(&w.walk_back(limit, false)), expected, "limit {limit}");
    }
}

#[test]
fn after_pages_oldest_first_with_a_cursor_to_newer_ones() {
    let mut w = World::new();
    w.publish_n(7);
    let page = w
        .page(PageRequest {
            after: Some(2),
            ..newest(2)
        })
        .unwrap();
    assert_eq!(seqs(&page.items), [3, 4]);
    assert_eq!((page.next_before, page.next_after), (None, Some(4)));

    assert_eq!(seqs(&w.walk_forward(2, 2)), [3, 4, 5, 6, 7]);
    assert_eq!(
        seqs(&w.walk_forward(0, 3)),
        (1..=7).collect::<Vec<_>>(),
        "catching up from the start visits everything once"
    );
}

#[test]
fn unread_pages_leave_read_items_out() {
    let mut w = World::new();
    w.publish_n(6);
    w.read(read_ids(&["n2", "n5"])).unwrap();
    let page = w
        .page(PageRequest {
            unread: true,
            ..newest(2)
        })
        .unwrap();
    assert_eq!(seqs(&page.items), [6, 4]);
    assert_eq!((page.next_before, page.unread_count), (Some(4), 4));
    assert_eq!(seqs(&w.walk_back(2, true)), [6, 4, 3, 1]);
    assert!(w.walk_back(2, true).iter().all(|n| !n.read));
}

#[test]
fn page_limits_outside_1_to_100_are_refused() {
    let mut w = World::new();
    w.publish_n(120);
    assert_eq!(invalid_code(w.page(newest(0))), "bad_request");
    assert_eq!(invalid_code(w.page(newest(101))), "bad_request");
    assert_eq!(w.page(newest(100)).unwrap().items.len(), 100);
    let default = w.page(PageRequest::default()).unwrap();
    assert_eq!(default.items.len(), 50, "the default page size");
}

#[test]
fn page_query_reads_the_documented_parameters() {
    assert_eq!(
        page_query([("after", "3"), ("limit", "10"), ("unread", "true")]),
        Ok(PageRequest {
            after: Some(3),
            limit: Some(10),
            unread: true,
            ..PageRequest::default()
        })
    );
    assert_eq!(
        page_query([("before", "9"), ("unread", "0")]),
        Ok(PageRequest {
            before: Some(9),
            ..PageRequest::default()
        })
    );
    assert_eq!(page_query([("unread", "1")]).map(|r| r.unread), Ok(true));
    assert_eq!(
        page_query([("unread", "false")]).map(|r| r.unread),
        Ok(false)
    );
    assert_eq!(page_query([]), Ok(PageRequest::default()));
}

#[test]
fn page_query_names_the_bad_parameter() {
    let bad = [
        ("after", "abc"),
        ("before", "-1"),
        ("limit", "1.5"),
        ("limit", ""),
        ("unread", "yes"),
        ("since", "abc"),
        ("since", "3"),
    ];
    for (name, value) in bad {
        match page_query([(name, value)]) {
            Err(HubError::Invalid { code, message }) => {
                assert_eq!(code, "bad_request");
                assert!(message.starts_with(name), "{name}={value}: {message}");
            }
            other => panic!("{name}={value} was accepted: {other:?}"),
        }
    }
}

#[test]
fn a_huge_limit_passes_parsing_but_not_the_page() {
    // Parsing only checks the shape; the bound lives in one place, `page`.
    let request = page_query([("limit", "10000")]).unwrap();
    assert_eq!(request.limit, Some(10_000));
    assert_eq!(invalid_code(World::new().page(request)), "bad_request");
}

// ---- acks ---------------------------------------------------------------------------

#[test]
fn acks_move_forward_only_and_are_recorded_under_the_device() {
    let mut w = World::new();
    w.publish_n(5);
    let mut phone = w.session(Some("phone"));
    w.ack(&mut phone, 3).unwrap();
    assert_eq!(w.inbox.acks.get("phone"), Some(&(3, T0)));

    w.advance(SECOND);
    for stale in [2, 3] {
        w.ack(&mut phone, stale).unwrap();
        assert_eq!(w.inbox.acks.get("phone"), Some(&(3, T0)), "ack {stale}");
        assert_eq!(phone.acked, 3);
    }
    w.ack(&mut phone, 5).unwrap();
    assert_eq!(w.inbox.acks.get("phone"), Some(&(5, T0 + SECOND)));
}

#[test]
fn without_a_device_acks_are_recorded_under_the_session_id() {
    let mut w = World::new();
    w.publish_n(1);
    let mut session = w.session(None);
    w.ack(&mut session, 1).unwrap();
    assert_eq!(w.inbox.acks.get("ses_1"), Some(&(1, T0)));
    assert_eq!(w.inbox.acks.len(), 1);
}

#[test]
fn a_session_without_a_device_takes_its_ack_with_it_when_it_closes() {
    let mut w = World::new();
    w.publish_n(2);
    let mut anonymous = w.session(None);
    w.ack(&mut anonymous, 1).unwrap();
    let mut phone = w.session(Some("phone"));
    w.ack(&mut phone, 2).unwrap();

    w.hub().close(&anonymous).unwrap();
    w.hub().close(&phone).unwrap();
    // The phone's ack is for its next connection; the anonymous one had no next.
    assert_eq!(w.inbox.acks.keys().collect::<Vec<_>>(), ["phone"]);
}

#[test]
fn an_ack_beyond_the_latest_seq_is_refused() {
    let mut w = World::new();
    w.publish_n(2);
    let mut session = w.session(Some("phone"));
    assert_eq!(invalid_code(w.ack(&mut session, 3)), "bad_request");
    assert!(w.inbox.acks.is_empty());
    assert_eq!(session.acked, 0);
}

#[test]
fn a_device_ack_never_moves_back_across_sessions() {
    let mut w = World::new();
    w.publish_n(5);
    let mut before = w.session(Some("phone"));
    w.ack(&mut before, 5).unwrap();
    // The same device reconnects: the new session starts at acked 0.
    let mut after = w.session(Some("phone"));
    w.advance(SECOND);
    w.ack(&mut after, 2).unwrap();
    assert_eq!(w.inbox.acks.get("phone").map(|&(seq, _)| seq), Some(5));
}

// ---- the alarm ----------------------------------------------------------------------

#[test]
fn an_empty_inbox_needs_no_alarm() {
    let mut w = World::new();
    assert_eq!(w.deadline(), None);
    assert_eq!(w.alarm(), None);
}

#[test]
fn the_deadline_is_when_the_oldest_item_ages_out() {
    let mut w = World::new();
    w.publish_n(1);
    w.advance(HOUR);
    w.publish_n(1);
    assert_eq!(w.deadline(), Some(T0 + w.max_age()));
}

#[test]
fn a_ttl_brings_the_deadline_forward_to_its_expiry() {
    let mut w = World::new();
    w.publish_n(1);
    w.advance(SECOND);
    let short_lived = w.draft_with_ttl(60);
    w.publish_one(short_lived);
    assert_eq!(w.deadline(), Some(T0 + SECOND + 60 * SECOND));
}

#[test]
fn an_idempotency_key_is_due_before_its_item_ages_out() {
    let mut w = World::new();
    let keyed = w.draft_with_key("k1");
    w.publish_one(keyed);
    assert_eq!(w.deadline(), Some(T0 + DAY));

    // Once the key is forgotten, the item's age is what is left to wait for.
    w.advance(DAY + 1);
    assert_eq!(w.alarm(), Some(T0 + w.max_age()));
}

#[test]
fn a_recorded_ack_keeps_an_alarm_until_it_ages_out() {
    let mut w = World::new();
    w.publish_n(1);
    let mut session = w.session(Some("phone"));
    w.advance(10);
    w.ack(&mut session, 1).unwrap();
    w.delete("n1").unwrap();
    assert_eq!(w.deadline(), Some(T0 + 10 + w.max_age()));

    w.now = T0 + 10 + w.max_age() + 1;
    assert_eq!(w.alarm(), None);
    assert!(w.inbox.acks.is_empty());
}

#[test]
fn an_inbox_emptied_by_retention_needs_no_alarm() {
    let mut w = World::new();
    w.publish_n(2);
    w.now = T0 + w.max_age() + 1;
    assert_eq!(w.alarm(), None, "an idle user keeps no alarm");
    assert_eq!(w.inbox.item_count().unwrap(), 0);
}

#[test]
fn running_the_alarm_twice_at_the_same_time_changes_nothing_more() {
    let mut w = World::new();
    let keyed = w.draft_with_key("k1");
    let short_lived = w.draft_with_ttl(5);
    w.publish(vec![keyed, short_lived]);
    w.advance(DAY + 1);
    w.publish_n(1);
    let mut session = w.session(None);
    w.ack(&mut session, 3).unwrap();

    // Everything the store holds that the alarm could touch.
    let snapshot = |w: &World| {
        (
            stored(&w.inbox),
            w.pruned_through(),
            w.latest_seq(),
            w.inbox.acks.clone(),
            w.inbox.horizon().unwrap(),
        )
    };
    let before = snapshot(&w);
    let first = w.alarm();
    let after_first = snapshot(&w);
    assert_ne!(before, after_first, "the first run has work to do");
    assert_eq!(w.stored_seqs(), [1, 3]);

    let second = w.alarm();
    assert_eq!(second, first);
    assert_eq!(snapshot(&w), after_first);
}

#[test]
fn the_alarm_at_its_own_deadline_prunes_what_it_was_set_for() {
    let mut w = World::new();
    let keyed = w.draft_with_key("k1");
    w.publish_one(keyed);

    let key_due = w.deadline().unwrap();
    w.now = key_due;
    let item_due = w.alarm();
    assert_eq!(item_due, Some(T0 + w.max_age()), "the key is forgotten");

    w.now = item_due.unwrap();
    assert_eq!(w.alarm(), None, "the item has aged out");
    assert_eq!(w.inbox.item_count().unwrap(), 0);
}

// ---- client frames ------------------------------------------------------------------

#[test]
fn a_read_frame_naming_an_unknown_id_gets_an_error_and_changes_nothing() {
    let mut w = World::new();
    w.publish_n(2);
    let mut session = w.session(None);
    for text in [
        r#"{"type":"read","ids":["nope"]}"#,
        r#"{"type":"read","ids":["n1","nope"]}"#,
    ] {
        assert_eq!(error_reply(&w.send(&mut session, text)), "unknown_id");
    }
    assert!(w.read_seqs().is_empty());
    assert_eq!(w.unread(), 2);
}

#[test]
fn a_read_frame_is_broadcast_to_every_device() {
    let mut w = World::new();
    w.publish_n(2);
    let mut session = w.session(None);
    assert_eq!(
        w.send(&mut session, r#"{"type":"read","ids":["n1"]}"#),
        read_frame(&["n1"], 1)
    );
    assert_eq!(
        w.send(&mut session, r#"{"type":"read","up_to_seq":2}"#),
        read_frame(&["n2"], 0)
    );
    assert_eq!(w.send(&mut session, r#"{"type":"read","all":true}"#), []);
    assert_eq!(
        error_reply(&w.send(&mut session, r#"{"type":"read"}"#)),
        "bad_request"
    );
}

#[test]
fn a_fetch_frame_gets_a_page_echoing_its_ref() {
    let mut w = World::new();
    w.publish_n(5);
    let mut session = w.session(None);
    let effects = w.send(&mut session, r#"{"type":"fetch","limit":2,"ref":"r1"}"#);
    let [Effect::Reply(ServerFrame::Page(page))] = effects.as_slice() else {
        panic!("expected a page reply, got {effects:?}")
    };
    assert_eq!(page.reference.as_deref(), Some("r1"));
    assert_eq!(seqs(&page.items), [5, 4]);
    assert_eq!(page.next_before, Some(4));

    let effects = w.send(&mut session, r#"{"type":"fetch","limit":0}"#);
    assert_eq!(error_reply(&effects), "bad_request");
}

#[test]
fn a_resume_frame_gets_the_replay_as_replies() {
    let mut w = World::keeping_ten();
    w.publish_n(12);
    let mut session = w.session(None);
    let effects = w.send(&mut session, r#"{"type":"resume","since":4}"#);
    let resumed = replies(&w.inbox, effects);
    assert_eq!(steps(&resumed), [batch(5..=12), Step::Synced(12)]);

    let effects = w.send(&mut session, r#"{"type":"resume","since":0}"#);
    let resumed = replies(&w.inbox, effects);
    assert_eq!(
        steps(&resumed),
        [
            Step::Reset {
                oldest_seq: Some(3),
                latest_seq: 12
            },
            Step::Synced(12)
        ]
    );
}

#[test]
fn an_ack_frame_is_recorded_without_an_answer() {
    let mut w = World::new();
    w.publish_n(3);
    let mut session = w.session(None);
    assert_eq!(w.send(&mut session, r#"{"type":"ack","seq":2}"#), []);
    assert_eq!(w.inbox.acks.get("ses_1"), Some(&(2, T0)));
    let effects = w.send(&mut session, r#"{"type":"ack","seq":9}"#);
    assert_eq!(error_reply(&effects), "bad_request");
}

#[test]
fn unknown_and_malformed_frames_get_bad_frame() {
    let mut w = World::new();
    w.publish_n(1);
    let mut session = w.session(None);
    for text in [
        r#"{"type":"subscribe"}"#,
        r#"{"type":"resume"}"#,
        r#"{"type":"read","ids":"n1"}"#,
        r#"{"type":"ack","seq":-1}"#,
        r#"{"type":"#,
    ] {
        assert_eq!(
            error_reply(&w.send(&mut session, text)),
            "bad_frame",
            "{text}"
        );
    }
    assert_eq!((w.unread(), w.inbox.acks.len()), (1, 0));
}

// ---- the unread count never drifts --------------------------------------------------

/// A deterministic pseudo-random source (Knuth's MMIX LCG): the same run every time.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }

    fn pick<'a>(&mut self, names: &'a [String]) -> Option<&'a String> {
        if names.is_empty() {
            return None;
        }
        Some(&names[self.below(names.len() as u64) as usize])
    }
}

/// The unread count the last count-carrying frame among `effects` announced, if any.
fn announced_count(effects: &[Effect]) -> Option<u64> {
    effects.iter().rev().find_map(|effect| match effect {
        Effect::Broadcast(
            ServerFrame::UnreadCount { unread_count }
            | ServerFrame::Read { unread_count, .. }
            | ServerFrame::Deleted { unread_count, .. },
        ) => Some(*unread_count),
        _ => None,
    })
}

/// Does one random operation and returns the effects it produced.
fn random_step(w: &mut World, rng: &mut Lcg) -> Vec<Effect> {
    match rng.below(10) {
        0..=2 => {
            let drafts = (0..=rng.below(3))
                .map(|_| match rng.below(3) {
                    0 => w.draft_with_ttl(1 + rng.below(20)),
                    _ => w.draft(),
                })
                .collect();
            w.publish(drafts).1
        }
        3 | 4 => {
            let live = w.live_ids();
            let mut names: Vec<String> = (0..=rng.below(3))
                .filter_map(|_| rng.pick(&live).cloned())
                .collect();
            // Now and then one stale name, which must leave everything as it was.
            let stale = names.is_empty() || rng.below(8) == 0;
            if stale {
                names.push("gone".into());
            }
            let request = ReadRequest {
                ids: Some(names),
                ..ReadRequest::default()
            };
            let marked_before = w.read_seqs();
            match w.read(request) {
                Ok((_, effects)) => effects,
                Err(e) => {
                    assert!(stale, "{e:?}");
                    assert_eq!(w.read_seqs(), marked_before, "a refused read marked items");
                    Vec::new()
                }
            }
        }
        5 => {
            let through = rng.below(w.latest_seq() + 3);
            w.read(read_up_to(through)).unwrap().1
        }
        6 | 7 => match rng.pick(&w.live_ids()).cloned() {
            Some(id) => w.delete(&id).unwrap().1,
            None => {
                assert_eq!(w.delete("gone"), Err(HubError::NotFound));
                Vec::new()
            }
        },
        _ => {
            // Time passes (TTLs run out) and sometimes the alarm fires.
            w.advance(rng.below(8 * SECOND));
            if rng.below(2) == 0 {
                w.alarm();
            }
            Vec::new()
        }
    }
}

#[test]
fn the_unread_count_never_drifts() {
    // A small inbox, so that count retention also cuts in during the run.
    let mut w = World::with_limits(Limits {
        inbox_max_items: 40,
        ..Limits::default()
    });
    let mut rng = Lcg(0x5eed);
    let mut announcements = 0;
    let mut expired_seen = 0;
    for step in 0..500 {
        // A little time passes between any two events, so TTLs also run out between them.
        w.advance(rng.below(400));
        let effects = random_step(&mut w, &mut rng);

        let truth = w.unread();
        if let Some(announced) = announced_count(&effects) {
            announcements += 1;
            assert_eq!(announced, truth, "step {step}: announced count");
        }
        let walked = w.walk_back(7, true);
        assert!(walked.iter().all(|n| !n.read && n.live_at(w.now)));
        assert_eq!(walked.len() as u64, truth, "step {step}: page walk");
        assert_eq!(w.page(newest(1)).unwrap().unread_count, truth);

        let live = w.live_ids().len();
        expired_seen += stored(&w.inbox).len() - live;
    }
    // The run is only worth something if it exercised every path.
    assert!(announcements > 200, "{announcements} announcements");
    assert!(expired_seen > 0, "no item ever expired");
    assert!(w.pruned_through() > 0, "count retention never cut in");
}
