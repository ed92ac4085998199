//! Room fan-out: what a busy room packs together, what stays apart and in order, what a
//! joining socket still needs after its first frames, and when a publish waits to gather.

mod common;

use common::{notification as stored, T0};
use herald::fanout::{coalesce, Outgoing, Pace, GATHER_MS, SEND_COST_US, SLACK_MS};
use herald::frame::{BatchReason, PresenceAction, ServerFrame, MAX_BATCH_BYTES};
use herald::model::{Notification, Seq};

/// A room message `msg_{seq}`.
fn item(seq: Seq) -> Notification {
    Notification {
        id: format!("msg_{seq}"),
        room: Some("project:42".into()),
        source: None,
        ..stored(seq)
    }
}

fn notification(seq: Seq) -> Outgoing {
    Outgoing::to_all(ServerFrame::Notification(item(seq)))
}

fn typing(from: &str) -> Outgoing {
    Outgoing::to_others(
        ServerFrame::Typing {
            user: "alice".into(),
        },
        from,
    )
}

/// Each frame as a short label: `n3`, `burst[1,2]`, `message4`, `typing`, `joined`.
fn labels(frames: &[Outgoing]) -> Vec<String> {
    frames
        .iter()
        .map(|out| match &out.frame {
            ServerFrame::Notification(n) => format!("n{}", n.seq),
            ServerFrame::Message(n) => format!("message{}", n.seq),
            ServerFrame::Batch { reason, items } => {
                let seqs: Vec<String> = items.iter().map(|n| n.seq.to_string()).collect();
                format!("{reason:?}[{}]", seqs.join(",")).to_lowercase()
            }
            ServerFrame::Typing { .. } => "typing".into(),
            ServerFrame::Presence { .. } => "presence".into(),
            other => panic!("unexpected frame {other:?}"),
        })
        .collect()
}

#[test]
fn a_run_of_notifications_becomes_one_burst_batch_in_order() {
    let packed = coalesce((1..=5).map(notification).collect());
    assert_eq!(labels(&packed), ["burst[1,2,3,4,5]"]);
    assert_eq!(packed[0].except, None);
    let text = packed[0].frame.to_json();
    assert!(text.starts_with(r#"{"type":"batch","reason":"burst","items":[{"id":"msg_1""#));
}

#[test]
fn a_lone_notification_stays_a_notification() {
    assert_eq!(labels(&coalesce(vec![notification(7)])), ["n7"]);
    assert!(coalesce(Vec::new()).is_empty());
}

#[test]
fn other_frames_keep_their_place_and_split_runs() {
    let message = Outgoing::to_all(ServerFrame::Message(item(3)));
    let joined = Outgoing::to_all(ServerFrame::Presence {
        action: PresenceAction::Joined,
        user: Some("bob".into()),
        users: None,
    });
    let frames = vec![
        notification(1),
        notification(2),
        message,
        notification(4),
        typing("ses_a"),
        notification(5),
        notification(6),
        joined,
        notification(7),
    ];
    assert_eq!(
        labels(&coalesce(frames)),
        [
            "burst[1,2]",
            "message3",
            "n4",
            "typing",
            "burst[5,6]",
            "presence",
            "n7"
        ]
    );
}

#[test]
fn a_frame_that_skips_a_socket_is_never_packed_with_frames_for_everyone() {
    let mut for_others = notification(2);
    for_others.except = Some("ses_a".into());
    let packed = coalesce(vec![notification(1), for_others, notification(3)]);
    assert_eq!(labels(&packed), ["n1", "n2", "n3"]);
    assert_eq!(packed[1].except.as_deref(), Some("ses_a"));
}

fn announce(action: PresenceAction, user: &str) -> Outgoing {
    Outgoing::to_others(
        ServerFrame::Presence {
            action,
            user: Some(user.into()),
            users: None,
        },
        &format!("ses_{user}"),
    )
}

#[test]
fn joins_announced_together_become_one_presence_frame_for_everyone() {
    let packed = coalesce(vec![
        announce(PresenceAction::Joined, "ann"),
        announce(PresenceAction::Joined, "bob"),
        announce(PresenceAction::Joined, "cat"),
        announce(PresenceAction::Left, "dan"),
        announce(PresenceAction::Left, "eve"),
        typing("ses_x"),
        announce(PresenceAction::Joined, "fay"),
    ]);
    assert_eq!(packed.len(), 4);
    assert_eq!(
        packed[0],
        Outgoing::to_all(ServerFrame::Presence {
            action: PresenceAction::Joined,
            user: None,
            users: Some(vec!["ann".into(), "bob".into(), "cat".into()]),
        })
    );
    assert_eq!(
        packed[1].frame.to_json(),
        r#"{"type":"presence","action":"left","users":["dan","eve"]}"#
    );
    assert_eq!(packed[2], typing("ses_x"));
    assert_eq!(
        packed[3],
        announce(PresenceAction::Joined, "fay"),
        "a lone announcement still skips its own socket"
    );
}

#[test]
fn a_joining_socket_gets_only_what_its_first_frames_did_not_cover() {
    let latest = 4;
    assert_eq!(notification(4).after(latest), None, "already in its replay");
    assert_eq!(notification(5).after(latest), Some(notification(5)));
    let message = Outgoing::to_all(ServerFrame::Message(item(3)));
    assert_eq!(message.after(latest), None);

    let burst = coalesce((2..=7).map(notification).collect());
    let rest = burst[0].after(latest).expect("items 5 to 7 are new");
    assert_eq!(labels(&[rest]), ["burst[5,6,7]"]);
    assert_eq!(burst[0].after(7), None, "every item covered");

    // Frames outside the history pass unchanged.
    assert_eq!(typing("ses_a").after(latest), Some(typing("ses_a")));
}

#[test]
fn outgoing_frames_travel_to_shards_as_json_and_back() {
    let frames = vec![notification(1), typing("ses_a")];
    let text = serde_json::to_string(&frames).unwrap();
    let back: Vec<Outgoing> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, frames);
    assert!(!text.contains(r#""except":null"#));
}

#[test]
fn a_publish_waits_to_gather_only_while_the_last_fan_out_may_still_run() {
    let mut pace = Pace::default();
    assert_eq!(pace.wait_ms(T0), 0, "a quiet room sends at once");
    // 1,000 sockets: about 25 ms of sending, plus the slack.
    pace.sent(T0, 1_000);
    let busy_for = 1_000 * SEND_COST_US / 1_000 + SLACK_MS;
    assert_eq!(pace.wait_ms(T0), GATHER_MS);
    assert_eq!(
        pace.wait_ms(T0 + busy_for - 1),
        GATHER_MS,
        "queued behind it"
    );
    assert_eq!(pace.wait_ms(T0 + busy_for), 0, "arrived after it ended");
}

#[test]
fn a_small_room_is_busy_only_briefly() {
    let mut pace = Pace::default();
    pace.sent(T0, 100);
    assert_eq!(pace.wait_ms(T0 + 4), GATHER_MS);
    assert_eq!(pace.wait_ms(T0 + 5), 0, "3 ms of sending and 2 of slack");
    // A publish every 30 ms to 1,000 sockets never waits.
    pace.sent(T0, 1_000);
    assert_eq!(pace.wait_ms(T0 + 30), 0);
}

#[test]
fn burst_is_a_batch_reason_on_the_wire() {
    assert_eq!(
        serde_json::to_string(&BatchReason::Burst).unwrap(),
        r#""burst""#
    );
}

/// A room message of about `bytes` of content.
fn sized(seq: Seq, bytes: usize) -> Notification {
    Notification {
        data: Some(serde_json::json!("x".repeat(bytes))),
        ..item(seq)
    }
}

#[test]
fn batches_stay_under_their_byte_bound_and_keep_order() {
    let items: Vec<Notification> = (1..=40).map(|seq| sized(seq, 16 * 1024)).collect();
    let frames = ServerFrame::batches(BatchReason::Replay, items);
    let mut seqs = Vec::new();
    for frame in &frames {
        let ServerFrame::Batch { items, .. } = frame else {
            panic!("not a batch: {frame:?}");
        };
        let bytes: usize = items.iter().map(Notification::stored_size).sum();
        assert!(bytes <= MAX_BATCH_BYTES, "{bytes}");
        seqs.extend(items.iter().map(|n| n.seq));
    }
    assert!(
        frames.len() >= 3,
        "40 items of 16 KiB need at least three frames"
    );
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    // An item over the bound still travels, alone.
    let big = ServerFrame::batches(
        BatchReason::Replay,
        vec![sized(1, MAX_BATCH_BYTES + 1), item(2)],
    );
    assert_eq!(big.len(), 2);
}

#[test]
fn a_burst_stops_growing_at_the_byte_bound() {
    let queued = (1..=40)
        .map(|seq| Outgoing::to_all(ServerFrame::Notification(sized(seq, 16 * 1024))))
        .collect();
    let out = coalesce(queued);
    assert!(out.len() >= 3, "{} frames", out.len());
    for o in &out {
        if let ServerFrame::Batch { items, .. } = &o.frame {
            assert!(items.iter().map(Notification::stored_size).sum::<usize>() <= MAX_BATCH_BYTES);
        }
    }
}
