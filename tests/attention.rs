//! Attention-aware delivery and liveness, driven natively with a `MemoryInbox` and a fake
//! clock in milliseconds: parsing preferences, the batch window, focus mode, quiet hours in
//! a time zone (across midnight and daylight-saving changes), muted events and a minimum
//! priority, the one alarm deadline that covers all of them, and closing silent or expired
//! sockets.
//!
//! Expected instants in a time zone are worked out by hand in the comments and written as
//! UTC; `utc` only turns a UTC calendar time into ms, it knows nothing of time zones.

mod common;

use common::{arrival, stored, World, T0};
use herald::attention::{Preferences, QuietHours, MAX_FOCUS_MS};
use herald::config::Limits;
use herald::frame::{BatchReason, CloseCode, ServerFrame};
use herald::hub::{Admission, Arrival, Effect, Hub, Session};
use herald::inbox::{Inbox, MemoryInbox};
use herald::model::{Draft, InputError, Notification, Priority, Seq};
use herald::socket::SocketView;
use serde_json::{json, Value};

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// The UTC calendar time `y-m-d h:min` in ms since the epoch.
fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> u64 {
    let at = chrono::NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|day| day.and_hms_opt(h, min, 0))
        .expect("a valid calendar time");
    at.and_utc().timestamp_millis() as u64
}

// ---- the world under test -----------------------------------------------------------

// `World` itself, with its constructors, `hub`, `advance`, `draft`, `publish_one`,
// `deadline`, `send`, `unread` and `stored_seqs`, is in `common`. Nothing is deduplicated
// here, so the k-th draft, `n{k}`, always has seq k.

impl World {
    /// A world whose user has already saved `preferences` (a `PUT /v1/preferences` body).
    fn preferring(now: u64, preferences: Value) -> Self {
        let mut w = Self::at(now);
        w.prefer(preferences);
        w
    }

    /// Parses and stores preferences as the preferences route does.
    fn prefer(&mut self, body: Value) -> Vec<Sent> {
        let preferences = Preferences::parse(body.to_string().as_bytes()).unwrap();
        let now = self.now;
        let effects = self.hub().set_preferences(preferences, now).unwrap();
        self.carry_out(effects)
    }

    /// `effects` as the glue carries them out: each release pulled whole, slice by slice.
    fn carry_out(&mut self, effects: Vec<Effect>) -> Vec<Sent> {
        let now = self.now;
        effects
            .into_iter()
            .map(|effect| match effect {
                Effect::Release(mut release) => {
                    let mut items = Vec::new();
                    while let Some(slice) = self.hub().release_next(&mut release, now).unwrap() {
                        items.extend(slice);
                    }
                    Sent::Released(release.reason, items)
                }
                other => Sent::Effect(Box::new(other)),
            })
            .collect()
    }

    /// A client frame on `session`'s socket, carried out.
    fn sent(&mut self, session: &mut Session, text: &str) -> Vec<Sent> {
        let effects = self.send(session, text);
        self.carry_out(effects)
    }

    fn preferences(&mut self) -> Preferences {
        self.hub().preferences().unwrap()
    }

    fn publish(&mut self, priority: Priority) -> Vec<Sent> {
        let draft = Draft {
            priority,
            ..self.draft()
        };
        let effects = self.publish_one(draft).1;
        self.carry_out(effects)
    }

    fn publish_event(&mut self, event: &str, priority: Priority) -> Vec<Sent> {
        let draft = Draft {
            event: event.into(),
            priority,
            ..self.draft()
        };
        let effects = self.publish_one(draft).1;
        self.carry_out(effects)
    }

    fn alarm(&mut self) -> Vec<Sent> {
        let now = self.now;
        let effects = self.hub().alarm(now).unwrap();
        self.carry_out(effects)
    }

    /// The next deadline with `sockets` open (`deadline` is this with none).
    fn deadline_with(&mut self, sockets: &[SocketView]) -> Option<u64> {
        let now = self.now;
        self.hub().next_deadline(sockets, now).unwrap()
    }

    /// A device connecting now with `arrival`.
    fn admit(&mut self, arrival: Arrival) -> Session {
        let now = self.now;
        match self.hub().connect(arrival, 0, now) {
            Ok(Admission::Welcome { session, .. }) => session,
            other => panic!("connect failed: {other:?}"),
        }
    }

    fn session(&mut self) -> Session {
        self.admit(arrival("ses_1"))
    }

    /// Sends a `focus` frame with the given fields (`type` is added).
    fn focus(&mut self, session: &mut Session, fields: Value) -> Vec<Sent> {
        let mut frame = fields;
        frame["type"] = json!("focus");
        self.sent(session, &frame.to_string())
    }

    fn held_seqs(&self) -> Vec<Seq> {
        let held = self.inbox.held(0, Seq::MAX, usize::MAX).unwrap();
        held.iter().map(|n| n.seq).collect()
    }
}

/// What an event sent, as the glue carries it out.
#[derive(Debug)]
enum Sent {
    /// An effect other than a release.
    Effect(Box<Effect>),
    /// A release, pulled whole: why, and the items it sent.
    Released(BatchReason, Vec<Notification>),
}

/// What an event sent, reduced to what the delivery rules are about.
#[derive(Debug, Clone, PartialEq)]
enum Out {
    /// A live `notification` broadcast.
    Pushed(Seq),
    /// A `batch` broadcast with these seqs.
    Batch(BatchReason, Vec<Seq>),
    /// An `unread_count` broadcast.
    Unread(u64),
    /// A `preferences` broadcast.
    Prefs(Preferences),
    /// An error reply, by code.
    Error(String),
}

fn outs(sent: &[Sent]) -> Vec<Out> {
    sent.iter()
        .map(|sent| match sent {
            Sent::Released(reason, items) => {
                Out::Batch(*reason, items.iter().map(|n| n.seq).collect())
            }
            Sent::Effect(effect) => match &**effect {
                Effect::Broadcast(ServerFrame::Notification(n)) => Out::Pushed(n.seq),
                Effect::Broadcast(ServerFrame::UnreadCount { unread_count }) => {
                    Out::Unread(*unread_count)
                }
                Effect::Broadcast(ServerFrame::Preferences(p)) => Out::Prefs(p.clone()),
                Effect::Reply(ServerFrame::Error { code, .. }) => Out::Error(code.clone()),
                other => panic!("unexpected effect {other:?}"),
            },
        })
        .collect()
}

/// A digest released because focus or quiet hours ended, then the count it leaves.
fn digest(seqs: &[Seq], unread: u64) -> Vec<Out> {
    vec![
        Out::Batch(BatchReason::FocusEnd, seqs.to_vec()),
        Out::Unread(unread),
    ]
}

/// The default preferences with focus on until `until` (or off with `None`).
fn focused(until: Option<u64>) -> Preferences {
    Preferences {
        focus_until: until,
        ..Preferences::default()
    }
}

fn quiet(start: &str, end: &str, time_zone: &str) -> QuietHours {
    QuietHours {
        start: start.into(),
        end: end.into(),
        time_zone: time_zone.into(),
    }
}

fn quiet_json(start: &str, end: &str, time_zone: &str) -> Value {
    json!({ "quiet_hours": { "start": start, "end": end, "time_zone": time_zone } })
}

// ---- parsing preferences ------------------------------------------------------------

fn parse(body: &Value) -> Result<Preferences, InputError> {
    Preferences::parse(body.to_string().as_bytes())
}

/// Asserts that `body` is refused naming `field`, also in the text a client reads.
fn assert_field_error(body: &Value, field: &str) {
    let error = parse(body).expect_err(&format!("{body} was accepted; expected {field}"));
    let InputError::Field { field: got, .. } = &error else {
        panic!("expected an error for {field}, got {error:?} for {body}");
    };
    assert_eq!(got, field, "for {body}");
    assert!(
        error.to_string().starts_with(&format!("{field}: ")),
        "{error}"
    );
}

#[test]
fn missing_and_null_fields_take_the_defaults() {
    let defaults = Preferences {
        batch_window_ms: 0,
        focus_until: None,
        quiet_hours: None,
        muted_events: Vec::new(),
        min_priority: Priority::Low,
    };
    assert_eq!(Preferences::default(), defaults);
    assert_eq!(parse(&json!({})), Ok(defaults.clone()));
    let nulls = json!({
        "batch_window_ms": null,
        "focus_until": null,
        "quiet_hours": null,
        "muted_events": null,
        "min_priority": null,
    });
    assert_eq!(parse(&nulls), Ok(defaults));
}

#[test]
fn every_field_is_read() {
    let body = json!({
        "batch_window_ms": 2_500,
        "focus_until": T0,
        "quiet_hours": { "start": "22:00", "end": "07:00", "time_zone": "Europe/Berlin" },
        "muted_events": ["build.failed", "chat:typing"],
        "min_priority": "high",
    });
    assert_eq!(
        parse(&body),
        Ok(Preferences {
            batch_window_ms: 2_500,
            focus_until: Some(T0),
            quiet_hours: Some(quiet("22:00", "07:00", "Europe/Berlin")),
            muted_events: vec!["build.failed".into(), "chat:typing".into()],
            min_priority: Priority::High,
        })
    );
}

#[test]
fn stored_preferences_parse_back_to_themselves() {
    // The store keeps the JSON it is given; reading it back must not fail or change it.
    let full = Preferences {
        batch_window_ms: 60_000,
        focus_until: Some(T0),
        quiet_hours: Some(quiet("23:59", "00:00", "America/New_York")),
        muted_events: vec!["a".into()],
        min_priority: Priority::Urgent,
    };
    for preferences in [Preferences::default(), full] {
        let json = serde_json::to_vec(&preferences).unwrap();
        assert_eq!(Preferences::parse(&json), Ok(preferences));
    }
}

#[test]
fn the_batch_window_is_0_to_60_seconds() {
    for ok in [0, 1, 60_000] {
        let parsed = parse(&json!({ "batch_window_ms": ok })).unwrap();
        assert_eq!(parsed.batch_window_ms, ok);
    }
    for bad in [
        json!(60_001),
        json!(-1),
        json!(1.5),
        json!("1000"),
        json!(true),
    ] {
        assert_field_error(&json!({ "batch_window_ms": bad }), "batch_window_ms");
    }
}

#[test]
fn quiet_hours_need_an_iana_time_zone() {
    for ok in ["Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata"] {
        assert!(parse(&quiet_json("22:00", "07:00", ok)).is_ok(), "{ok}");
    }
    for bad in ["Mars/Olympus_Mons", "", "Europe/berlin ", "+01:00"] {
        assert_field_error(&quiet_json("22:00", "07:00", bad), "quiet_hours.time_zone");
    }
}

#[test]
fn quiet_hours_times_are_hh_mm() {
    for ok in ["00:00", "07:05", "23:59"] {
        assert!(parse(&quiet_json(ok, ok, "UTC")).is_ok(), "{ok}");
    }
    let malformed = [
        "7:00", "24:00", "ab:cd", "07:60", "0700", "07:00:00", "07-00", "", "+7:00", "-7:00",
        "07:5 ", "7 :00",
    ];
    for bad in malformed {
        assert_field_error(&quiet_json(bad, "07:00", "UTC"), "quiet_hours.start");
        assert_field_error(&quiet_json("22:00", bad, "UTC"), "quiet_hours.end");
    }
}

#[test]
fn quiet_hours_times_with_blanks_are_refused() {
    // Five characters with a colon in the middle, but not HH:MM: chrono's `%H`/`%M` skip
    // leading whitespace, so these slip through the length check and are stored as given.
    for bad in [" 7:00", "\t7:00", "07: 5"] {
        assert_field_error(&quiet_json(bad, "07:00", "UTC"), "quiet_hours.start");
        assert_field_error(&quiet_json("22:00", bad, "UTC"), "quiet_hours.end");
    }
}

#[test]
fn quiet_hours_must_be_a_complete_object() {
    for bad in [
        json!({ "start": "22:00", "end": "07:00" }),
        json!({ "start": "22:00", "time_zone": "UTC" }),
        json!("22:00-07:00"),
        json!({ "start": 2200, "end": "07:00", "time_zone": "UTC" }),
    ] {
        assert_field_error(&json!({ "quiet_hours": bad }), "quiet_hours");
    }
}

#[test]
fn a_bad_muted_event_is_named_by_its_index() {
    let body = json!({ "muted_events": ["task.updated", "build.failed", "bad name!"] });
    assert_field_error(&body, "muted_events[2]");
    assert_field_error(&json!({ "muted_events": [""] }), "muted_events[0]");
    assert_field_error(&json!({ "muted_events": "task.updated" }), "muted_events");
    assert_field_error(&json!({ "muted_events": [1] }), "muted_events");

    let most: Vec<String> = (0..100).map(|i| format!("e{i}")).collect();
    assert_eq!(
        parse(&json!({ "muted_events": most }))
            .unwrap()
            .muted_events
            .len(),
        100
    );
    let too_many: Vec<String> = (0..101).map(|i| format!("e{i}")).collect();
    assert_field_error(&json!({ "muted_events": too_many }), "muted_events");
}

#[test]
fn min_priority_is_one_of_the_four() {
    for (name, priority) in [
        ("low", Priority::Low),
        ("normal", Priority::Normal),
        ("high", Priority::High),
        ("urgent", Priority::Urgent),
    ] {
        let parsed = parse(&json!({ "min_priority": name })).unwrap();
        assert_eq!(parsed.min_priority, priority);
    }
    for bad in [json!("critical"), json!("HIGH"), json!(2), json!("")] {
        assert_field_error(&json!({ "min_priority": bad }), "min_priority");
    }
}

#[test]
fn focus_until_is_a_time_or_null() {
    assert_field_error(&json!({ "focus_until": "soon" }), "focus_until");
    assert_field_error(&json!({ "focus_until": -1 }), "focus_until");
}

#[test]
fn focus_until_reaches_at_most_as_far_as_a_focus_frame() {
    let at = |until: u64| parse(&json!({ "focus_until": until })).unwrap();
    assert_eq!(at(T0 + MAX_FOCUS_MS).check_focus_horizon(T0), Ok(()));
    // A past time is off, not an error.
    assert_eq!(at(T0 - 1).check_focus_horizon(T0), Ok(()));
    assert_eq!(parse(&json!({})).unwrap().check_focus_horizon(T0), Ok(()));
    match at(T0 + MAX_FOCUS_MS + 1).check_focus_horizon(T0) {
        Err(InputError::Field { field, .. }) => assert_eq!(field, "focus_until"),
        other => panic!("expected a focus_until error, got {other:?}"),
    }
    // Year 275760 in ms does not overflow the check.
    assert!(at(8_640_000_000_000_000)
        .check_focus_horizon(u64::MAX - 1)
        .is_ok());
}

#[test]
fn an_unknown_field_is_refused_by_name() {
    // A typo must not silently do nothing.
    assert_field_error(&json!({ "batch_window": 1000 }), "batch_window");
    assert_field_error(&json!({ "min_priority": "high", "quiet": null }), "quiet");
}

#[test]
fn a_body_that_is_not_a_json_object_is_refused() {
    for bad in [&b"{"[..], b"", b"batch_window_ms=5", b"{\"a\":1,}"] {
        assert!(
            matches!(Preferences::parse(bad), Err(InputError::Json(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    for bad in [json!([]), json!(null), json!(5)] {
        assert_field_error(&bad, "body");
    }
}

#[test]
fn preferences_persist_in_the_inbox() {
    let mut w = World::new();
    assert_eq!(w.preferences(), Preferences::default(), "a new user");
    let body = json!({
        "batch_window_ms": 5_000,
        "quiet_hours": { "start": "22:00", "end": "07:00", "time_zone": "Europe/Berlin" },
        "muted_events": ["build.failed"],
        "min_priority": "normal",
    });
    let expected = parse(&body).unwrap();
    // Every device is told.
    assert_eq!(outs(&w.prefer(body)), [Out::Prefs(expected.clone())]);
    assert_eq!(w.preferences(), expected);

    // A later event (a new hub over the same store) reads the same.
    let limits = Limits::default();
    let hub = Hub {
        inbox: &mut w.inbox,
        limits: &limits,
    };
    assert_eq!(hub.preferences().unwrap(), expected);
}

// ---- the batch window ---------------------------------------------------------------

/// A world with a one-second batch window, starting at `T0`.
fn one_second_window() -> World {
    World::preferring(T0, json!({ "batch_window_ms": 1_000 }))
}

#[test]
fn items_within_the_window_go_out_as_one_batch_when_it_closes() {
    let mut w = one_second_window();
    // The first held item opens the window; neither it nor the next is sent, and no count
    // goes out either: the count travels with what is pushed.
    assert_eq!(outs(&w.publish(Priority::Normal)), []);
    assert_eq!(
        w.deadline(),
        Some(T0 + 1_000),
        "the window closes 1000 ms after"
    );
    w.advance(999);
    assert_eq!(outs(&w.publish(Priority::Normal)), []);
    assert_eq!(
        w.deadline(),
        Some(T0 + 1_000),
        "a later item does not move the close"
    );
    assert_eq!((w.held_seqs(), w.unread()), (vec![1, 2], 2));

    // One ms before the close the alarm has nothing to send.
    assert_eq!(outs(&w.alarm()), []);
    assert_eq!(w.held_seqs(), [1, 2]);

    w.advance(1);
    let effects = w.alarm();
    assert_eq!(
        outs(&effects),
        [Out::Batch(BatchReason::Window, vec![1, 2]), Out::Unread(2)]
    );
    // The batch carries the stored notifications themselves.
    let Sent::Released(_, items) = &effects[0] else {
        unreachable!()
    };
    assert_eq!(*items, stored(&w.inbox));
    assert!(w.held_seqs().is_empty());

    // The alarm may run twice at the same time; the batch goes out once.
    assert_eq!(outs(&w.alarm()), []);
}

#[test]
fn a_socket_that_replayed_held_items_is_not_sent_them_again_on_release() {
    let mut w = one_second_window();
    w.publish(Priority::Normal);
    w.publish(Priority::Normal);
    assert_eq!(w.held_seqs(), [1, 2]);
    // A device resuming now gets both in its replay, held or not: the cursor promise.
    let mut resumed = w.admit(Arrival {
        since: Some(0),
        ..arrival("ses_resumed")
    });
    assert_eq!(resumed.replayed, 2);
    let live = w.admit(arrival("ses_live"));
    assert_eq!(live.replayed, 0);
    w.publish(Priority::Normal);

    w.advance(1_000);
    let effects = w.alarm();
    let Sent::Released(_, items) = &effects[0] else {
        panic!("{effects:?}")
    };
    let seqs = |items: Vec<Notification>| items.iter().map(|n| n.seq).collect::<Vec<_>>();
    assert_eq!(seqs(items.clone()), [1, 2, 3]);
    assert_eq!(seqs(live.unseen(items)), [1, 2, 3]);
    assert_eq!(seqs(resumed.unseen(items)), [3]);

    // A `resume` frame counts as well, and never lowers what was replayed.
    w.publish(Priority::Normal);
    w.send(&mut resumed, r#"{"type":"resume","since":3}"#);
    assert_eq!(resumed.replayed, 4);
    w.send(&mut resumed, r#"{"type":"resume","since":4}"#);
    assert_eq!(resumed.replayed, 4);
    w.advance(1_000);
    let effects = w.alarm();
    let Sent::Released(_, items) = &effects[0] else {
        panic!("{effects:?}")
    };
    assert_eq!(seqs(resumed.unseen(items)), Vec::<Seq>::new());
}

#[test]
fn an_item_at_the_close_after_the_flush_opens_a_new_window() {
    let mut w = one_second_window();
    w.publish(Priority::Normal);
    w.advance(1_000);
    assert_eq!(
        outs(&w.alarm()),
        [Out::Batch(BatchReason::Window, vec![1]), Out::Unread(1)]
    );

    // Same instant, after the flush: a new window, closing 1000 ms from now.
    assert_eq!(outs(&w.publish(Priority::Normal)), []);
    assert_eq!(w.deadline(), Some(T0 + 2_000));
    w.advance(999);
    assert_eq!(outs(&w.alarm()), []);
    w.advance(1);
    assert_eq!(
        outs(&w.alarm()),
        [Out::Batch(BatchReason::Window, vec![2]), Out::Unread(2)]
    );
    assert_eq!(
        w.deadline(),
        Some(T0 + w.limits.inbox_max_age_ms),
        "retention is left"
    );
}

#[test]
fn urgent_items_skip_the_window() {
    let mut w = one_second_window();
    w.publish(Priority::High);
    assert_eq!(
        outs(&w.publish(Priority::Urgent)),
        [Out::Pushed(2), Out::Unread(2)]
    );
    w.advance(1_000);
    assert_eq!(
        outs(&w.alarm()),
        [Out::Batch(BatchReason::Window, vec![1]), Out::Unread(2)]
    );
}

// ---- focus --------------------------------------------------------------------------

const FOCUS_ONE_MINUTE: &str = r#"{"type":"focus","on":true,"duration_ms":60000}"#;
const FOCUS_OFF: &str = r#"{"type":"focus","on":false}"#;

#[test]
fn focus_holds_all_but_urgent_until_it_ends_then_sends_one_digest() {
    let mut w = World::new();
    let mut session = w.session();
    assert_eq!(
        outs(&w.sent(&mut session, FOCUS_ONE_MINUTE)),
        [Out::Prefs(focused(Some(T0 + MINUTE)))],
        "every device learns that focus is on"
    );
    assert_eq!(w.preferences(), focused(Some(T0 + MINUTE)));

    // Stored and counted, but nothing is sent: no notification and no count.
    w.advance(SECOND);
    for priority in [Priority::Normal, Priority::Low, Priority::High] {
        assert_eq!(outs(&w.publish(priority)), [], "{priority:?}");
    }
    assert_eq!((w.stored_seqs(), w.unread()), (vec![1, 2, 3], 3));
    assert_eq!(w.held_seqs(), [1, 2, 3]);
    // Urgent goes through at once, with the count of everything stored.
    assert_eq!(
        outs(&w.publish(Priority::Urgent)),
        [Out::Pushed(4), Out::Unread(4)]
    );
    assert_eq!(w.deadline(), Some(T0 + MINUTE));

    // Extending focus moves the deadline with it; the old end passes quietly.
    w.advance(29 * SECOND);
    let until = T0 + 2 * MINUTE;
    let extend = json!({ "on": true, "until": until });
    assert_eq!(
        outs(&w.focus(&mut session, extend)),
        [Out::Prefs(focused(Some(until)))]
    );
    assert_eq!(w.deadline(), Some(until));
    w.now = T0 + MINUTE;
    assert_eq!(outs(&w.alarm()), []);
    assert_eq!(w.held_seqs(), [1, 2, 3]);

    // At the end: exactly the held items, in seq order, as one digest.
    w.now = until;
    let effects = w.alarm();
    assert_eq!(outs(&effects), digest(&[1, 2, 3], 4));
    let Sent::Released(_, items) = &effects[0] else {
        unreachable!()
    };
    assert_eq!(*items, stored(&w.inbox)[..3]);
    assert!(w.held_seqs().is_empty());
    assert_eq!(outs(&w.alarm()), [], "the digest goes out once");
    // Nothing held any more: only retention is left to wait for.
    assert_eq!(w.deadline(), Some(T0 + SECOND + w.limits.inbox_max_age_ms));
    // And new items are pushed live again.
    assert_eq!(
        outs(&w.publish(Priority::Low)),
        [Out::Pushed(5), Out::Unread(5)]
    );
}

#[test]
fn focus_can_also_be_shortened() {
    let mut w = World::new();
    let mut session = w.session();
    w.sent(&mut session, FOCUS_ONE_MINUTE);
    w.publish(Priority::Normal);
    let sooner = T0 + 10 * SECOND;
    w.focus(&mut session, json!({ "on": true, "until": sooner }));
    assert_eq!(w.deadline(), Some(sooner));
    w.now = sooner;
    assert_eq!(outs(&w.alarm()), digest(&[1], 1));
}

#[test]
fn turning_focus_off_releases_the_digest_at_once() {
    let mut w = World::new();
    let mut session = w.session();
    w.sent(&mut session, FOCUS_ONE_MINUTE);
    w.advance(SECOND);
    w.publish(Priority::Normal);
    w.publish(Priority::High);

    w.advance(SECOND);
    let mut expected = vec![Out::Prefs(focused(None))];
    expected.extend(digest(&[1, 2], 2));
    assert_eq!(outs(&w.sent(&mut session, FOCUS_OFF)), expected);
    assert!(w.held_seqs().is_empty());
    assert_eq!(outs(&w.alarm()), []);
    assert_eq!(
        outs(&w.publish(Priority::Normal)),
        [Out::Pushed(3), Out::Unread(3)]
    );
}

#[test]
fn a_digest_is_pulled_one_slice_at_a_time() {
    // What bounds a user object's memory on a digest: each pull reads one slice of what
    // focus held, whatever that was.
    let mut w = World::new();
    let mut session = w.session();
    w.sent(&mut session, FOCUS_ONE_MINUTE);
    for _ in 0..250 {
        w.publish(Priority::Normal);
    }
    let effects = w.send(&mut session, FOCUS_OFF);
    let Some(Effect::Release(mut release)) = effects.get(1).cloned() else {
        panic!("{effects:?}")
    };
    let now = w.now;
    let mut slices = Vec::new();
    while let Some(items) = w.hub().release_next(&mut release, now).unwrap() {
        slices.push((items[0].seq, items.len()));
    }
    assert_eq!(slices, [(1, 100), (101, 100), (201, 50)]);
    assert!(w.held_seqs().is_empty());
}

#[test]
fn a_digest_released_by_a_publish_leaves_out_what_that_publish_holds() {
    let mut w = World::preferring(T0, json!({ "batch_window_ms": 1_000 }));
    let mut session = w.session();
    w.sent(&mut session, FOCUS_ONE_MINUTE);
    w.publish(Priority::Normal);
    w.publish(Priority::Normal);
    // Focus is over; the next publish releases the digest first, then opens a window.
    w.advance(MINUTE);
    assert_eq!(outs(&w.publish(Priority::Normal)), digest(&[1, 2], 2));
    assert_eq!(w.held_seqs(), [3]);
}

#[test]
fn focus_off_with_nothing_held_sends_only_the_preferences() {
    let mut w = World::new();
    let mut session = w.session();
    w.sent(&mut session, FOCUS_ONE_MINUTE);
    assert_eq!(
        outs(&w.sent(&mut session, FOCUS_OFF)),
        [Out::Prefs(focused(None))]
    );
}

#[test]
fn a_focus_of_exactly_seven_days_is_allowed() {
    let mut w = World::new();
    let mut session = w.session();
    let longest = json!({ "on": true, "duration_ms": MAX_FOCUS_MS });
    assert_eq!(
        outs(&w.focus(&mut session, longest)),
        [Out::Prefs(focused(Some(T0 + 7 * DAY)))]
    );
    let until = json!({ "on": true, "until": w.now + MAX_FOCUS_MS });
    assert_eq!(
        outs(&w.focus(&mut session, until)),
        [Out::Prefs(focused(Some(T0 + 7 * DAY)))]
    );
}

#[test]
fn an_invalid_focus_frame_gets_an_error_and_changes_nothing() {
    let mut w = World::new();
    let mut session = w.session();
    // Focus is on with an item held, so that a wrongly applied "off" would show.
    w.sent(&mut session, FOCUS_ONE_MINUTE);
    w.publish(Priority::Normal);
    w.advance(SECOND);
    let now = w.now;

    let refused = [
        // Valid JSON the rules refuse.
        (json!({ "on": true }), "bad_request"),
        (json!({ "on": true, "until": now }), "bad_request"),
        (json!({ "on": true, "until": now - 1 }), "bad_request"),
        (json!({ "on": true, "duration_ms": 0 }), "bad_request"),
        (
            json!({ "on": true, "duration_ms": MAX_FOCUS_MS + 1 }),
            "bad_request",
        ),
        (
            json!({ "on": true, "duration_ms": u64::MAX }),
            "bad_request",
        ),
        (
            json!({ "on": true, "until": now + MAX_FOCUS_MS + 1 }),
            "bad_request",
        ),
        (
            json!({ "on": true, "until": now + SECOND, "duration_ms": SECOND }),
            "bad_request",
        ),
        (json!({ "on": false, "until": now + SECOND }), "bad_request"),
        (json!({ "on": false, "duration_ms": SECOND }), "bad_request"),
        // Not a focus frame at all.
        (json!({}), "bad_frame"),
        (json!({ "on": "yes", "duration_ms": SECOND }), "bad_frame"),
        (json!({ "on": true, "until": -5 }), "bad_frame"),
    ];
    for (fields, code) in refused {
        let effects = w.focus(&mut session, fields.clone());
        assert_eq!(outs(&effects), [Out::Error(code.into())], "{fields}");
        assert_eq!(w.preferences(), focused(Some(T0 + MINUTE)), "{fields}");
        assert_eq!(w.held_seqs(), [1], "{fields}");
        assert_eq!(w.deadline(), Some(T0 + MINUTE), "{fields}");
    }
}

#[test]
fn a_window_that_closes_during_focus_joins_the_digest() {
    let mut w = World::preferring(T0, json!({ "batch_window_ms": 1_000 }));
    let mut session = w.session();
    w.publish(Priority::Normal); // window: closes at T0 + 1000
    w.advance(500);
    w.sent(&mut session, FOCUS_ONE_MINUTE); // focus until T0 + 60 500
    w.advance(100);
    w.publish(Priority::Normal); // held for focus
    assert_eq!(w.deadline(), Some(T0 + 1_000), "the window closes first");

    // The window closes while focus lasts: nothing is sent, the items wait for focus.
    w.now = T0 + 1_000;
    assert_eq!(outs(&w.alarm()), []);
    assert_eq!(w.held_seqs(), [1, 2]);
    assert_eq!(w.deadline(), Some(T0 + 500 + MINUTE));

    w.now = T0 + 500 + MINUTE;
    assert_eq!(
        outs(&w.alarm()),
        digest(&[1, 2], 2),
        "one digest, no window batch"
    );
    assert_eq!(outs(&w.alarm()), []);
}

#[test]
fn an_item_that_expires_while_held_is_left_out_of_the_digest() {
    let mut w = World::new();
    let mut session = w.session();
    w.sent(&mut session, FOCUS_ONE_MINUTE);
    w.publish(Priority::Normal);
    let short_lived = Draft {
        ttl_s: Some(10),
        ..w.draft()
    };
    w.publish_one(short_lived);
    w.publish(Priority::Normal);
    w.now = T0 + MINUTE;
    assert_eq!(outs(&w.alarm()), digest(&[1, 3], 2));
    assert!(w.held_seqs().is_empty());
}

#[test]
fn held_notifications_keep_their_fields_in_a_digest() {
    // The digest carries the stored notifications unchanged (ids, titles, data, priority),
    // so that a client renders a held item exactly as it would a live one.
    let mut w = World::new();
    let mut session = w.session();
    w.sent(&mut session, FOCUS_ONE_MINUTE);
    let full = Draft {
        title: Some("Title".into()),
        body: Some("Body".into()),
        data: Some(json!({ "k": 1 })),
        priority: Priority::High,
        actor: Some("bob".into()),
        ..w.draft()
    };
    w.publish_one(full);
    let effects = w.sent(&mut session, FOCUS_OFF);
    let Some(Sent::Released(_, items)) = effects.get(1) else {
        panic!("{effects:?}")
    };
    let expected: Vec<Notification> = stored(&w.inbox);
    assert_eq!(*items, expected);
    assert_eq!(items[0].title.as_deref(), Some("Title"));
}

#[test]
fn a_missed_focus_end_is_still_due() {
    // The alarm was set for the end of focus but has not run yet when another event asks
    // for the next deadline (alarms can be late). The digest is overdue, so the deadline
    // must be now or earlier, not weeks away at retention.
    let mut w = World::new();
    let mut session = w.session();
    w.sent(&mut session, FOCUS_ONE_MINUTE);
    w.publish(Priority::Normal);
    w.now = T0 + MINUTE + SECOND;
    let deadline = w.deadline();
    assert!(
        deadline.is_some_and(|at| at <= w.now),
        "held items are overdue at {} but the deadline is {deadline:?}",
        w.now
    );
}

// ---- muted events and the minimum priority ------------------------------------------

#[test]
fn muted_events_are_stored_and_counted_but_never_pushed() {
    let mut w = World::preferring(T0, json!({ "muted_events": ["build.failed"] }));
    // Not even urgent ones, and no count announces them.
    for priority in [Priority::Normal, Priority::Urgent] {
        assert_eq!(outs(&w.publish_event("build.failed", priority)), []);
    }
    assert_eq!((w.stored_seqs(), w.unread()), (vec![1, 2], 2));
    assert!(w.held_seqs().is_empty(), "muted items wait for nothing");
    // Other events are pushed, with the count that includes the muted ones.
    assert_eq!(
        outs(&w.publish_event("task.updated", Priority::Normal)),
        [Out::Pushed(3), Out::Unread(3)]
    );
}

#[test]
fn muted_events_are_not_released_in_a_digest() {
    let mut w = World::preferring(T0, json!({ "muted_events": ["build.failed"] }));
    let mut session = w.session();
    w.sent(&mut session, FOCUS_ONE_MINUTE);
    w.publish_event("build.failed", Priority::Normal);
    w.publish_event("task.updated", Priority::Normal);
    w.publish_event("build.failed", Priority::High);
    let effects = w.sent(&mut session, FOCUS_OFF);
    assert_eq!(outs(&effects[1..]), digest(&[2], 3));
}

#[test]
fn items_below_the_minimum_priority_are_stored_but_not_pushed() {
    let mut w = World::preferring(T0, json!({ "min_priority": "high" }));
    assert_eq!(outs(&w.publish(Priority::Low)), []);
    assert_eq!(outs(&w.publish(Priority::Normal)), []);
    assert_eq!(
        outs(&w.publish(Priority::High)),
        [Out::Pushed(3), Out::Unread(3)]
    );
    assert_eq!(
        outs(&w.publish(Priority::Urgent)),
        [Out::Pushed(4), Out::Unread(4)]
    );
    assert_eq!(w.unread(), 4);
    assert!(w.held_seqs().is_empty());
}

#[test]
fn a_minimum_priority_of_urgent_lets_only_urgent_through_even_in_focus() {
    let mut w = World::preferring(T0, json!({ "min_priority": "urgent" }));
    let mut session = w.session();
    w.sent(&mut session, FOCUS_ONE_MINUTE);
    assert_eq!(outs(&w.publish(Priority::High)), []);
    assert_eq!(
        outs(&w.publish(Priority::Urgent)),
        [Out::Pushed(2), Out::Unread(2)]
    );
    // The high item was never held, so ending focus releases nothing.
    assert_eq!(
        outs(&w.sent(&mut session, FOCUS_OFF)),
        [Out::Prefs(Preferences {
            min_priority: Priority::Urgent,
            ..focused(None)
        })]
    );
}

// ---- quiet hours --------------------------------------------------------------------

const BERLIN: &str = "Europe/Berlin";
const NEW_YORK: &str = "America/New_York";

#[test]
fn quiet_hours_across_midnight_hold_items_until_the_morning() {
    // Winter: Berlin is on CET, UTC+1. 23:30 local on 15 Jan = 22:30 UTC; the quiet hours
    // end at 07:00 local on 16 Jan = 06:00 UTC.
    let late_evening = utc(2026, 1, 15, 22, 30);
    let morning = utc(2026, 1, 16, 6, 0);
    assert_eq!(morning, 1_768_543_200_000);
    let range = quiet("22:00", "07:00", BERLIN);
    assert_eq!(range.ends_after(late_evening), Some(morning));

    let mut w = World::preferring(late_evening, quiet_json("22:00", "07:00", BERLIN));
    assert_eq!(outs(&w.publish(Priority::Normal)), []);
    w.advance(HOUR);
    assert_eq!(outs(&w.publish(Priority::High)), []);
    assert_eq!(
        outs(&w.publish(Priority::Urgent)),
        [Out::Pushed(3), Out::Unread(3)]
    );
    assert_eq!(w.deadline(), Some(morning));

    w.now = morning - 1;
    assert_eq!(outs(&w.alarm()), []);
    w.now = morning;
    assert_eq!(outs(&w.alarm()), digest(&[1, 2], 3));
    assert_eq!(outs(&w.alarm()), []);
    assert_eq!(
        outs(&w.publish(Priority::Normal)),
        [Out::Pushed(4), Out::Unread(4)]
    );
}

#[test]
fn quiet_hours_start_and_end_to_the_minute() {
    let range = quiet("22:00", "07:00", BERLIN);
    // Summer: CEST, UTC+2. 22:00 local on 15 Jul = 20:00 UTC; 07:00 local on 16 Jul =
    // 05:00 UTC.
    let start = utc(2026, 7, 15, 20, 0);
    let end = utc(2026, 7, 16, 5, 0);
    assert_eq!(
        range.ends_after(start - 1),
        None,
        "21:59:59.999 is not quiet"
    );
    assert_eq!(range.ends_after(start), Some(end));
    // 03:00 local, after midnight: the end is the same morning.
    assert_eq!(range.ends_after(utc(2026, 7, 16, 1, 0)), Some(end));
    assert_eq!(
        range.ends_after(end - 1),
        Some(end),
        "06:59:59.999 is quiet"
    );
    assert_eq!(range.ends_after(end), None, "07:00 is not");
    // 12:00 local = 10:00 UTC.
    assert_eq!(range.ends_after(utc(2026, 7, 16, 10, 0)), None);
}

#[test]
fn quiet_hours_do_not_hold_items_at_noon() {
    // 12:00 local in winter = 11:00 UTC.
    let mut w = World::preferring(
        utc(2026, 1, 15, 11, 0),
        quiet_json("22:00", "07:00", BERLIN),
    );
    assert_eq!(
        outs(&w.publish(Priority::Normal)),
        [Out::Pushed(1), Out::Unread(1)]
    );
}

#[test]
fn a_range_within_one_day_and_an_empty_range() {
    // New York in January is EST, UTC-5: 13:00 local = 18:00 UTC, the lunch break ends
    // at 14:00 local = 19:00 UTC.
    let lunch = quiet("12:00", "14:00", NEW_YORK);
    assert_eq!(
        lunch.ends_after(utc(2026, 1, 15, 18, 0)),
        Some(utc(2026, 1, 15, 19, 0))
    );
    assert_eq!(
        lunch.ends_after(utc(2026, 1, 15, 20, 0)),
        None,
        "15:00 local"
    );
    // start == end is never quiet.
    let never = quiet("09:00", "09:00", NEW_YORK);
    assert_eq!(
        never.ends_after(utc(2026, 1, 15, 14, 0)),
        None,
        "09:00 local"
    );
}

/// Quiet ranges whose end falls on a daylight-saving change: (range, now, expected end).
/// Each expected end is derived by hand in the comment above it.
fn dst_cases() -> Vec<(QuietHours, u64, u64)> {
    vec![
        // Berlin, 29 Mar 2026: at 02:00 CET (01:00 UTC) clocks jump to 03:00 CEST.
        // 01:00–02:30; now 01:30 CET = 00:30 UTC. 02:30 does not exist that night: the end
        // is the first minute that does, 03:00 CEST = 01:00 UTC.
        (
            quiet("01:00", "02:30", BERLIN),
            utc(2026, 3, 29, 0, 30),
            utc(2026, 3, 29, 1, 0),
        ),
        // 22:00–07:00; now 23:30 CET on 28 Mar = 22:30 UTC. 07:00 CEST = 05:00 UTC,
        // only 6.5 real hours later.
        (
            quiet("22:00", "07:00", BERLIN),
            utc(2026, 3, 28, 22, 30),
            utc(2026, 3, 29, 5, 0),
        ),
        // Berlin, 25 Oct 2026: at 03:00 CEST (01:00 UTC) clocks go back to 02:00 CET.
        // 01:00–02:30; now 01:30 CEST = 23:30 UTC on 24 Oct. 02:30 happens twice; the
        // earlier is 02:30 CEST = 00:30 UTC.
        (
            quiet("01:00", "02:30", BERLIN),
            utc(2026, 10, 24, 23, 30),
            utc(2026, 10, 25, 0, 30),
        ),
        // 22:00–07:00; now 23:30 CEST on 24 Oct = 21:30 UTC. 07:00 CET = 06:00 UTC.
        (
            quiet("22:00", "07:00", BERLIN),
            utc(2026, 10, 24, 21, 30),
            utc(2026, 10, 25, 6, 0),
        ),
        // New York, 8 Mar 2026: at 02:00 EST (07:00 UTC) clocks jump to 03:00 EDT.
        // 01:00–02:30; now 01:30 EST = 06:30 UTC. 02:30 does not exist: 03:00 EDT =
        // 07:00 UTC.
        (
            quiet("01:00", "02:30", NEW_YORK),
            utc(2026, 3, 8, 6, 30),
            utc(2026, 3, 8, 7, 0),
        ),
        // 22:00–07:00; now 23:30 EST on 7 Mar = 04:30 UTC on 8 Mar. 07:00 EDT = 11:00 UTC.
        (
            quiet("22:00", "07:00", NEW_YORK),
            utc(2026, 3, 8, 4, 30),
            utc(2026, 3, 8, 11, 0),
        ),
        // New York, 1 Nov 2026: at 02:00 EDT (06:00 UTC) clocks go back to 01:00 EST.
        // 00:00–01:30; now 00:30 EDT = 04:30 UTC. 01:30 happens twice; the earlier is
        // 01:30 EDT = 05:30 UTC.
        (
            quiet("00:00", "01:30", NEW_YORK),
            utc(2026, 11, 1, 4, 30),
            utc(2026, 11, 1, 5, 30),
        ),
        // 22:00–07:00; now 23:30 EDT on 31 Oct = 03:30 UTC on 1 Nov. 07:00 EST = 12:00 UTC.
        (
            quiet("22:00", "07:00", NEW_YORK),
            utc(2026, 11, 1, 3, 30),
            utc(2026, 11, 1, 12, 0),
        ),
    ]
}

#[test]
fn quiet_hours_end_exactly_across_daylight_saving_changes() {
    // One end checked as a literal, so that `utc` itself is not taken on trust:
    // 2026-03-29T01:00:00Z.
    assert_eq!(utc(2026, 3, 29, 1, 0), 1_774_746_000_000);
    for (range, now, end) in dst_cases() {
        assert_eq!(range.ends_after(now), Some(end), "{range:?} at {now}");
        // Just before the end it is still quiet, and at the end it is over.
        assert_eq!(
            range.ends_after(end - 1),
            Some(end),
            "{range:?} just before"
        );
        assert_eq!(range.ends_after(end), None, "{range:?} at the end");
    }
}

#[test]
fn the_hub_releases_quiet_hours_holds_at_the_dst_adjusted_end() {
    for (range, now, end) in dst_cases() {
        let body = quiet_json(&range.start, &range.end, &range.time_zone);
        let mut w = World::preferring(now, body);
        assert_eq!(outs(&w.publish(Priority::Normal)), [], "{range:?}");
        assert_eq!(w.deadline(), Some(end), "{range:?}");
        w.now = end;
        assert_eq!(outs(&w.alarm()), digest(&[1], 1), "{range:?}");
    }
}

#[test]
fn the_end_of_quiet_hours_is_never_in_the_past() {
    // In the hour that repeats when clocks go back, a wall-clock time inside the range can
    // come round a second time after the earlier instant of the end has passed. Whatever
    // the answer (quiet until the second end, or not quiet), it must not be an end that is
    // already over: the hub would hold items with an alarm that is always due and never
    // releases them.
    let cases = [
        // New York, 1 Nov 2026, 00:00–01:30. 06:00 UTC = 01:00 EST, the second 01:00; the
        // earlier 01:30 (EDT, 05:30 UTC) is past, the later one is 01:30 EST = 06:30 UTC.
        (quiet("00:00", "01:30", NEW_YORK), utc(2026, 11, 1, 6, 0)),
        // Berlin, 25 Oct 2026, 00:00–02:30. 01:10 UTC = 02:10 CET, the second 02:10; the
        // earlier 02:30 (CEST, 00:30 UTC) is past, the later one is 02:30 CET = 01:30 UTC.
        (quiet("00:00", "02:30", BERLIN), utc(2026, 10, 25, 1, 10)),
    ];
    for (range, now) in cases {
        let end = range.ends_after(now);
        assert!(
            end.is_none_or(|end| end > now),
            "{range:?} at {now}: quiet until {end:?}, which is already over"
        );
    }
}

#[test]
fn an_alarm_in_the_repeated_hour_leaves_nothing_due() {
    // New York, 1 Nov 2026, quiet 00:00–01:30. At 06:00 UTC (01:00 EST, the second 01:00)
    // an item arrives and is held. Once the alarm has run at `now`, whatever was due by
    // `now` has been dealt with: the next deadline must lie ahead, or the alarm fires
    // again at once, releases nothing, and so on until 06:30 UTC.
    let now = utc(2026, 11, 1, 6, 0);
    let mut w = World::preferring(now, quiet_json("00:00", "01:30", NEW_YORK));
    w.publish(Priority::Normal);
    w.alarm();
    let deadline = w.deadline();
    assert!(
        deadline.is_some_and(|at| at > now),
        "after the alarm at {now} the next deadline is {deadline:?}"
    );
}

#[test]
fn focus_and_quiet_hours_together_hold_until_both_are_over() {
    // Quiet hours end at 07:00 CET = 06:00 UTC; focus runs an hour longer.
    let morning = utc(2026, 1, 16, 6, 0);
    let mut w = World::preferring(
        utc(2026, 1, 15, 22, 30),
        quiet_json("22:00", "07:00", BERLIN),
    );
    let mut session = w.session();
    w.now = morning - HOUR;
    w.send(
        &mut session,
        r#"{"type":"focus","on":true,"duration_ms":7200000}"#,
    );
    w.publish(Priority::Normal);
    assert_eq!(w.deadline(), Some(morning + HOUR));
    w.now = morning;
    assert_eq!(outs(&w.alarm()), [], "quiet hours are over, focus is not");
    w.now = morning + HOUR;
    assert_eq!(outs(&w.alarm()), digest(&[1], 1));
}

// ---- the alarm deadline -------------------------------------------------------------

/// A socket last seen at `last_seen` whose token runs out at `token_expires_at`.
fn socket(last_seen: u64, token_expires_at: Option<u64>) -> SocketView {
    SocketView {
        last_seen,
        token_expires_at,
    }
}

/// A socket that is never due before `far` (seen at `far`, token valid for longer).
fn quiet_socket(far: u64) -> SocketView {
    socket(far, Some(far + DAY))
}

#[test]
fn an_idle_user_needs_no_alarm() {
    let mut w = World::new();
    assert_eq!(w.deadline(), None, "empty inbox, no sockets, no holds");
    // Preferences alone are nothing to wait for, not even a focus end with nothing held.
    let mut session = w.session();
    w.sent(&mut session, FOCUS_ONE_MINUTE);
    w.prefer(json!({ "batch_window_ms": 1_000, "focus_until": T0 + MINUTE }));
    assert_eq!(w.deadline(), None);
    assert_eq!(outs(&w.alarm()), []);
}

#[test]
fn retention_of_the_oldest_item_can_be_the_deadline() {
    let mut w = World::new();
    w.publish(Priority::Normal);
    w.advance(HOUR);
    w.publish(Priority::Normal);
    let max_age = w.limits.inbox_max_age_ms;
    assert_eq!(w.deadline(), Some(T0 + max_age));
    // Sockets due later do not change it.
    let later = quiet_socket(T0 + max_age);
    assert_eq!(w.deadline_with(&[later]), Some(T0 + max_age));
}

#[test]
fn a_ttl_expiry_can_be_the_deadline() {
    let mut w = World::new();
    w.publish(Priority::Normal);
    let short_lived = Draft {
        ttl_s: Some(90),
        ..w.draft()
    };
    w.publish_one(short_lived);
    assert_eq!(w.deadline(), Some(T0 + 90 * SECOND));
}

#[test]
fn an_idempotency_key_expiry_can_be_the_deadline() {
    let mut w = World::new();
    let keyed = Draft {
        idempotency_key: Some("k1".into()),
        ..w.draft()
    };
    w.publish_one(keyed);
    assert_eq!(w.deadline(), Some(T0 + w.limits.idempotency_window_ms));
}

#[test]
fn the_window_close_can_be_the_deadline() {
    let mut w = World::preferring(T0, json!({ "batch_window_ms": 5_000 }));
    let keyed = Draft {
        idempotency_key: Some("k1".into()),
        ttl_s: Some(60),
        ..w.draft()
    };
    w.publish_one(keyed);
    assert_eq!(w.deadline(), Some(T0 + 5_000));
    assert_eq!(
        w.deadline_with(&[quiet_socket(T0 + HOUR)]),
        Some(T0 + 5_000)
    );
}

#[test]
fn the_attention_end_can_be_the_deadline_while_something_is_held() {
    let mut w = World::new();
    let mut session = w.session();
    w.sent(&mut session, FOCUS_ONE_MINUTE);
    let keyed = Draft {
        idempotency_key: Some("k1".into()),
        ttl_s: Some(120),
        ..w.draft()
    };
    w.publish_one(keyed);
    assert_eq!(w.deadline(), Some(T0 + MINUTE));
    assert_eq!(
        w.deadline_with(&[quiet_socket(T0 + HOUR)]),
        Some(T0 + MINUTE)
    );
    // Once the digest is out, the focus end is nothing to wait for: the TTL is next.
    w.now = T0 + MINUTE;
    assert_eq!(outs(&w.alarm()), digest(&[1], 1));
    assert_eq!(w.deadline(), Some(T0 + 120 * SECOND));
}

#[test]
fn a_silent_socket_can_be_the_deadline() {
    let mut w = World::new();
    w.publish(Priority::Normal);
    let idle = w.limits.idle_timeout_ms;
    assert_eq!(idle, 75 * SECOND);
    let seen = socket(T0 + 10, None);
    assert_eq!(w.deadline_with(&[seen]), Some(T0 + 10 + idle));
    // Of several sockets, the one silent longest.
    let sockets = [quiet_socket(T0 + HOUR), socket(T0 + 5, None), seen];
    assert_eq!(w.deadline_with(&sockets), Some(T0 + 5 + idle));
}

#[test]
fn a_token_expiry_can_be_the_deadline() {
    let mut w = World::new();
    w.publish(Priority::Normal);
    let expiring = socket(T0, Some(T0 + 30 * SECOND));
    assert_eq!(w.deadline_with(&[expiring]), Some(T0 + 30 * SECOND));
    let sockets = [quiet_socket(T0 + HOUR), expiring];
    assert_eq!(w.deadline_with(&sockets), Some(T0 + 30 * SECOND));
}

#[test]
fn open_sockets_keep_an_alarm_for_an_otherwise_idle_user() {
    let mut w = World::new();
    let session = w.session();
    let view = session.view(None);
    assert_eq!(
        w.deadline_with(&[view]),
        Some(T0 + w.limits.idle_timeout_ms)
    );
}

// ---- liveness -----------------------------------------------------------------------

fn liveness(socket: &SocketView, now: u64) -> Option<(CloseCode, &'static str)> {
    let limits = Limits::default();
    let mut inbox = MemoryInbox::default();
    let hub = Hub {
        inbox: &mut inbox,
        limits: &limits,
    };
    hub.liveness(socket, now)
}

#[test]
fn a_socket_silent_for_the_idle_timeout_is_going_away() {
    let seen = socket(T0, None);
    assert_eq!(liveness(&seen, T0 + 74_999), None);
    assert_eq!(
        liveness(&seen, T0 + 75_000),
        Some((CloseCode::GoingAway, "idle"))
    );
    assert_eq!(CloseCode::GoingAway.code(), 1001);
}

#[test]
fn a_socket_whose_token_ran_out_is_closed_with_4001() {
    let expiring = socket(T0, Some(T0 + 10 * SECOND));
    assert_eq!(liveness(&expiring, T0 + 10 * SECOND - 1), None);
    assert_eq!(
        liveness(&expiring, T0 + 10 * SECOND),
        Some((CloseCode::TokenExpired, "token expired"))
    );
    assert_eq!(CloseCode::TokenExpired.code(), 4001);
    // Silent and expired: the token wins, so the client knows to fetch a new one.
    let both = socket(T0, Some(T0 + 80 * SECOND));
    assert_eq!(
        liveness(&both, T0 + 90 * SECOND).map(|(code, _)| code),
        Some(CloseCode::TokenExpired)
    );
}

#[test]
fn a_pinging_socket_stays_open() {
    let mut w = World::new();
    let session = w.session();
    // Connected at T0 and never sent a frame, but the runtime answered a ping 20 s ago.
    let now = T0 + 10 * MINUTE;
    let view = session.view(Some(now - 20 * SECOND));
    assert_eq!(liveness(&view, now), None);
    // Without the ping it would have been closed long ago.
    let unpinged = session.view(None);
    assert_eq!(
        liveness(&unpinged, now).map(|(code, _)| code),
        Some(CloseCode::GoingAway)
    );
}

#[test]
fn a_socket_is_seen_at_the_latest_of_connect_frame_and_ping() {
    let mut w = World::new();
    let mut session = w.session();
    assert_eq!((session.connected_at, session.last_frame_at), (T0, T0));
    assert_eq!(session.view(None).last_seen, T0);
    assert_eq!(session.view(Some(T0 - 5)).last_seen, T0, "connect");

    // Any client frame counts, even one that is refused.
    w.advance(7);
    w.send(&mut session, "garbage");
    assert_eq!(session.last_frame_at, T0 + 7);
    assert_eq!(session.view(Some(T0 + 3)).last_seen, T0 + 7, "frame");
    assert_eq!(session.view(Some(T0 + 9)).last_seen, T0 + 9, "ping");
}

#[test]
fn a_session_from_before_liveness_is_seen_from_its_connect() {
    // Attachments written before `last_frame_at` and `token_expires_at` existed must still
    // load after hibernation, and count from the connect time.
    let mut w = World::new();
    let session = w.session();
    let mut json = serde_json::to_value(&session).unwrap();
    let fields = json.as_object_mut().unwrap();
    fields.remove("last_frame_at");
    fields.remove("token_expires_at");
    let old: Session = serde_json::from_value(json).unwrap();
    assert_eq!((old.last_frame_at, old.token_expires_at), (0, None));
    assert_eq!(old.view(None), socket(T0, None));
}

#[test]
fn the_token_expiry_is_exp_plus_the_leeway_in_ms() {
    let mut w = World::new();
    let exp_s = T0 / 1_000 + 3_600; // an hour from now, in seconds
    let session = w.admit(Arrival {
        token_exp: Some(exp_s),
        ..arrival("ses_1")
    });
    // (exp + 60 s) * 1000.
    assert_eq!(session.token_expires_at, Some((exp_s + 60) * 1_000));
    assert_eq!(session.token_expires_at, Some(T0 + HOUR + MINUTE));
    // A token without exp never expires the socket.
    assert_eq!(w.session().token_expires_at, None);

    // The alarm is due at that moment, and at that moment the socket is closed.
    let pinging = session.view(Some(T0 + HOUR + MINUTE - SECOND));
    let due = w.deadline_with(&[pinging]).unwrap();
    assert_eq!(due, T0 + HOUR + MINUTE);
    assert_eq!(
        liveness(&pinging, due).map(|(code, _)| code),
        Some(CloseCode::TokenExpired)
    );
}

#[test]
fn a_socket_is_closed_at_the_very_deadline_it_set() {
    let mut w = World::new();
    let session = w.session();
    let view = session.view(None);
    let due = w.deadline_with(&[view]).unwrap();
    assert_eq!(liveness(&view, due - 1), None);
    assert_eq!(
        liveness(&view, due).map(|(code, _)| code),
        Some(CloseCode::GoingAway)
    );
}
