//! The UserHub core driven natively: an in-memory inbox, a fake clock in milliseconds, and
//! the effects it asks the glue to carry out.

mod common;

use common::{arrival, draft, stored, T0};
use herald::attention::Preferences;
use herald::config::Limits;
use herald::frame::{CloseCode, ServerFrame};
use herald::history;
use herald::hub::{Admission, Arrival, Effect, Hub, Session};
use herald::inbox::{Hold, Horizon, Inbox, InboxError, MemoryInbox, Prune, Range, ReadTarget};
use herald::model::{Draft, Notification, Priority, Receipt, Seq};
use serde_json::{json, Value};

// ---- helpers ------------------------------------------------------------------------

fn publish(inbox: &mut MemoryInbox, ids: &[&str], now_ms: u64) -> (Vec<Receipt>, Vec<Effect>) {
    let limits = Limits::default();
    let drafts = ids.iter().map(|id| draft(id, "task.updated")).collect();
    Hub {
        inbox,
        limits: &limits,
    }
    .publish(drafts, now_ms)
    .unwrap()
}

fn seqs(receipts: &[Receipt]) -> Vec<Seq> {
    receipts.iter().map(|r| r.seq).collect()
}

fn connect(inbox: &mut MemoryInbox, limits: &Limits, open_sockets: usize) -> Admission {
    Hub { inbox, limits }
        .connect(arrival("ses_1"), open_sockets, T0)
        .unwrap()
}

/// A session as the hub hands it out on connect at `T0`, with a full frame budget.
fn session(limits: &Limits) -> Session {
    match connect(&mut MemoryInbox::default(), limits, 0) {
        Admission::Welcome { session, .. } => session,
        refused => panic!("a first device was refused: {refused:?}"),
    }
}

/// Sends one text frame and returns the single effect it produced.
fn send(limits: &Limits, session: &mut Session, text: &str, now_ms: u64) -> Effect {
    let mut inbox = MemoryInbox::default();
    let mut hub = Hub {
        inbox: &mut inbox,
        limits,
    };
    let mut effects = hub.client_text(session, text, now_ms);
    assert_eq!(effects.len(), 1, "{effects:?}");
    effects.remove(0)
}

const PING: &str = r#"{"type":"ping"}"#;

fn is_pong(effect: &Effect) -> bool {
    *effect == Effect::Reply(ServerFrame::Pong)
}

fn assert_bad_frame(effect: &Effect) {
    match effect {
        Effect::Reply(ServerFrame::Error { code, .. }) => assert_eq!(code, "bad_frame"),
        other => panic!("expected a bad_frame error reply, got {other:?}"),
    }
}

fn close_code(effect: &Effect) -> Option<CloseCode> {
    match effect {
        Effect::Close { code, .. } => Some(*code),
        _ => None,
    }
}

/// Sends `n` pings at `now_ms`, asserting each is answered.
fn pings_answered(limits: &Limits, session: &mut Session, n: usize, now_ms: u64) {
    for i in 0..n {
        let effect = send(limits, session, PING, now_ms);
        assert!(is_pong(&effect), "ping {} at {now_ms}: {effect:?}", i + 1);
    }
}

fn json_of(frame: &ServerFrame) -> Value {
    serde_json::from_str(&frame.to_json()).unwrap()
}

// ---- connect ------------------------------------------------------------------------

#[test]
fn connect_welcomes_with_the_latest_seq_and_unread_count() {
    let limits = Limits::default();
    let mut inbox = MemoryInbox::default();
    publish(&mut inbox, &["n1", "n2", "n3"], T0);

    let Admission::Welcome {
        session,
        welcome,
        replay,
    } = Hub {
        inbox: &mut inbox,
        limits: &limits,
    }
    .connect(
        Arrival {
            device: Some("phone".into()),
            ..arrival("ses_9")
        },
        2,
        T0 + 5,
    )
    .unwrap()
    else {
        panic!("refused")
    };
    // Without a resume cursor the welcome is all there is to send.
    assert_eq!(replay, None);
    assert_eq!(
        welcome,
        ServerFrame::Welcome {
            user: "alice".into(),
            room: None,
            session: "ses_9".into(),
            device: Some("phone".into()),
            seq: 3,
            unread_count: 3,
            heartbeat_ms: limits.heartbeat_ms,
        }
    );
    assert_eq!(
        (session.user.as_str(), session.id.as_str()),
        ("alice", "ses_9")
    );
    assert_eq!(session.device.as_deref(), Some("phone"));
    assert_eq!(session.connected_at, T0 + 5);
}

#[test]
fn a_new_user_is_welcomed_at_seq_zero() {
    let admission = connect(&mut MemoryInbox::default(), &Limits::default(), 0);
    let Admission::Welcome { welcome, .. } = admission else {
        panic!("refused")
    };
    assert!(matches!(
        welcome,
        ServerFrame::Welcome {
            seq: 0,
            unread_count: 0,
            ..
        }
    ));
}

#[test]
fn connect_refuses_a_device_beyond_the_limit() {
    let limits = Limits::default();
    let mut inbox = MemoryInbox::default();
    let last_allowed = connect(&mut inbox, &limits, limits.max_devices - 1);
    assert!(matches!(last_allowed, Admission::Welcome { .. }));

    match connect(&mut inbox, &limits, limits.max_devices) {
        Admission::Refused { code, frame } => {
            assert_eq!(code, CloseCode::TooManyDevices);
            assert_eq!(code.code(), 4009);
            assert!(matches!(frame, ServerFrame::Error { code, .. } if code == "too_many_devices"));
        }
        welcome => panic!(
            "device {} was admitted: {welcome:?}",
            limits.max_devices + 1
        ),
    }
}

// ---- publish ------------------------------------------------------------------------

#[test]
fn publish_assigns_consecutive_seqs_across_calls() {
    let mut inbox = MemoryInbox::default();
    let (first, _) = publish(&mut inbox, &["a", "b"], T0);
    let (second, _) = publish(&mut inbox, &["c"], T0 + 1);
    assert_eq!(seqs(&first), [1, 2]);
    assert_eq!(seqs(&second), [3]);
}

#[test]
fn publish_continues_after_the_latest_seq_even_if_items_are_gone() {
    // Seqs are never reused: an inbox whose latest is 41 goes on at 42.
    let mut inbox = MemoryInbox::default();
    publish(&mut inbox, &["old"], T0);
    let old = stored(&inbox).remove(0);
    inbox.append(&Notification { seq: 41, ..old }).unwrap();
    assert!(inbox.remove(1).unwrap() && inbox.remove(41).unwrap());
    assert_eq!(inbox.item_count().unwrap(), 0);
    let (receipts, _) = publish(&mut inbox, &["x", "y"], T0);
    assert_eq!(seqs(&receipts), [42, 43]);
}

#[test]
fn publish_stores_returns_receipts_in_order_and_broadcasts_each() {
    let mut inbox = MemoryInbox::default();
    let (receipts, effects) = publish(&mut inbox, &["n1", "n2", "n3"], T0);

    let ids: Vec<&str> = receipts.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["n1", "n2", "n3"]);

    // Stored by the time publish returns, with the seq and time the hub gave them.
    let items = stored(&inbox);
    let summary: Vec<(&str, Seq, u64)> = items
        .iter()
        .map(|n| (n.id.as_str(), n.seq, n.created_at))
        .collect();
    assert_eq!(summary, [("n1", 1, T0), ("n2", 2, T0), ("n3", 3, T0)]);

    // One notification per item, then a single count update for the whole publish.
    let (last, notifications) = effects.split_last().expect("effects");
    let pushed: Vec<&Notification> = notifications
        .iter()
        .map(|e| match e {
            Effect::Broadcast(ServerFrame::Notification(n)) => n,
            other => panic!("expected a broadcast notification, got {other:?}"),
        })
        .collect();
    assert_eq!(pushed, items.iter().collect::<Vec<_>>());
    assert_eq!(
        *last,
        Effect::Broadcast(ServerFrame::UnreadCount { unread_count: 3 })
    );
}

#[test]
fn publish_carries_every_draft_field_into_the_notification() {
    let mut inbox = MemoryInbox::default();
    let limits = Limits::default();
    let full = Draft {
        title: Some("Title".into()),
        body: Some("Body".into()),
        data: Some(json!({ "k": [1, 2] })),
        priority: Priority::Urgent,
        actor: Some("bob".into()),
        ..draft("n1", "milestone.created")
    };
    Hub {
        inbox: &mut inbox,
        limits: &limits,
    }
    .publish(vec![full.clone()], T0)
    .unwrap();
    let stored = &stored(&inbox)[0];
    assert_eq!(
        (&stored.id, &stored.event, &stored.title, &stored.body),
        (&full.id, &full.event, &full.title, &full.body)
    );
    assert_eq!(
        (&stored.data, stored.priority, &stored.actor),
        (&full.data, full.priority, &full.actor)
    );
}

/// An inbox whose storage breaks after `ok_appends` successful appends. From then on every
/// operation fails, as a lost database would: no method can quietly succeed (or quietly
/// return a default) and make a test pass for the wrong reason.
struct FailingInbox {
    inner: MemoryInbox,
    ok_appends: usize,
    appends: usize,
    /// Calls of `prune`, the deletes of retention.
    prunes: usize,
}

impl FailingInbox {
    fn new(ok_appends: usize) -> Self {
        Self {
            inner: MemoryInbox::default(),
            ok_appends,
            appends: 0,
            prunes: 0,
        }
    }

    fn healthy(&self) -> Result<(), InboxError> {
        if self.appends >= self.ok_appends {
            return Err(InboxError::Storage("disk on fire".into()));
        }
        Ok(())
    }
}

impl Inbox for FailingInbox {
    fn latest_seq(&self) -> Result<Seq, InboxError> {
        self.healthy()?;
        self.inner.latest_seq()
    }
    fn pruned_through(&self) -> Result<Seq, InboxError> {
        self.healthy()?;
        self.inner.pruned_through()
    }
    fn oldest_seq(&self) -> Result<Option<Seq>, InboxError> {
        self.healthy()?;
        self.inner.oldest_seq()
    }
    fn item_count(&self) -> Result<u64, InboxError> {
        self.healthy()?;
        self.inner.item_count()
    }
    fn append(&mut self, notification: &Notification) -> Result<(), InboxError> {
        self.healthy()?;
        self.appends += 1;
        self.inner.append(notification)
    }
    fn items(&self, range: &Range) -> Result<Vec<Notification>, InboxError> {
        self.healthy()?;
        self.inner.items(range)
    }
    fn items_by_id(&self, ids: &[String], now_ms: u64) -> Result<Vec<Notification>, InboxError> {
        self.healthy()?;
        self.inner.items_by_id(ids, now_ms)
    }
    fn unread_count(&self, now_ms: u64) -> Result<u64, InboxError> {
        self.healthy()?;
        self.inner.unread_count(now_ms)
    }
    fn mark_read(
        &mut self,
        target: ReadTarget<'_>,
        now_ms: u64,
    ) -> Result<Vec<String>, InboxError> {
        self.healthy()?;
        self.inner.mark_read(target, now_ms)
    }
    fn remove(&mut self, seq: Seq) -> Result<bool, InboxError> {
        self.healthy()?;
        self.inner.remove(seq)
    }
    fn prune(&mut self, prune: &Prune) -> Result<u64, InboxError> {
        self.healthy()?;
        self.prunes += 1;
        self.inner.prune(prune)
    }
    fn horizon(&self) -> Result<Horizon, InboxError> {
        self.healthy()?;
        self.inner.horizon()
    }
    fn receipt_for(&self, key: &str) -> Result<Option<(Receipt, u64)>, InboxError> {
        self.healthy()?;
        self.inner.receipt_for(key)
    }
    fn remember(&mut self, key: &str, receipt: &Receipt, now_ms: u64) -> Result<(), InboxError> {
        self.healthy()?;
        self.inner.remember(key, receipt, now_ms)
    }
    fn key_count(&self) -> Result<u64, InboxError> {
        self.healthy()?;
        self.inner.key_count()
    }
    fn forget_oldest_keys(&mut self, count: u64) -> Result<(), InboxError> {
        self.healthy()?;
        self.inner.forget_oldest_keys(count)
    }
    fn forget_ack(&mut self, device: &str) -> Result<(), InboxError> {
        self.healthy()?;
        self.inner.forget_ack(device)
    }
    fn record_ack(&mut self, device: &str, seq: Seq, now_ms: u64) -> Result<(), InboxError> {
        self.healthy()?;
        self.inner.record_ack(device, seq, now_ms)
    }
    fn preferences(&self) -> Result<Preferences, InboxError> {
        self.healthy()?;
        self.inner.preferences()
    }
    fn set_preferences(&mut self, preferences: &Preferences) -> Result<(), InboxError> {
        self.healthy()?;
        self.inner.set_preferences(preferences)
    }
    fn set_hold(&mut self, seqs: &[Seq], hold: Option<Hold>) -> Result<(), InboxError> {
        self.healthy()?;
        self.inner.set_hold(seqs, hold)
    }
    fn held(
        &self,
        after: Seq,
        through: Seq,
        limit: usize,
    ) -> Result<Vec<Notification>, InboxError> {
        self.healthy()?;
        self.inner.held(after, through, limit)
    }
    fn holds(&self, hold: Hold) -> Result<bool, InboxError> {
        self.healthy()?;
        self.inner.holds(hold)
    }
    fn move_holds(&mut self, from: Hold, to: Hold) -> Result<(), InboxError> {
        self.healthy()?;
        self.inner.move_holds(from, to)
    }
    fn window_closes_at(&self) -> Result<Option<u64>, InboxError> {
        self.healthy()?;
        self.inner.window_closes_at()
    }
    fn set_window_closes_at(&mut self, at: Option<u64>) -> Result<(), InboxError> {
        self.healthy()?;
        self.inner.set_window_closes_at(at)
    }
}

#[test]
fn an_alarm_before_any_retention_bound_is_due_deletes_nothing() {
    // The alarm also runs for a socket's sweep or the stats report; retention's deletes
    // then have nothing to do and must not run.
    let mut inbox = FailingInbox::new(usize::MAX);
    let limits = Limits::default();
    let mut hub = Hub {
        inbox: &mut inbox,
        limits: &limits,
    };
    hub.publish(vec![draft("n1", "e")], T0).unwrap();
    hub.alarm(T0 + limits.idle_timeout_ms).unwrap();
    let due = T0 + limits.inbox_max_age_ms;
    assert_eq!(
        history::retention_due(hub.inbox, &limits).unwrap(),
        Some(due)
    );
    assert_eq!(hub.inbox.prunes, 0, "nothing was due");
    hub.alarm(due).unwrap();
    assert_eq!(hub.inbox.prunes, 1, "the age bound was due");
    assert_eq!(hub.inbox.item_count().unwrap(), 0);
}

#[test]
fn publish_answers_nothing_when_storage_fails() {
    // The producer's 202 rests on the receipts, so a failed append must not yield any,
    // not even for the message stored before the failure.
    let mut inbox = FailingInbox::new(1);
    let limits = Limits::default();
    let result = Hub {
        inbox: &mut inbox,
        limits: &limits,
    }
    .publish(vec![draft("n1", "e"), draft("n2", "e")], T0);
    assert!(matches!(result, Err(InboxError::Storage(_))));
    assert_eq!(inbox.appends, 1, "the first append went through");
}

#[test]
fn broken_storage_reaches_every_caller_as_a_storage_error() {
    let limits = Limits::default();
    let mut session = session(&limits);
    let mut inbox = FailingInbox::new(0);
    let mut hub = Hub {
        inbox: &mut inbox,
        limits: &limits,
    };
    let storage_failed = |e: &InboxError| matches!(e, InboxError::Storage(_));
    assert!(storage_failed(
        &hub.connect(
            Arrival {
                since: Some(0),
                ..arrival("s")
            },
            0,
            T0
        )
        .unwrap_err()
    ));
    assert!(storage_failed(
        &hub.publish(vec![draft("n1", "e")], T0).unwrap_err()
    ));
    assert!(storage_failed(&hub.alarm(T0).unwrap_err()));
    assert!(storage_failed(&hub.next_deadline(&[], T0).unwrap_err()));
    assert!(storage_failed(&hub.preferences().unwrap_err()));
    // A socket is told to retry rather than being closed or left without an answer.
    let effects = hub.client_text(&mut session, r#"{"type":"fetch"}"#, T0);
    assert!(
        matches!(effects.as_slice(), [Effect::Reply(ServerFrame::Error { code, .. })] if code == "unavailable"),
        "{effects:?}"
    );
}

// ---- client frames ------------------------------------------------------------------

#[test]
fn a_json_ping_gets_a_pong() {
    let limits = Limits::default();
    let mut session = session(&limits);
    assert!(is_pong(&send(&limits, &mut session, PING, T0)));
}

#[test]
fn bad_frames_get_an_error_and_the_session_stays_usable() {
    let limits = Limits::default();
    let mut session = session(&limits);
    let bad = [
        "garbage",
        "",
        "ping", // the literal is answered by the runtime; JSON is required here
        r#"{"type":"subscribe"}"#,
        r#"{"kind":"ping"}"#,
        "[]",
    ];
    for text in bad {
        assert_bad_frame(&send(&limits, &mut session, text, T0));
        assert!(
            is_pong(&send(&limits, &mut session, PING, T0)),
            "after {text:?}"
        );
    }
}

#[test]
fn a_frame_over_the_size_limit_closes_with_too_big() {
    let limits = Limits::default();
    let mut session = session(&limits);
    // A ping padded to exactly the limit is still a ping.
    let at_limit = PING.to_owned() + &" ".repeat(limits.max_frame_bytes - PING.len());
    assert!(is_pong(&send(&limits, &mut session, &at_limit, T0)));

    let over = "x".repeat(limits.max_frame_bytes + 1);
    let effect = send(&limits, &mut session, &over, T0);
    assert_eq!(close_code(&effect), Some(CloseCode::TooBig));
    assert_eq!(CloseCode::TooBig.code(), 1009);
}

#[test]
fn frames_beyond_the_burst_close_with_rate_limited() {
    let limits = Limits::default();
    let mut session = session(&limits);
    pings_answered(&limits, &mut session, 40, T0);
    let effect = send(&limits, &mut session, PING, T0);
    assert_eq!(close_code(&effect), Some(CloseCode::RateLimited));
    assert_eq!(CloseCode::RateLimited.code(), 4008);
}

#[test]
fn the_budget_refills_at_the_sustained_rate() {
    let limits = Limits::default();
    let mut session = session(&limits);
    pings_answered(&limits, &mut session, 40, T0);

    // 20 frames/s: one second later exactly twenty more fit.
    let later = T0 + 1_000;
    pings_answered(&limits, &mut session, 20, later);
    let effect = send(&limits, &mut session, PING, later);
    assert_eq!(close_code(&effect), Some(CloseCode::RateLimited));

    // One frame per 50 ms, not rounded away between frames.
    let effect = send(&limits, &mut session, PING, later + 49);
    assert_eq!(close_code(&effect), Some(CloseCode::RateLimited));
    assert!(is_pong(&send(&limits, &mut session, PING, later + 50)));
}

#[test]
fn the_budget_never_exceeds_the_burst() {
    let limits = Limits::default();
    let mut session = session(&limits);
    // An hour of silence still buys only a burst of 40.
    let later = T0 + 3_600_000;
    pings_answered(&limits, &mut session, 40, later);
    let effect = send(&limits, &mut session, PING, later);
    assert_eq!(close_code(&effect), Some(CloseCode::RateLimited));
}

#[test]
fn binary_frames_get_an_error() {
    let limits = Limits::default();
    let mut session = session(&limits);
    let mut inbox = MemoryInbox::default();
    let mut hub = Hub {
        inbox: &mut inbox,
        limits: &limits,
    };
    let effects = hub.client_binary(&mut session, 10, T0);
    assert_eq!(effects.len(), 1);
    assert_bad_frame(&effects[0]);

    let effects = hub.client_binary(&mut session, limits.max_frame_bytes + 1, T0);
    assert_eq!(close_code(&effects[0]), Some(CloseCode::TooBig));
}

// ---- frame JSON ---------------------------------------------------------------------

#[test]
fn welcome_json_has_the_documented_fields() {
    let welcome = |device: Option<&str>| ServerFrame::Welcome {
        user: "alice".into(),
        room: None,
        session: "ses_1".into(),
        device: device.map(str::to_owned),
        seq: 7,
        unread_count: 3,
        heartbeat_ms: 25_000,
    };
    assert_eq!(
        json_of(&welcome(None)),
        json!({
            "type": "welcome",
            "user": "alice",
            "session": "ses_1",
            "seq": 7,
            "unread_count": 3,
            "heartbeat_ms": 25_000,
        })
    );
    assert_eq!(json_of(&welcome(Some("phone")))["device"], "phone");
}

#[test]
fn notification_json_has_the_documented_fields() {
    let mut inbox = MemoryInbox::default();
    let (_, effects) = publish(&mut inbox, &["ntf_1"], T0);
    let Effect::Broadcast(frame) = &effects[0] else {
        panic!("{effects:?}")
    };
    // Absent optional fields (including `expires_at` without a TTL) are left out rather
    // than sent as null; `read` is always there, since the inbox keeps read state.
    assert_eq!(
        json_of(frame),
        json!({
            "type": "notification",
            "id": "ntf_1",
            "seq": 1,
            "event": "task.updated",
            "priority": "normal",
            "created_at": T0,
            "read": false,
        })
    );
}

#[test]
fn pong_and_error_json() {
    assert_eq!(json_of(&ServerFrame::Pong), json!({ "type": "pong" }));
    assert_eq!(
        json_of(&ServerFrame::error("bad_frame", "nope")),
        json!({ "type": "error", "code": "bad_frame", "message": "nope" })
    );
}

#[test]
fn a_session_survives_hibernation_with_its_budget() {
    // The glue keeps the session in the socket attachment; the budget must round-trip.
    let limits = Limits::default();
    let mut session = session(&limits);
    pings_answered(&limits, &mut session, 40, T0);
    let json = serde_json::to_string(&session).unwrap();
    let mut restored: Session = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, session);
    let effect = send(&limits, &mut restored, PING, T0);
    assert_eq!(close_code(&effect), Some(CloseCode::RateLimited));
}

#[test]
fn a_clock_stepping_back_credits_no_interval_twice() {
    let limits = Limits::default();
    let mut session = session(&limits);
    pings_answered(&limits, &mut session, 40, T0);
    pings_answered(&limits, &mut session, 20, T0 + 1_000);
    // The clock steps back half a second and then returns: that second was already paid out.
    let effect = send(&limits, &mut session, PING, T0 + 500);
    assert_eq!(close_code(&effect), Some(CloseCode::RateLimited));
    let effect = send(&limits, &mut session, PING, T0 + 1_000);
    assert_eq!(close_code(&effect), Some(CloseCode::RateLimited));
}
