//! The counters behind `GET /v1/stats`: the per-object report throttle, merging reports
//! without double counting, what counts as delivered and dropped, and who may read them.

mod common;

use common::{notification, World, T0};
use herald::access::{self, Credential, Keys, Right};
use herald::auth::{bearer, AuthError, Claims};
use herald::config::Limits;
use herald::error::ApiError;
use herald::frame::{BatchReason, ReadRequest, ServerFrame};
use herald::hub::Effect;
use herald::model::Draft;
use herald::stats::{items, merge, Counters, Kind, Report, Reporter, Sends, Summary, Tally, Tick};

const INTERVAL: u64 = 5_000;

fn report(object: &str, at: u64, counters: Counters) -> Report {
    Report {
        kind: Kind::UserHub,
        object: object.into(),
        at,
        counters,
    }
}

fn counters(connections: u64, stored: u64, delivered: u64, dropped: u64) -> Counters {
    Counters {
        connections,
        stored,
        delivered,
        dropped,
    }
}

// ---- the throttle ---------------------------------------------------------------------

#[test]
fn nothing_changed_nothing_is_sent_and_no_alarm_is_wanted() {
    let mut reporter = Reporter::new(INTERVAL);
    assert_eq!(reporter.tick(T0), Tick::Idle);
    assert_eq!(reporter.deadline(), None);
}

#[test]
fn the_first_change_after_a_wake_up_reports_at_once() {
    let mut reporter = Reporter::new(INTERVAL);
    reporter.touch();
    assert_eq!(
        reporter.deadline(),
        None,
        "the tick at the end of this event sends"
    );
    assert_eq!(reporter.tick(T0), Tick::Report);
    assert_eq!(reporter.tick(T0), Tick::Idle, "sent: clean again");
}

#[test]
fn a_woken_object_keeps_the_interval_of_its_last_report() {
    let mut reporter = Reporter::new(INTERVAL);
    reporter.resume(Some(T0));
    reporter.touch();
    assert_eq!(
        reporter.tick(T0 + 1_000),
        Tick::WaitUntil(T0 + INTERVAL),
        "reported before it slept: waking is no reason to report again"
    );
    assert_eq!(reporter.tick(T0 + INTERVAL), Tick::Report);

    let mut never = Reporter::new(INTERVAL);
    never.resume(None);
    never.touch();
    assert_eq!(never.tick(T0), Tick::Report, "never reported: at once");
    never.resume(Some(T0 - INTERVAL));
    never.touch();
    assert_eq!(
        never.tick(T0 + 1),
        Tick::WaitUntil(T0 + INTERVAL),
        "its own report counts, not an older stored one"
    );
}

#[test]
fn changes_within_the_interval_wait_for_one_report_at_its_end() {
    let mut reporter = Reporter::new(INTERVAL);
    reporter.touch();
    assert_eq!(reporter.tick(T0), Tick::Report);
    for step in 1..=10 {
        reporter.touch();
        assert_eq!(
            reporter.tick(T0 + step * 100),
            Tick::WaitUntil(T0 + INTERVAL)
        );
        assert_eq!(reporter.deadline(), Some(T0 + INTERVAL));
    }
    // The alarm at the deadline sends the one report that covers all ten.
    assert_eq!(reporter.tick(T0 + INTERVAL), Tick::Report);
    assert_eq!(reporter.deadline(), None, "no alarm left for stats");
    assert_eq!(reporter.tick(T0 + INTERVAL + 1), Tick::Idle);
}

#[test]
fn at_most_one_report_per_interval_however_busy() {
    let mut reporter = Reporter::new(INTERVAL);
    let mut sent = 0;
    // A change every millisecond for a minute, ticked after each.
    for ms in 0..60_000 {
        reporter.touch();
        if reporter.tick(T0 + ms) == Tick::Report {
            sent += 1;
        }
    }
    assert_eq!(sent, 12);
}

// ---- merging reports ------------------------------------------------------------------

#[test]
fn a_repeated_report_changes_nothing() {
    let first = report("a", T0, counters(2, 10, 30, 1));
    let once = merge(None, first.clone());
    let twice = merge(Some(&once), first);
    assert_eq!(once, twice);
}

#[test]
fn an_older_report_arriving_late_lowers_nothing() {
    let newer = merge(None, report("a", T0 + 5_000, counters(0, 12, 40, 2)));
    let merged = merge(Some(&newer), report("a", T0, counters(3, 10, 30, 1)));
    assert_eq!(merged.counters, counters(0, 12, 40, 2));
    assert_eq!(merged.at, T0 + 5_000);
}

#[test]
fn connections_come_from_the_newest_report_even_when_they_fall() {
    let kept = merge(None, report("a", T0, counters(5, 1, 1, 0)));
    let merged = merge(Some(&kept), report("a", T0 + 1, counters(1, 1, 1, 0)));
    assert_eq!(merged.counters.connections, 1);
}

#[test]
fn a_wake_up_that_reports_less_than_was_kept_cannot_undo_counts() {
    // An object that lost counts it had not yet written (a crash) reports lower values:
    // the stats keep the higher ones, never a sum of the two.
    let kept = merge(None, report("a", T0, counters(1, 10, 50, 0)));
    let merged = merge(
        Some(&kept),
        report("a", T0 + 60_000, counters(1, 11, 45, 0)),
    );
    assert_eq!(merged.counters, counters(1, 11, 50, 0));
}

#[test]
fn the_summary_has_both_kinds_even_before_any_report() {
    let summary = Summary {
        as_of: T0,
        ..Summary::default()
    };
    let v = serde_json::to_value(summary).unwrap();
    for kind in ["user_hubs", "rooms"] {
        for field in ["objects", "connections", "stored", "delivered", "dropped"] {
            assert_eq!(v[kind][field], 0, "{kind}.{field}");
        }
    }
    assert_eq!(v["as_of"], T0);
}

#[test]
fn totals_are_kept_per_kind() {
    let mut summary = Summary::default();
    summary.totals_mut(Kind::Room).connections += 3;
    assert_eq!(summary.rooms.connections, 3);
    assert_eq!(summary.user_hubs.connections, 0);
    assert_eq!(Kind::parse(Kind::Room.as_str()), Some(Kind::Room));
    assert_eq!(Kind::parse(Kind::UserHub.as_str()), Some(Kind::UserHub));
    assert_eq!(Kind::parse("shard"), None);
}

// ---- what counts ----------------------------------------------------------------------

#[test]
fn a_frame_counts_the_notifications_it_carries_per_socket() {
    let n = notification(1);
    assert_eq!(items(&ServerFrame::Notification(n.clone())), 1);
    assert_eq!(items(&ServerFrame::Message(n.clone())), 1);
    let batch = ServerFrame::Batch {
        reason: BatchReason::Replay,
        items: vec![n.clone(), n.clone(), n],
    };
    assert_eq!(items(&batch), 3);
    assert_eq!(items(&ServerFrame::UnreadCount { unread_count: 1 }), 0);
    assert_eq!(items(&ServerFrame::Pong), 0);

    let mut tally = Tally::default();
    tally.sent(items(&batch), Sends { sent: 2, failed: 1 });
    assert_eq!(
        tally,
        Tally {
            delivered: 6,
            dropped: 3
        }
    );
    tally.sent(1, Sends::one(true));
    tally.sent(1, Sends::one(false));
    assert_eq!(
        tally,
        Tally {
            delivered: 7,
            dropped: 4
        }
    );
}

/// Retention's drops, as the core reports them: unread items the count bound cut, not
/// read ones.
#[test]
fn retention_drops_count_unread_items_cut_not_read_or_expired_ones() {
    let mut w = World::with_limits(Limits {
        inbox_max_items: 3,
        ..Limits::default()
    });
    let short_lived = Draft {
        ttl_s: Some(1),
        ..w.draft()
    };
    w.publish_one(short_lived);
    for _ in 0..3 {
        let d = w.draft();
        w.publish_one(d);
    }
    assert_eq!(w.stored_seqs(), vec![2, 3, 4], "n1 went to make room");
    // n2 is read; n3 stays unread.
    let now = w.now;
    w.hub()
        .read(
            &ReadRequest {
                ids: Some(vec!["n2".into()]),
                up_to_seq: None,
                all: None,
            },
            now,
        )
        .unwrap();
    // Once n1's TTL has run out, a publish of two cuts n2 (read) and n3 (unread).
    w.advance(1_000);
    let now = w.now;
    let drafts = vec![w.draft(), w.draft()];
    let (_, effects) = w.hub().publish(drafts, now).unwrap();
    assert_eq!(w.stored_seqs(), vec![4, 5, 6], "n2 and n3 were cut");
    assert_eq!(dropped(&effects), 1, "only the unread n3 was dropped");
}

#[test]
fn publishes_that_cut_nothing_and_repeated_keys_drop_nothing() {
    let mut w = World::with_limits(Limits {
        inbox_max_items: 1,
        ..Limits::default()
    });
    let mut d = w.draft();
    d.idempotency_key = Some("k".into());
    let (_, effects) = w.publish_one(d.clone());
    assert_eq!(dropped(&effects), 0);
    let (receipt, effects) = w.publish_one(d);
    assert!(receipt.duplicate);
    assert_eq!(dropped(&effects), 0);
}

#[test]
fn the_age_bound_at_the_alarm_drops_unread_items_too() {
    let mut w = World::with_limits(Limits {
        inbox_max_age_ms: 10_000,
        ..Limits::default()
    });
    for _ in 0..2 {
        let d = w.draft();
        w.publish_one(d);
    }
    w.advance(10_000);
    let now = w.now;
    let effects = w.hub().alarm(now).unwrap();
    assert_eq!(w.stored_seqs(), Vec::<u64>::new());
    assert_eq!(dropped(&effects), 2);
}

/// What the effects of one event count as `dropped`.
fn dropped(effects: &[Effect]) -> u64 {
    effects
        .iter()
        .map(|e| match e {
            Effect::Dropped(count) => *count,
            _ => 0,
        })
        .sum()
}

// ---- who may read them ----------------------------------------------------------------

const ADMIN: &str = "admin-key-0123456789";
const PUBLISH: &str = "publish-key";

/// The stats route's check of the credential in `authorization`, as the Worker makes it.
fn admin_check(authorization: Option<&str>, admin_key: &str) -> Result<Credential, ApiError> {
    let keys = Keys {
        publish_key: PUBLISH,
        admin_key,
    };
    // A valid user token: a real credential, just not this one.
    let verify = |_: &str| {
        Ok(Claims {
            sub: "mallory".into(),
            rooms: vec![],
            scope: vec!["publish".into()],
            exp: u64::MAX,
        })
    };
    access::check(bearer(authorization), keys, Right::Stats, None, verify)
}

#[test]
fn without_an_admin_key_the_route_is_off() {
    for key in ["", "  "] {
        let err = admin_check(Some(&format!("Bearer {ADMIN}")), key).unwrap_err();
        assert_eq!((err.status, err.code), (404, "not_found"));
        assert!(err.message.contains("ADMIN_KEY"));
    }
}

#[test]
fn only_the_admin_key_opens_it() {
    assert_eq!(
        admin_check(Some(&format!("Bearer {ADMIN}")), ADMIN),
        Ok(Credential::AdminKey)
    );
    assert_eq!(
        admin_check(Some(&format!("bearer  {ADMIN} ")), ADMIN),
        Ok(Credential::AdminKey)
    );
    for wrong in ["admin-key-012345678", "admin-key-01234567890", "x"] {
        let err = admin_check(Some(&format!("Bearer {wrong}")), ADMIN).unwrap_err();
        assert_eq!((err.status, err.code), (401, "invalid_key"), "{wrong:?}");
    }
}

#[test]
fn missing_wrong_and_foreign_credentials_get_distinct_answers() {
    let status = |authorization: Option<&str>| {
        let err = admin_check(authorization, ADMIN).unwrap_err();
        (err.status, err.code)
    };
    assert_eq!(status(None), (401, "missing_token"));
    assert_eq!(
        status(Some(ADMIN)),
        (401, "missing_token"),
        "a key without the Bearer scheme"
    );
    assert_eq!(status(Some("Bearer nope")), (401, "invalid_key"));
    // The producer key, or a valid user token with every scope, is a real credential,
    // just not this one.
    assert_eq!(status(Some("Bearer publish-key")), (403, "forbidden"));
    assert_eq!(status(Some("Bearer a.b.c")), (403, "forbidden"));
}

#[test]
fn the_admin_key_is_checked_before_any_other_credential() {
    let keys = Keys {
        publish_key: PUBLISH,
        admin_key: ADMIN,
    };
    let mut asked = false;
    let result = access::check(Some(ADMIN), keys, Right::Stats, None, |_| {
        asked = true;
        Err::<Claims, ApiError>(AuthError::Malformed.into())
    });
    assert_eq!(result, Ok(Credential::AdminKey));
    assert!(!asked, "no token verification for the right key");
}
