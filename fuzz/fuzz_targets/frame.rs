//! One client WebSocket frame, as both Durable Objects receive it.
//!
//! The input is the frame's payload. UTF-8 goes down the two text paths the objects run:
//! the user hub's [`Hub::client_text`] over an in-memory inbox holding a few
//! notifications, and the room hub's admission check, [`RoomFrame`] parsing,
//! [`RoomFrame::draft`] and the room history's publish or replay (the glue in
//! `src/edge/room_hub.rs` does exactly these steps). Anything else is a binary frame.
//!
//! Beyond "no panic", every answer is held to what the protocol promises: a frame that
//! does not parse gets one `bad_frame` error and changes nothing, a page never holds more
//! than its limit, a resume ends with `synced`, a room message stays within the title and
//! body limits and carries its sender, every server frame serializes, and the session
//! attachment stays far below the runtime's 16 KiB cap.

#![no_main]

use herald::config::Limits;
use herald::frame::{ClientFrame, CloseCode, ServerFrame};
use herald::hub::{self, Admission, Arrival, Effect, Hub, Session, MAX_PAGE};
use herald::inbox::{Inbox, MemoryInbox};
use herald::model::{Draft, Priority, MAX_BODY_LEN, MAX_TITLE_LEN};
use herald::room::{Member, RoomFrame};
use herald::socket::FrameBudget;
use libfuzzer_sys::fuzz_target;

/// The fake clock: every event of one run happens at this time (ms since the epoch).
const NOW: u64 = 1_700_000_000_000;
/// Notifications stored before the frame arrives: enough for reads, pages and resumes to
/// find something, one of them already expired.
const STORED: u64 = 5;
/// What the runtime allows a socket attachment to hold.
const MAX_ATTACHMENT: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(text) => {
            user_hub(text);
            room_hub(text);
        }
        Err(_) => binary(data.len()),
    }
});

fn draft(i: u64) -> Draft {
    Draft {
        id: format!("ntf_{i}"),
        event: "task.updated".into(),
        title: Some(format!("Task {i} changed")),
        body: None,
        data: None,
        priority: Priority::Normal,
        actor: Some("carol".into()),
        room: None,
        idempotency_key: Some(format!("key-{i}")),
        // Item 2 expired five seconds before `NOW`.
        ttl_s: (i == 2).then_some(5),
    }
}

/// The user's inbox as the frame finds it: `STORED` items published ten seconds ago.
fn stocked(limits: &Limits) -> MemoryInbox {
    let mut inbox = MemoryInbox::default();
    Hub {
        inbox: &mut inbox,
        limits,
    }
    .publish((1..=STORED).map(draft).collect(), NOW - 10_000)
    .expect("a memory inbox never fails");
    inbox
}

/// A device of alice, connected just now with a fresh frame budget.
fn session(inbox: &mut MemoryInbox, limits: &Limits) -> Session {
    let arrival = Arrival {
        user: "alice".into(),
        session_id: "ses_1".into(),
        device: Some("phone".into()),
        since: None,
        token_exp: Some(NOW / 1000 + 3_600),
    };
    match (Hub { inbox, limits }).connect(arrival, 0, NOW) {
        Ok(Admission::Welcome { session, .. }) => session,
        other => panic!("a first device was turned away: {other:?}"),
    }
}

/// The frames `effects` send, a replay pulled whole from `inbox`.
fn frames(effects: &[Effect], inbox: &MemoryInbox) -> Vec<ServerFrame> {
    effects
        .iter()
        .flat_map(|effect| match effect {
            Effect::Broadcast(frame) | Effect::Reply(frame) => vec![frame.clone()],
            Effect::Replay(replay) => replay
                .clone()
                .all(inbox, NOW)
                .expect("a memory inbox never fails"),
            Effect::Release(_) | Effect::Dropped(_) | Effect::Close { .. } => Vec::new(),
        })
        .collect()
}

fn is_error(effects: &[Effect], code: &str) -> bool {
    matches!(effects, [Effect::Reply(ServerFrame::Error { code: c, .. })] if c == code)
}

fn user_hub(text: &str) {
    let limits = Limits::default();
    let mut inbox = stocked(&limits);
    let mut session = session(&mut inbox, &limits);
    let before = session.clone();
    let effects = Hub {
        inbox: &mut inbox,
        limits: &limits,
    }
    .client_text(&mut session, text, NOW);

    // A fresh budget admits one frame; only size can close the socket.
    if text.len() > limits.max_frame_bytes {
        assert!(
            matches!(
                effects.as_slice(),
                [Effect::Close {
                    code: CloseCode::TooBig,
                    ..
                }]
            ),
            "{effects:?}"
        );
        return;
    }
    let sent = frames(&effects, &inbox);
    for frame in &sent {
        frame.to_json();
    }
    let attachment = serde_json::to_vec(&session).expect("sessions serialize");
    assert!(
        attachment.len() < MAX_ATTACHMENT / 4,
        "{} bytes",
        attachment.len()
    );
    let unread = inbox.unread_count(NOW).unwrap();
    for frame in &sent {
        if let ServerFrame::Read { unread_count, .. }
        | ServerFrame::UnreadCount { unread_count }
        | ServerFrame::Page(herald::frame::Page { unread_count, .. }) = frame
        {
            assert_eq!(*unread_count, unread, "a stale unread count went out");
        }
    }

    let Ok(frame) = serde_json::from_str::<ClientFrame>(text) else {
        assert!(is_error(&effects, "bad_frame"), "{effects:?}");
        assert_eq!(session.acked, before.acked);
        return;
    };
    match frame {
        ClientFrame::Ping => assert_eq!(effects, [Effect::Reply(ServerFrame::Pong)]),
        ClientFrame::Ack { seq } => {
            if seq <= STORED {
                assert!(effects.is_empty(), "{effects:?}");
                assert_eq!(session.acked, seq.max(before.acked));
            } else {
                assert!(is_error(&effects, "bad_request"), "{effects:?}");
                assert_eq!(session.acked, before.acked);
            }
        }
        ClientFrame::Read(_) => {
            assert!(effects.len() <= 1, "{effects:?}");
            for effect in &effects {
                match effect {
                    Effect::Broadcast(ServerFrame::Read { ids, .. }) => {
                        assert!(!ids.is_empty() && ids.len() as u64 <= STORED, "{ids:?}")
                    }
                    Effect::Reply(ServerFrame::Error { .. }) => {}
                    other => panic!("a read answered {other:?}"),
                }
            }
        }
        ClientFrame::Fetch(request) => match effects.as_slice() {
            [Effect::Reply(ServerFrame::Page(page))] => {
                let limit = request.limit.unwrap_or(50);
                assert!((1..=MAX_PAGE).contains(&limit));
                assert!(page.items.len() as u64 <= limit.min(STORED));
                assert_eq!(page.reference, request.reference);
                assert!(page.items.iter().all(|n| n.live_at(NOW)));
            }
            [Effect::Reply(ServerFrame::Error { .. })] => {}
            other => panic!("a fetch answered {other:?}"),
        },
        ClientFrame::Resume { .. } => {
            assert!(effects.len() <= 3, "{effects:?}");
            assert!(
                matches!(
                    effects.last(),
                    Some(Effect::Reply(ServerFrame::Synced { seq: STORED }))
                ),
                "{effects:?}"
            );
        }
        ClientFrame::Focus(_) => match effects.first() {
            Some(Effect::Broadcast(ServerFrame::Preferences(_))) => {
                assert!(effects.len() <= 3, "{effects:?}")
            }
            _ => assert!(is_error(&effects, "bad_request"), "{effects:?}"),
        },
    }
}

fn room_hub(text: &str) {
    let limits = Limits::default().for_room();
    let mut member = Member {
        user: "bob".into(),
        id: "ses_2".into(),
        room: "project:42".into(),
        can_write: true,
        connected_at: NOW,
        budget: FrameBudget::full(&limits, NOW),
        shard: None,
        last_frame_at: NOW,
        token_expires_at: None,
    };
    if hub::admit(&mut member.budget, &limits, text.len(), NOW).is_some() {
        assert!(text.len() > limits.max_frame_bytes);
        return;
    }
    let Ok(frame) = serde_json::from_str::<RoomFrame>(text) else {
        return;
    };
    let mut history = MemoryInbox::default();
    let mut hub = Hub {
        inbox: &mut history,
        limits: &limits,
    };
    match frame {
        RoomFrame::Ping | RoomFrame::Typing => {}
        RoomFrame::Resume { since } => {
            let frames = hub
                .replay(since)
                .and_then(|replay| replay.all(hub.inbox, NOW))
                .expect("a memory inbox never fails");
            assert!(frames.len() <= 2, "{frames:?}");
            assert!(matches!(
                frames.last(),
                Some(ServerFrame::Synced { seq: 0 })
            ));
        }
        RoomFrame::Publish {
            event,
            title,
            body,
            data,
        } => {
            let draft = RoomFrame::draft(
                &member,
                "msg_1".into(),
                event.clone(),
                title.clone(),
                body.clone(),
                data,
            );
            let Ok(draft) = draft else {
                let _ = draft.map_err(|e| e.to_string());
                return;
            };
            assert!(valid_event(&draft.event), "{:?}", draft.event);
            assert!(title.is_none_or(|t| t.chars().count() <= MAX_TITLE_LEN));
            assert!(body.is_none_or(|b| b.chars().count() <= MAX_BODY_LEN));
            assert_eq!(draft.actor.as_deref(), Some("bob"));
            assert_eq!(draft.room.as_deref(), Some("project:42"));
            let (receipts, effects) = hub
                .publish(vec![draft], NOW)
                .expect("a memory inbox never fails");
            assert_eq!(receipts.len(), 1);
            assert_eq!(receipts[0].seq, 1);
            for frame in &frames(&effects, hub.inbox) {
                if let ServerFrame::Notification(n) = frame {
                    ServerFrame::Message(n.clone()).to_json();
                }
                frame.to_json();
            }
        }
    }
}

/// What DESIGN.md calls an event name, written out again here rather than borrowed, so
/// that the target checks the parser instead of agreeing with it.
fn valid_event(event: &str) -> bool {
    (1..=128).contains(&event.len())
        && event
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

fn binary(len: usize) {
    let limits = Limits::default();
    let mut inbox = MemoryInbox::default();
    let mut session = session(&mut inbox, &limits);
    let effects = Hub {
        inbox: &mut inbox,
        limits: &limits,
    }
    .client_binary(&mut session, len, NOW);
    assert!(is_error(&effects, "bad_frame"), "{effects:?}");
}
