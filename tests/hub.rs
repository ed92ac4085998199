//! The UserHub core driven natively: an in-memory inbox, a fake clock in milliseconds, and
//! the effects it asks the glue to carry out.

use herald::config::Limits;
use herald::frame::{CloseCode, ServerFrame};
use herald::hub::{Admission, Effect, Hub, Receipt, Session};
use herald::inbox::{Inbox, InboxError, MemoryInbox, Notification, Priority, Seq};
use herald::publish::Draft;
use serde_json::{json, Value};

/// The fake clock's starting point, in milliseconds since the epoch.
const T0: u64 = 1_700_000_000_000;

// ---- helpers ------------------------------------------------------------------------

fn draft(id: &str, event: &str) -> Draft {
    Draft {
        id: id.into(),
        event: event.into(),
        title: None,
        body: None,
        data: None,
        priority: Priority::Normal,
        actor: None,
    }
}

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
        .connect("alice", open_sockets, "ses_1".into(), None, T0)
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

    let Admission::Welcome { session, welcome } = Hub {
        inbox: &mut inbox,
        limits: &limits,
    }
    .connect("alice", 2, "ses_9".into(), Some("phone".into()), T0 + 5)
    .unwrap() else {
        panic!("refused")
    };
    assert_eq!(
        welcome,
        ServerFrame::Welcome {
            user: "alice".into(),
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
    inbox
        .append(&Notification {
            seq: 41,
            ..inbox.items[0].clone()
        })
        .unwrap();
    inbox.items.clear();
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
    let stored: Vec<(&str, Seq, u64)> = inbox
        .items
        .iter()
        .map(|n| (n.id.as_str(), n.seq, n.created_at))
        .collect();
    assert_eq!(stored, [("n1", 1, T0), ("n2", 2, T0), ("n3", 3, T0)]);

    let pushed: Vec<&Notification> = effects
        .iter()
        .map(|e| match e {
            Effect::Broadcast(ServerFrame::Notification(n)) => n,
            other => panic!("expected a broadcast notification, got {other:?}"),
        })
        .collect();
    assert_eq!(pushed, inbox.items.iter().collect::<Vec<_>>());
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
    let stored = &inbox.items[0];
    assert_eq!(
        (&stored.id, &stored.event, &stored.title, &stored.body),
        (&full.id, &full.event, &full.title, &full.body)
    );
    assert_eq!(
        (&stored.data, stored.priority, &stored.actor),
        (&full.data, full.priority, &full.actor)
    );
}

/// An inbox whose storage fails after `ok_appends` successful appends.
struct FailingInbox {
    inner: MemoryInbox,
    ok_appends: usize,
}

impl Inbox for FailingInbox {
    fn latest_seq(&self) -> Result<Seq, InboxError> {
        self.inner.latest_seq()
    }
    fn append(&mut self, notification: &Notification) -> Result<(), InboxError> {
        if self.inner.items.len() >= self.ok_appends {
            return Err(InboxError::Storage("disk on fire".into()));
        }
        self.inner.append(notification)
    }
    fn unread_count(&self) -> Result<u64, InboxError> {
        self.inner.unread_count()
    }
}

#[test]
fn publish_answers_nothing_when_storage_fails() {
    // The producer's 202 rests on the receipts, so a failed append must not yield any.
    let mut inbox = FailingInbox {
        inner: MemoryInbox::default(),
        ok_appends: 1,
    };
    let limits = Limits::default();
    let result = Hub {
        inbox: &mut inbox,
        limits: &limits,
    }
    .publish(vec![draft("n1", "e"), draft("n2", "e")], T0);
    assert!(matches!(result, Err(InboxError::Storage(_))));
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
    // Absent optional fields are left out rather than sent as null.
    assert_eq!(
        json_of(frame),
        json!({
            "type": "notification",
            "id": "ntf_1",
            "seq": 1,
            "event": "task.updated",
            "priority": "normal",
            "created_at": T0,
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
