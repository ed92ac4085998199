//! Project rooms driven natively: who may join (grants, room names), the member list,
//! what members may send, presence with a grace period, the room's history (an inbox run
//! by the hub under `Limits::for_room()`), the per-socket rate limiter, shard placement,
//! and the publish requests that target a room. A fake clock in milliseconds throughout.

use herald::access::grants;
use herald::config::Limits;
use herald::fanout::Outgoing;
use herald::frame::PresenceAction;
use herald::frame::{BatchReason, CloseCode, ServerFrame};
use herald::hub::{self, Effect, Hub};
use herald::inbox::{Inbox, MemoryInbox};
use herald::model::{
    valid_room, Draft, InputError, Notification, Priority, Receipt, Seq, Source, MAX_ROOM_LEN,
};
use herald::publish::PublishRequest;
use herald::room::{
    parse_members, place, presence, shard_object, Admission, Arrival as RoomArrival, Awake,
    Effect as RoomEffect, Kind, Member, Placement, Room, RoomFrame, Roster, MAX_MEMBERS,
    TYPING_INTERVAL_MS,
};
use herald::room_store::{MemoryRoom, RoomStore};
use herald::socket::FrameBudget;
use herald::timer::Timer;
use serde_json::json;

// ---- helpers ------------------------------------------------------------------------

/// The fake clock's starting point, in milliseconds since the epoch.
const T0: u64 = 1_700_000_000_000;

/// A token's `rooms` claim.
fn claim(rooms: &[&str]) -> Vec<String> {
    rooms.iter().map(|s| s.to_string()).collect()
}

/// The field an `InputError::Field` names; panics on any other error so that a test
/// expecting a named field never passes on, say, a JSON error.
fn field_of(err: InputError) -> String {
    match err {
        InputError::Field { field, .. } => field,
        other => panic!("expected an error naming a field, got {other:?}"),
    }
}

fn members(body: serde_json::Value) -> Result<Vec<String>, InputError> {
    parse_members(body.to_string().as_bytes())
}

/// Alice's socket in `project:42`, connected at `T0` with a full budget.
fn member() -> Member {
    Member {
        user: "alice".into(),
        id: "ses_1".into(),
        room: "project:42".into(),
        can_write: true,
        connected_at: T0,
        budget: FrameBudget::full(&Limits::default(), T0),
        shard: None,
        last_frame_at: T0,
        token_expires_at: None,
    }
}

/// `RoomFrame::draft` for a frame with only an event and the given title and body.
fn draft_with(title: Option<String>, body: Option<String>) -> Result<Draft, InputError> {
    RoomFrame::draft(
        &member(),
        "msg_1".into(),
        "chat.message".into(),
        title,
        body,
        None,
    )
}

/// A room history entry as a member's `publish` frame makes it.
fn chat(id: &str) -> Draft {
    RoomFrame::draft(
        &member(),
        id.into(),
        "chat.message".into(),
        None,
        Some(format!("message {id}")),
        None,
    )
    .unwrap()
}

/// Publishes `drafts` into a room's history under `limits` (already `for_room()`).
fn publish_to_room(
    history: &mut MemoryInbox,
    limits: &Limits,
    drafts: Vec<Draft>,
    now_ms: u64,
) -> (Vec<Receipt>, Vec<Effect>) {
    Hub {
        inbox: history,
        limits,
    }
    .publish(drafts, now_ms)
    .unwrap()
}

/// Publishes `n` chat messages one by one, ids `m1`, `m2`, …, returning their seqs.
fn publish_n(history: &mut MemoryInbox, limits: &Limits, n: usize) -> Vec<Seq> {
    (1..=n)
        .map(|i| {
            let (receipts, _) = publish_to_room(history, limits, vec![chat(&format!("m{i}"))], T0);
            receipts[0].seq
        })
        .collect()
}

fn replay(history: &MemoryInbox, since: Seq) -> Vec<ServerFrame> {
    herald::history::replay(history, since)
        .and_then(|replay| replay.all(history, T0))
        .unwrap()
}

/// The seqs each replay batch carries, batch by batch.
fn batch_seqs(frames: &[ServerFrame]) -> Vec<Vec<Seq>> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Batch {
                reason: BatchReason::Replay,
                items,
            } => Some(items.iter().map(|n| n.seq).collect()),
            _ => None,
        })
        .collect()
}

fn seqs(receipts: &[Receipt]) -> Vec<Seq> {
    receipts.iter().map(|r| r.seq).collect()
}

/// The notifications a publish pushed live.
fn pushed(effects: &[Effect]) -> Vec<&Notification> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Broadcast(ServerFrame::Notification(n)) => Some(n),
            _ => None,
        })
        .collect()
}

fn parse_publish(body: serde_json::Value) -> Result<PublishRequest, InputError> {
    let mut n = 0;
    PublishRequest::parse(body.to_string().as_bytes(), &Limits::default(), || {
        n += 1;
        format!("ntf_{n}")
    })
}

// ---- grants -------------------------------------------------------------------------

#[test]
fn a_prefix_grant_covers_rooms_below_the_prefix_only() {
    let g = claim(&["project:*"]);
    assert!(grants(&g, "project:42"));
    // The prefix is a string prefix, not one path segment: deeper names match too.
    assert!(grants(&g, "project:a:b"));
    // The colon is part of the prefix, so a neighbouring namespace is not granted.
    assert!(!grants(&g, "projects:1"));
    // The prefix alone names no room: `*` must stand for at least one character.
    assert!(!grants(&g, "project:"));
    assert!(!grants(&g, "project"));
    // Room names are case-sensitive, and so are grants.
    assert!(!grants(&g, "Project:42"));
}

#[test]
fn an_exact_grant_covers_that_room_only() {
    let g = claim(&["team:7"]);
    assert!(grants(&g, "team:7"));
    assert!(!grants(&g, "team:70"));
    assert!(!grants(&g, "team:"));
    assert!(!grants(&g, "TEAM:7"));
    // A star anywhere but at the end is not a wildcard: this grant names a literal room.
    let g = claim(&["team:*:chat"]);
    assert!(!grants(&g, "team:7:chat"));
}

#[test]
fn any_of_several_grants_is_enough() {
    let g = claim(&["team:7", "project:*", "lobby"]);
    for room in ["team:7", "project:1", "project:x", "lobby"] {
        assert!(grants(&g, room), "{room} should be granted");
    }
    for room in ["team:8", "lobby:2", "projects:1"] {
        assert!(!grants(&g, room), "{room} should not be granted");
    }
}

#[test]
fn an_empty_claim_grants_nothing() {
    assert!(!grants(&[], "project:42"));
    assert!(!grants(&[], ""));
}

#[test]
fn a_lone_star_grants_every_room() {
    // What the code does: `*` is the empty prefix followed by the wildcard, so it grants
    // every non-empty room name. A token issuer putting `*` in `rooms` gives access to
    // all rooms of the deployment; there is no separate "admin" notion.
    let g = claim(&["*"]);
    for room in ["project:42", "a", "team:7", &"x".repeat(MAX_ROOM_LEN)] {
        assert!(grants(&g, room), "{room} should be granted");
    }
    // The empty name is still not granted (nor is it a valid room).
    assert!(!grants(&g, ""));
}

// ---- room names ---------------------------------------------------------------------

#[test]
fn room_names_are_short_and_of_a_small_alphabet() {
    for ok in ["project:42", "a", "A-z_0.9:x", "team-7.chat_room"] {
        assert!(valid_room(ok), "{ok:?} should be valid");
    }
    assert!(
        valid_room(&"x".repeat(MAX_ROOM_LEN)),
        "128 characters is fine"
    );
    assert!(
        !valid_room(&"x".repeat(MAX_ROOM_LEN + 1)),
        "129 is too long"
    );
    assert!(!valid_room(""));
    assert!(!valid_room("a/b"), "a slash would change the route");
    assert!(!valid_room("project 42"));
    // `#` is reserved: shard objects are named `<room>#<n>`, so a room named like a shard
    // must not exist.
    assert!(!valid_room("project:42#1"));
    assert!(!valid_room("projét"), "ASCII only");
    assert!(!valid_room("project:*"), "a grant pattern is not a room");
}

// ---- member lists -------------------------------------------------------------------

#[test]
fn members_are_deduplicated_in_first_seen_order() {
    let list = members(json!({"members": ["bob", "alice", "bob", "carol", "alice"]})).unwrap();
    assert_eq!(list, ["bob", "alice", "carol"]);
    assert_eq!(
        members(json!({"members": []})).unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn a_member_that_is_not_a_user_id_is_named_by_index() {
    let too_long = "u".repeat(herald::model::MAX_USER_ID_LEN + 1);
    for (list, index) in [
        (json!(["alice", "bob", ""]), 2),
        (json!(["alice\u{7}"]), 0),
        (json!(["alice", too_long]), 1),
    ] {
        let err = members(json!({ "members": list })).unwrap_err();
        assert_eq!(field_of(err), format!("members[{index}]"), "{list}");
    }
}

#[test]
fn a_member_list_with_unknown_fields_or_bad_json_is_refused() {
    // A typo such as `member` must not read as an empty list that removes everyone.
    assert!(matches!(
        members(json!({"members": ["alice"], "extra": 1})),
        Err(InputError::Json(_))
    ));
    assert!(matches!(
        members(json!({"member": ["alice"]})),
        Err(InputError::Json(_))
    ));
    assert!(matches!(
        members(json!({"members": [1, 2]})),
        Err(InputError::Json(_))
    ));
    assert!(matches!(
        parse_members(b"{\"members\":[\"alice\""),
        Err(InputError::Json(_))
    ));
    assert!(matches!(parse_members(b""), Err(InputError::Json(_))));
}

#[test]
fn a_member_list_holds_at_most_ten_thousand_entries() {
    let distinct: Vec<String> = (0..MAX_MEMBERS).map(|i| format!("user{i}")).collect();
    assert_eq!(
        members(json!({ "members": distinct })).unwrap().len(),
        MAX_MEMBERS
    );
    let over: Vec<String> = (0..=MAX_MEMBERS).map(|i| format!("user{i}")).collect();
    assert_eq!(
        field_of(members(json!({ "members": over })).unwrap_err()),
        "members"
    );
    // The bound is on the list as sent, before deduplication: it is checked first so that
    // an oversized body is refused without further work.
    let repeated = vec!["alice"; MAX_MEMBERS + 1];
    assert_eq!(
        field_of(members(json!({ "members": repeated })).unwrap_err()),
        "members"
    );
}

// ---- room frames --------------------------------------------------------------------

#[test]
fn room_frames_parse_from_json_text() {
    let parse = |text: &str| serde_json::from_str::<RoomFrame>(text);
    assert_eq!(
        parse(r#"{"type":"publish","event":"chat.message","body":"hi"}"#).unwrap(),
        RoomFrame::Publish {
            event: "chat.message".into(),
            title: None,
            body: Some("hi".into()),
            data: None,
        }
    );
    assert_eq!(
        parse(r#"{"type":"publish","event":"reaction.added","title":"t","data":{"emoji":"+1"}}"#)
            .unwrap(),
        RoomFrame::Publish {
            event: "reaction.added".into(),
            title: Some("t".into()),
            body: None,
            data: Some(json!({"emoji": "+1"})),
        }
    );
    assert_eq!(parse(r#"{"type":"typing"}"#).unwrap(), RoomFrame::Typing);
    assert_eq!(
        parse(r#"{"type":"resume","since":7}"#).unwrap(),
        RoomFrame::Resume { since: 7 }
    );
    assert_eq!(parse(r#"{"type":"ping"}"#).unwrap(), RoomFrame::Ping);
}

#[test]
fn frames_a_room_does_not_understand_are_refused() {
    let parse = |text: &str| serde_json::from_str::<RoomFrame>(text);
    // User-socket frames have no meaning in a room.
    assert!(parse(r#"{"type":"ack","seq":1}"#).is_err());
    assert!(parse(r#"{"type":"resume"}"#).is_err(), "resume needs since");
    assert!(parse(r#"{"type":"resume","since":-1}"#).is_err());
    assert!(
        parse(r#"{"type":"publish"}"#).is_err(),
        "publish needs event"
    );
    assert!(parse(r#"{"event":"chat.message"}"#).is_err(), "no type");
    // The literal `ping` is answered by the runtime and never parsed as a frame.
    assert!(parse("ping").is_err());
}

#[test]
fn a_draft_is_signed_by_the_socket_not_the_frame() {
    // Extra fields in a frame are ignored, so a client cannot name another actor or room:
    // both come from the socket's verified `Member`.
    let frame: RoomFrame = serde_json::from_str(
        r#"{"type":"publish","event":"chat.message","body":"hi","actor":"mallory","room":"team:1"}"#,
    )
    .unwrap();
    let RoomFrame::Publish {
        event,
        title,
        body,
        data,
    } = frame
    else {
        panic!("not a publish frame: {frame:?}");
    };
    let draft = RoomFrame::draft(&member(), "msg_1".into(), event, title, body, data).unwrap();
    assert_eq!(draft.actor.as_deref(), Some("alice"));
    assert_eq!(draft.room.as_deref(), Some("project:42"));
    assert_eq!(draft.id, "msg_1");
    assert_eq!(draft.event, "chat.message");
    assert_eq!(draft.body.as_deref(), Some("hi"));
    // Client events carry no producer options.
    assert_eq!(draft.priority, Priority::Normal);
    assert_eq!(draft.idempotency_key, None);
    assert_eq!(draft.ttl_s, None);
}

#[test]
fn a_draft_refuses_bad_events_and_over_long_text() {
    let bad_event = |event: &str| {
        RoomFrame::draft(&member(), "m".into(), event.into(), None, None, None)
            .map(|_| ())
            .map_err(field_of)
    };
    assert_eq!(bad_event(""), Err("event".into()));
    assert_eq!(bad_event("chat message"), Err("event".into()));
    assert_eq!(bad_event(&"e".repeat(129)), Err("event".into()));

    // Limits are in characters, not bytes: 256 two-byte characters are fine.
    assert!(draft_with(Some("é".repeat(256)), None).is_ok());
    assert_eq!(
        field_of(draft_with(Some("t".repeat(257)), None).unwrap_err()),
        "title"
    );
    assert!(draft_with(None, Some("é".repeat(4096))).is_ok());
    assert_eq!(
        field_of(draft_with(None, Some("b".repeat(4097))).unwrap_err()),
        "body"
    );
}

// ---- presence -----------------------------------------------------------------------

/// The real room state machine on in-memory stores, with what it announced, so presence
/// tests read as a story: joins, closes, alarms.
struct Presence {
    room: RoomFixture,
    announced: Vec<String>,
}

const GRACE_MS: u64 = 5_000;

impl Default for Presence {
    fn default() -> Self {
        let limits = Limits {
            room_presence_grace_ms: GRACE_MS,
            ..Limits::default()
        };
        Self {
            room: RoomFixture::new(limits),
            announced: Vec::new(),
        }
    }
}

impl Presence {
    fn note(&mut self, effects: &[RoomEffect]) {
        self.announced.extend(announcements(effects));
    }

    fn join(&mut self, user: &str, socket: &str) {
        let effects = self.room.join_here(user, socket, T0);
        self.note(&effects);
    }

    fn close(&mut self, socket: &str, now_ms: u64) {
        self.room.with(|room| room.close(socket, now_ms)).unwrap();
    }

    fn alarm(&mut self, now_ms: u64) {
        let effects = self.room.with(|room| room.alarm(&[], now_ms)).unwrap();
        self.note(&effects);
    }

    fn leaving(&self) -> Vec<(String, u64)> {
        self.room.store.departures().unwrap()
    }
}

#[test]
fn the_roster_counts_sockets_and_users_once_each() {
    let mut roster = Roster::default();
    roster.add("s1", "alice");
    roster.add("s1", "alice"); // the same socket again (a rebuild after a wake-up)
    roster.add("s2", "alice");
    roster.add("s3", "bob");
    assert_eq!(roster.sockets(), 3);
    let mut users: Vec<&str> = roster.users().collect();
    users.sort();
    assert_eq!(users, ["alice", "bob"]);
    assert!(roster.has_other("alice", "s1"));
    assert!(
        !roster.has_other("bob", "s3"),
        "bob's own socket is not another"
    );
    assert!(
        roster.has_other("bob", "s9"),
        "from a socket not yet counted"
    );
    assert!(!roster.has_other("carol", "s9"));

    assert_eq!(roster.remove("s2").as_deref(), Some("alice"));
    assert!(!roster.has_other("alice", "s1"));
    assert_eq!(roster.remove("s2"), None, "removing twice changes nothing");
    assert_eq!(roster.remove("s1").as_deref(), Some("alice"));
    assert_eq!(roster.users().collect::<Vec<_>>(), ["bob"]);
    assert_eq!(roster.sockets(), 1);
}

#[test]
fn a_quick_reconnect_is_neither_a_leave_nor_a_second_join() {
    let mut room = Presence::default();
    room.join("alice", "s1");
    room.close("s1", T0);
    room.alarm(T0 + 1_000);
    room.join("alice", "s2"); // back within the grace period
    room.close("s2", T0 + 2_000);
    room.join("alice", "s3"); // and again
    room.alarm(T0 + 2_000 + GRACE_MS + 1); // past the first deadline: she is online
    assert_eq!(room.announced, ["joined alice"]);
    assert!(room.leaving().is_empty());
}

#[test]
fn a_leave_past_the_grace_is_announced_once() {
    let mut room = Presence::default();
    room.join("alice", "s1");
    room.join("bob", "s2");
    room.close("s1", T0);
    assert_eq!(room.leaving(), [("alice".to_string(), T0 + GRACE_MS)]);

    room.alarm(T0 + GRACE_MS - 1);
    assert_eq!(room.announced, ["joined alice", "joined bob"], "not yet");
    room.alarm(T0 + GRACE_MS); // the deadline itself is due
    room.alarm(T0 + GRACE_MS + 1); // a second alarm announces nothing more
    assert_eq!(room.announced, ["joined alice", "joined bob", "left alice"]);

    // Coming back after `left` is a new join.
    room.join("alice", "s3");
    assert_eq!(room.announced.last().unwrap(), "joined alice");
}

#[test]
fn due_names_only_users_past_their_deadline_and_not_online() {
    let leaving = vec![
        ("ann".to_string(), T0),
        ("bob".to_string(), T0 + 10),
        ("cat".to_string(), T0 - 5),
    ];
    let online = vec!["cat".to_string()];
    let due = |now| presence::due(&leaving, &online, now).collect::<Vec<_>>();
    assert_eq!(due(T0 - 1), Vec::<&str>::new());
    assert_eq!(due(T0), ["ann"]);
    // cat's deadline passed, but cat is back: no `left`.
    assert_eq!(due(T0 + 10), ["ann", "bob"]);
}

#[test]
fn closing_one_of_two_sockets_starts_no_departure() {
    let mut room = Presence::default();
    room.join("alice", "phone");
    room.join("alice", "laptop");
    assert_eq!(
        room.announced,
        ["joined alice"],
        "a second socket is no join"
    );
    room.close("phone", T0);
    assert!(room.leaving().is_empty());
    room.alarm(T0 + GRACE_MS * 10);
    assert_eq!(room.announced, ["joined alice"]);
    // The pure rule behind it.
    assert_eq!(presence::leave_deadline(true, T0, GRACE_MS), None);
    assert_eq!(
        presence::leave_deadline(false, T0, GRACE_MS),
        Some(T0 + GRACE_MS)
    );
}

// ---- room history -------------------------------------------------------------------

#[test]
fn room_limits_are_the_inbox_limits_with_the_history_size() {
    let limits = Limits::default();
    let room = limits.for_room();
    assert_eq!(room.inbox_max_items, 500);
    assert_eq!(room.inbox_max_items, limits.room_history_items);
    assert_eq!(
        Limits {
            inbox_max_items: limits.inbox_max_items,
            ..room
        },
        limits,
        "nothing else changes"
    );
}

#[test]
fn each_room_numbers_its_history_from_one() {
    let limits = Limits::default().for_room();
    let (mut project, mut team) = (MemoryInbox::default(), MemoryInbox::default());
    assert_eq!(publish_n(&mut project, &limits, 3), [1, 2, 3]);
    assert_eq!(publish_n(&mut team, &limits, 2), [1, 2]);
    let (receipts, _) = publish_to_room(&mut project, &limits, vec![chat("a"), chat("b")], T0);
    assert_eq!(seqs(&receipts), [4, 5]);
}

#[test]
fn a_resume_replays_in_batches_then_says_synced() {
    let limits = Limits::default().for_room();
    let mut history = MemoryInbox::default();
    publish_n(&mut history, &limits, 250);

    let frames = replay(&history, 0);
    let batches = batch_seqs(&frames);
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        [100, 100, 50]
    );
    assert_eq!(
        batches.concat(),
        (1..=250).collect::<Vec<Seq>>(),
        "in order, no gap"
    );
    assert_eq!(frames.last(), Some(&ServerFrame::Synced { seq: 250 }));

    let frames = replay(&history, 240);
    assert_eq!(batch_seqs(&frames), [(241..=250).collect::<Vec<Seq>>()]);
    assert_eq!(frames.last(), Some(&ServerFrame::Synced { seq: 250 }));

    // Up to date: nothing to replay, only `synced`.
    assert_eq!(replay(&history, 250), [ServerFrame::Synced { seq: 250 }]);
}

#[test]
fn a_resume_older_than_the_kept_history_is_a_reset() {
    let limits = Limits {
        room_history_items: 5,
        ..Limits::default()
    }
    .for_room();
    let mut history = MemoryInbox::default();
    publish_n(&mut history, &limits, 8);
    // Seqs 1–3 were cut to keep 5 items.
    assert_eq!(history.item_count().unwrap(), 5);
    assert_eq!(history.oldest_seq().unwrap(), Some(4));

    assert_eq!(
        replay(&history, 1),
        [
            ServerFrame::Reset {
                oldest_seq: Some(4),
                latest_seq: 8
            },
            ServerFrame::Synced { seq: 8 },
        ]
    );
    // A client that saw seq 3 has missed nothing that is gone: an honest replay.
    let frames = replay(&history, 3);
    assert_eq!(batch_seqs(&frames), [vec![4, 5, 6, 7, 8]]);
    // A cursor from the future (another room's, say) is a reset too, never a silent gap.
    assert_eq!(
        replay(&history, 9)[0],
        ServerFrame::Reset {
            oldest_seq: Some(4),
            latest_seq: 8
        }
    );
}

#[test]
fn an_idempotency_key_dedupes_a_room_publish() {
    let limits = Limits::default().for_room();
    let mut history = MemoryInbox::default();
    let keyed = |id: &str| Draft {
        idempotency_key: Some("announce-release".into()),
        ..chat(id)
    };
    let (first, effects) = publish_to_room(&mut history, &limits, vec![keyed("m1")], T0);
    assert_eq!(pushed(&effects).len(), 1);
    let (retry, effects) = publish_to_room(&mut history, &limits, vec![keyed("m2")], T0 + 1_000);
    assert_eq!(
        retry,
        [Receipt {
            duplicate: true,
            ..first[0].clone()
        }]
    );
    assert!(pushed(&effects).is_empty(), "a retry is not relayed again");
    assert_eq!(history.latest_seq().unwrap(), 1);
    assert_eq!(history.item_count().unwrap(), 1);
}

#[test]
fn a_room_draft_becomes_a_notification_of_that_room() {
    let limits = Limits::default().for_room();
    let mut history = MemoryInbox::default();
    let (receipts, effects) = publish_to_room(&mut history, &limits, vec![chat("m1")], T0);
    let live = pushed(&effects);
    assert_eq!(live.len(), 1);
    let n = live[0];
    assert_eq!(n.seq, receipts[0].seq);
    assert_eq!(n.room.as_deref(), Some("project:42"));
    assert_eq!(n.actor.as_deref(), Some("alice"));
    assert_eq!(n.created_at, T0);
    // The stored copy, which replays send, carries the room as well.
    let stored = batch_seqs(&replay(&history, 0));
    assert_eq!(stored, [vec![1]]);
    match &replay(&history, 0)[0] {
        ServerFrame::Batch { items, .. } => {
            assert_eq!(items[0].room.as_deref(), Some("project:42"))
        }
        other => panic!("expected a batch, got {other:?}"),
    }
}

// ---- rate limiter -------------------------------------------------------------------

fn close_code(effect: Option<Effect>) -> Option<u16> {
    effect.map(|e| match e {
        Effect::Close { code, .. } => code.code(),
        other => panic!("admit only ever closes, got {other:?}"),
    })
}

#[test]
fn a_room_socket_may_burst_forty_frames_then_is_closed() {
    let limits = Limits::default();
    let mut budget = FrameBudget::full(&limits, T0);
    for i in 0..limits.frame_burst {
        assert_eq!(
            hub::admit(&mut budget, &limits, 10, T0),
            None,
            "frame {i} of the burst"
        );
    }
    let close = hub::admit(&mut budget, &limits, 10, T0);
    assert!(matches!(
        close,
        Some(Effect::Close {
            code: CloseCode::RateLimited,
            ..
        })
    ));
    assert_eq!(close_code(close), Some(4008));
}

#[test]
fn a_frame_over_the_size_limit_closes_with_too_big() {
    let limits = Limits::default();
    let mut budget = FrameBudget::full(&limits, T0);
    assert_eq!(
        hub::admit(&mut budget, &limits, limits.max_frame_bytes, T0),
        None
    );
    let close = hub::admit(&mut budget, &limits, limits.max_frame_bytes + 1, T0);
    assert!(matches!(
        close,
        Some(Effect::Close {
            code: CloseCode::TooBig,
            ..
        })
    ));
    assert_eq!(close_code(close), Some(1009));
}

#[test]
fn the_budget_refills_at_twenty_frames_a_second() {
    let limits = Limits::default();
    let mut budget = FrameBudget::full(&limits, T0);
    let spend = |budget: &mut FrameBudget, n: u64, now: u64| {
        (0..n)
            .filter(|_| hub::admit(budget, &limits, 10, now).is_none())
            .count() as u64
    };
    assert_eq!(spend(&mut budget, 40, T0), 40);
    assert_eq!(spend(&mut budget, 1, T0), 0, "the 41st at the same instant");
    let later = T0 + 1_000;
    assert_eq!(spend(&mut budget, 20, later), 20, "one second refills 20");
    assert_eq!(spend(&mut budget, 1, later), 0, "and no more");
}

// ---- shard placement ----------------------------------------------------------------

/// Deals `n` overflow sockets one by one with nobody leaving, as the root does.
fn deal(n: usize, size: u64) -> Vec<Placement> {
    let mut shards: Vec<(u64, u64)> = Vec::new();
    (0..n)
        .map(|_| {
            let placed = place(size as usize, &shards, size);
            if let Placement::Shard(k) = placed {
                match shards.iter_mut().find(|(s, _)| *s == k) {
                    Some((_, count)) => *count += 1,
                    None => {
                        shards.push((k, 1));
                        shards.sort();
                    }
                }
            }
            placed
        })
        .collect()
}

#[test]
fn sockets_stay_on_the_root_until_it_is_full() {
    for root_sockets in 0..3 {
        assert_eq!(place(root_sockets, &[], 3), Placement::Root);
    }
    assert_eq!(place(3, &[], 3), Placement::Shard(1));
    // The root is full whatever the shards hold.
    assert_eq!(place(4, &[(1, 3), (2, 3), (3, 3)], 3), Placement::Shard(4));
}

#[test]
fn shards_are_filled_in_order_size_sockets_each() {
    let expected: Vec<Placement> = [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
        .into_iter()
        .map(Placement::Shard)
        .collect();
    assert_eq!(deal(10, 3), expected);
}

#[test]
fn a_shard_size_of_one_gives_every_overflow_socket_its_own_shard() {
    assert_eq!(place(0, &[], 1), Placement::Root);
    assert_eq!(
        deal(4, 1),
        [1, 2, 3, 4].map(Placement::Shard),
        "shard n holds the n-th overflow socket"
    );
}

#[test]
fn a_huge_count_still_names_a_shard() {
    assert_eq!(place(usize::MAX, &[], 3), Placement::Shard(1));
    assert_eq!(place(1, &[(u64::MAX - 1, 1)], 1), Placement::Shard(1));
}

#[test]
fn placement_never_names_shard_zero() {
    // Shards are 1-based: shard 0 would be named `<room>#0`, an object nobody fans out to.
    for size in 1..=5 {
        for root in [0, size as usize, usize::MAX] {
            for shards in [
                vec![],
                vec![(1, size)],
                vec![(2, 1)],
                vec![(1, size), (u64::MAX, size)],
            ] {
                assert_ne!(
                    place(root, &shards, size),
                    Placement::Shard(0),
                    "{shards:?}"
                );
            }
        }
    }
}

#[test]
fn placement_at_the_last_count_does_not_wrap_to_shard_zero() {
    let full: Vec<(u64, u64)> = vec![(1, 1), (2, 1)];
    assert_eq!(place(1, &full, 1), Placement::Shard(3));
}

// ---- publish requests to a room -----------------------------------------------------

#[test]
fn a_room_publish_names_the_room_and_no_users() {
    let request =
        parse_publish(json!({"to": {"room": "project:42"}, "event": "e", "inbox": true})).unwrap();
    assert!(!request.batch);
    let message = &request.messages[0];
    assert_eq!(message.room.as_deref(), Some("project:42"));
    assert!(message.inbox);
    assert!(message.recipients.is_empty());
    assert_eq!(message.draft.room.as_deref(), Some("project:42"));
    assert_eq!(message.draft.id, "ntf_1");
    // A room message reaches no user hub directly: it goes through the room.
    assert!(request.by_recipient().is_empty());

    // Without `inbox`, it stays in the room's history only.
    let request = parse_publish(json!({"to": {"room": "project:42"}, "event": "e"})).unwrap();
    assert!(!request.messages[0].inbox);
}

#[test]
fn inbox_is_only_for_room_messages() {
    let err = parse_publish(json!({"to": {"users": ["alice"]}, "event": "e", "inbox": true}))
        .unwrap_err();
    assert_eq!(field_of(err), "inbox");
    let err = parse_publish(json!({"messages": [
        {"to": {"room": "project:42"}, "event": "e", "inbox": true},
        {"to": {"users": ["alice"]}, "event": "e", "inbox": true},
    ]}))
    .unwrap_err();
    assert_eq!(field_of(err), "messages[1].inbox");
    // `inbox: false` with users is merely the default.
    assert!(
        parse_publish(json!({"to": {"users": ["alice"]}, "event": "e", "inbox": false})).is_ok()
    );
    let err = parse_publish(json!({"to": {"room": "project:42"}, "event": "e", "inbox": "yes"}))
        .unwrap_err();
    assert_eq!(field_of(err), "inbox");
}

#[test]
fn a_room_target_must_be_a_valid_room_alone() {
    for room in [json!("project:42#1"), json!(""), json!("a/b"), json!(42)] {
        let err = parse_publish(json!({"to": {"room": room}, "event": "e"})).unwrap_err();
        assert_eq!(field_of(err), "to.room", "{room}");
    }
    let err =
        parse_publish(json!({"to": {"room": "project:42", "users": ["alice"]}, "event": "e"}))
            .unwrap_err();
    assert_eq!(field_of(err), "to");
}

#[test]
fn a_parsed_room_message_is_stored_with_its_room() {
    // The whole path of a producer's room message into the room's history.
    let request =
        parse_publish(json!({"to": {"room": "project:42"}, "event": "release.shipped"})).unwrap();
    let limits = Limits::default().for_room();
    let mut history = MemoryInbox::default();
    let draft = request.messages[0].draft.clone();
    let (receipts, effects) = publish_to_room(&mut history, &limits, vec![draft], T0);
    assert_eq!(seqs(&receipts), [1]);
    assert_eq!(pushed(&effects)[0].room.as_deref(), Some("project:42"));
    assert_eq!(
        pushed(&effects)[0].actor,
        None,
        "a producer names no actor here"
    );
}

// ---- the room state machine ---------------------------------------------------------

/// A room's root on in-memory stores: history, room store, its own sockets.
struct RoomFixture {
    history: MemoryInbox,
    store: MemoryRoom,
    awake: Awake,
    limits: Limits,
    ids: std::cell::Cell<u64>,
    name: &'static str,
}

impl RoomFixture {
    fn new(limits: Limits) -> Self {
        Self::named("project:42", limits)
    }

    fn named(name: &'static str, limits: Limits) -> Self {
        Self {
            history: MemoryInbox::default(),
            store: MemoryRoom::default(),
            awake: Awake::default(),
            limits,
            ids: std::cell::Cell::new(0),
            name,
        }
    }

    fn with<T>(&mut self, f: impl FnOnce(&mut Room<'_, MemoryInbox, MemoryRoom>) -> T) -> T {
        let ids = &self.ids;
        let next = || {
            ids.set(ids.get() + 1);
            format!("msg_{}", ids.get())
        };
        let mut room = Room {
            history: &mut self.history,
            store: &mut self.store,
            awake: &mut self.awake,
            limits: &self.limits,
            message_id: &next,
            kind: Kind::of_object(self.name),
        };
        f(&mut room)
    }

    fn arrive(&mut self, user: &str, session: &str, token_exp: Option<u64>, now: u64) -> Admission {
        let arrival = RoomArrival {
            user: user.into(),
            session: session.into(),
            room: self.name.into(),
            can_write: true,
            since: None,
            token_exp,
        };
        self.with(|room| room.connect(arrival, now)).unwrap()
    }

    /// A socket that the root keeps; answers the effects of its join.
    fn join_here(&mut self, user: &str, session: &str, now: u64) -> Vec<RoomEffect> {
        match self.arrive(user, session, None, now) {
            Admission::Here { effects, .. } => effects,
            other => panic!("expected the root to keep {session}, got {other:?}"),
        }
    }

    /// A socket placed on a shard that then asks for its first frames.
    fn join_shard(&mut self, user: &str, session: &str, now: u64) -> (u64, Vec<RoomEffect>) {
        let Admission::Shard { member } = self.arrive(user, session, None, now) else {
            panic!("expected a shard for {session}")
        };
        let (_, effects) = self.with(|room| room.join(&member, None, now)).unwrap();
        (member.shard.unwrap(), effects)
    }

    fn shards(&mut self) -> Vec<u64> {
        self.with(|room| room.shards()).unwrap()
    }

    fn online(&mut self) -> Vec<String> {
        self.with(|room| room.online_users()).unwrap()
    }
}

/// `joined alice` / `left bob` for each presence frame fanned out.
fn announcements(effects: &[RoomEffect]) -> Vec<String> {
    let mut out = Vec::new();
    for effect in effects {
        if let RoomEffect::Fanout(Outgoing {
            frame:
                ServerFrame::Presence {
                    action,
                    user,
                    users,
                },
            ..
        }) = effect
        {
            let word = match action {
                PresenceAction::Joined => "joined",
                PresenceAction::Left => "left",
                PresenceAction::Online => "online",
            };
            for u in user.iter().chain(users.iter().flatten()) {
                out.push(format!("{word} {u}"));
            }
        }
    }
    out
}

fn closes(effects: &[RoomEffect]) -> Vec<(String, u16)> {
    effects
        .iter()
        .filter_map(|e| match e {
            RoomEffect::Close { session, code, .. } => Some((session.clone(), code.code())),
            _ => None,
        })
        .collect()
}

fn fanned_out(effects: &[RoomEffect]) -> Vec<&ServerFrame> {
    effects
        .iter()
        .filter_map(|e| match e {
            RoomEffect::Fanout(out) => Some(&out.frame),
            _ => None,
        })
        .collect()
}

#[test]
fn rule_1_room_sockets_close_at_token_expiry_and_after_silence() {
    let mut room = RoomFixture::new(Limits::default());
    let exp_s = T0 / 1000 + 100; // later than the idle timeout
    let Admission::Here { member, .. } = room.arrive("alice", "s1", Some(exp_s), T0) else {
        panic!("kept")
    };
    let due = (exp_s + herald::auth::LEEWAY_S) * 1000;
    assert_eq!(member.token_expires_at, Some(due));
    let sockets = vec![("s1".to_string(), member.view(Some(due - 1)))];
    let timers = room.with(|r| r.timers(&[sockets[0].1])).unwrap();
    assert_eq!(
        timers.next(),
        Some(due),
        "the alarm comes at expiry plus leeway"
    );
    assert!(closes(&room.with(|r| r.alarm(&sockets, due - 1)).unwrap()).is_empty());
    assert_eq!(
        closes(&room.with(|r| r.alarm(&sockets, due)).unwrap()),
        [("s1".to_string(), 4001)]
    );

    // Silence: no frame and no ping for IDLE_TIMEOUT_MS closes with 1001.
    let quiet = member.view(None);
    let idle_at = T0 + room.limits.idle_timeout_ms;
    let swept = room
        .with(|r| r.alarm(&[("s1".to_string(), quiet)], idle_at))
        .unwrap();
    assert_eq!(closes(&swept), [("s1".to_string(), 1001)]);
    // A frame is a sign of life.
    let mut talking = member.clone();
    room.with(|r| r.client_text(&mut talking, r#"{"type":"ping"}"#, idle_at - 1));
    let kept = room
        .with(|r| r.alarm(&[("s1".to_string(), talking.view(None))], idle_at))
        .unwrap();
    assert!(closes(&kept).is_empty());
    // An absurd exp saturates instead of wrapping to a time long past.
    let Admission::Here { member, .. } = room.arrive("bob", "s2", Some(u64::MAX / 10), T0) else {
        panic!("kept")
    };
    assert_eq!(
        member.token_expires_at,
        Some(herald::socket::LATEST_DEADLINE_MS)
    );
}

#[test]
fn rule_2_at_most_max_devices_sockets_per_user_in_a_room() {
    let limits = Limits {
        max_devices: 2,
        room_shard_size: 1,
        ..Limits::default()
    };
    let mut room = RoomFixture::new(limits);
    room.join_here("alice", "a1", T0);
    room.join_shard("alice", "a2", T0); // counted on a shard too
    match room.arrive("alice", "a3", None, T0) {
        Admission::Refused { code, frame } => {
            assert_eq!(code, CloseCode::TooManyDevices);
            assert!(matches!(frame, ServerFrame::Error { code, .. } if code == "too_many_devices"));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    room.join_shard("bob", "b1", T0);
    // One closes; the next one fits again.
    room.with(|r| r.close("a2", T0)).unwrap();
    assert!(matches!(
        room.arrive("alice", "a4", None, T0),
        Admission::Shard { .. }
    ));
}

#[test]
fn rule_3_typing_is_relayed_once_per_user_per_two_seconds() {
    let mut room = RoomFixture::new(Limits::default());
    room.join_here("alice", "a1", T0);
    room.join_here("bob", "b1", T0);
    let mut alice = member();
    alice.id = "a1".into();
    let typing = r#"{"type":"typing"}"#;
    let mut relayed = 0;
    for i in 0..10 {
        let effects = room.with(|r| r.client_text(&mut alice, typing, T0 + i * 100));
        assert!(
            !effects.iter().any(|e| matches!(e, RoomEffect::Reply(_))),
            "dropped silently"
        );
        relayed += fanned_out(&effects).len();
    }
    assert_eq!(relayed, 1, "ten notices within a second: one relay");
    let later = room.with(|r| r.client_text(&mut alice, typing, T0 + TYPING_INTERVAL_MS));
    assert_eq!(
        fanned_out(&later).len(),
        1,
        "two seconds on, the next one goes"
    );
    // The throttle is per user: bob's first notice goes at once.
    let mut bob = member();
    bob.user = "bob".into();
    bob.id = "b1".into();
    let effects = room.with(|r| r.client_text(&mut bob, typing, T0 + 1));
    assert!(matches!(
        fanned_out(&effects)[..],
        [ServerFrame::Typing { ref user }] if user == "bob"
    ));
}

#[test]
fn rule_4_fanout_reaches_only_shards_holding_sockets_however_much_churn() {
    let size = 2;
    let limits = Limits {
        room_shard_size: size,
        ..Limits::default()
    };
    let mut room = RoomFixture::new(limits);
    for i in 0..size {
        room.join_here(&format!("root{i}"), &format!("r{i}"), T0);
    }
    let mut next = 0;
    for round in 0..50u64 {
        // A crowd arrives on shards, then most of it leaves again.
        let crowd: Vec<String> = (0..(round % 7) + 1)
            .map(|_| {
                next += 1;
                let session = format!("s{next}");
                room.join_shard(&format!("u{next}"), &session, T0);
                session
            })
            .collect();
        let sockets = size as usize + room.store.remote().unwrap().len();
        let bound = sockets.div_ceil(size as usize) + 1;
        assert!(
            room.shards().len() <= bound,
            "round {round}: {:?} for {sockets} sockets",
            room.shards()
        );
        for session in &crowd {
            room.with(|r| r.close(session, T0)).unwrap();
        }
        assert!(
            room.shards().is_empty(),
            "round {round}: empty shards are retired"
        );
    }
    // Numbers are reused: the next crowd starts at shard 1 again.
    assert_eq!(room.join_shard("late", "late", T0).0, 1);
}

#[test]
fn rule_5_presence_rows_a_shard_no_longer_confirms_are_dropped() {
    let limits = Limits {
        room_shard_size: 1,
        idle_timeout_ms: 10_000,
        room_presence_grace_ms: GRACE_MS,
        ..Limits::default()
    };
    let mut room = RoomFixture::new(limits);
    room.join_here("alice", "a1", T0);
    let (bob_shard, _) = room.join_shard("bob", "b1", T0);
    let (carol_shard, _) = room.join_shard("carol", "c1", T0);
    assert_eq!(room.online(), ["alice", "bob", "carol"]);

    // Bob's shard confirms without him (a leave call that failed): he departs with grace.
    room.with(|r| r.sync(bob_shard, &[], T0 + 1_000)).unwrap();
    let announced = announcements(&room.with(|r| r.alarm(&[], T0 + 1_000 + GRACE_MS)).unwrap());
    assert_eq!(announced, ["left bob"]);

    // Carol's shard goes silent (a restart): after the lease her row goes, `left` at once.
    let lease = room.with(|r| r.lease_ms());
    let timers = room.with(|r| r.timers(&[])).unwrap();
    assert_eq!(timers.get(Timer::PresenceLease), Some(T0 + lease));
    let early = room.with(|r| r.alarm(&[], T0 + lease - 1)).unwrap();
    assert!(announcements(&early).is_empty());
    let due = room.with(|r| r.alarm(&[], T0 + lease)).unwrap();
    assert_eq!(announcements(&due), ["left carol"]);
    assert_eq!(
        room.online(),
        ["alice"],
        "everyone listed has a live socket"
    );
    let _ = carol_shard;

    // Quiet now: no shard leases, no departures, so no periodic work.
    let timers = room.with(|r| r.timers(&[])).unwrap();
    assert_eq!(timers.next(), None);

    // A shard that confirms a socket the root lost records it again, announced.
    let back = room
        .with(|r| r.sync(7, &[("d1".into(), "dave".into())], T0 + lease))
        .unwrap();
    assert_eq!(announcements(&back), ["joined dave"]);
    assert_eq!(room.online(), ["alice", "dave"]);
}

#[test]
fn rule_6_history_items_say_who_sent_them() {
    let mut room = RoomFixture::new(Limits::default());
    room.join_here("alice", "a1", T0);
    let (_, effects) = room.with(|r| r.publish(vec![chat("p1")], T0)).unwrap();
    assert!(matches!(
        fanned_out(&effects)[..],
        [ServerFrame::Notification(Notification {
            source: Some(Source::Producer),
            ..
        })]
    ));
    let mut alice = member();
    alice.id = "a1".into();
    let sent = room.with(|r| {
        r.client_text(
            &mut alice,
            r#"{"type":"publish","event":"chat.message","body":"hi"}"#,
            T0,
        )
    });
    assert!(matches!(
        fanned_out(&sent)[..],
        [ServerFrame::Message(Notification {
            source: Some(Source::Member),
            ..
        })]
    ));
    let replay = room.with(|r| r.frame(&alice, r#"{"type":"resume","since":0}"#, T0));
    let sources: Vec<Option<Source>> = replay
        .iter()
        .flat_map(|e| match e {
            RoomEffect::Reply(ServerFrame::Batch { items, .. }) => items.clone(),
            _ => Vec::new(),
        })
        .map(|n| n.source)
        .collect();
    assert_eq!(sources, [Some(Source::Producer), Some(Source::Member)]);
    let json = ServerFrame::Message(
        room.history
            .items(&herald::inbox::Range {
                after: Some(1),
                before: None,
                newest_first: false,
                limit: 1,
                unread_only: false,
                now_ms: T0,
            })
            .unwrap()
            .remove(0),
    )
    .to_json();
    assert!(json.contains(r#""source":"member""#), "{json}");
}

// ---- the broadcast room -------------------------------------------------------------

#[test]
fn the_broadcast_room_is_known_by_its_objects_names_only() {
    assert_eq!(Kind::of_object("broadcast"), Kind::Broadcast);
    assert_eq!(
        Kind::of_object(&shard_object("broadcast", 3)),
        Kind::Broadcast
    );
    assert_eq!(Kind::of_object("broadcasts"), Kind::Project);
    assert_eq!(
        Kind::of_object(&shard_object("project:42", 1)),
        Kind::Project
    );
    assert_eq!(Kind::of_object(""), Kind::Project);
}

#[test]
fn broadcast_listeners_are_shown_no_presence_on_the_root_or_a_shard() {
    let limits = Limits {
        room_shard_size: 1,
        ..Limits::default()
    };
    let mut room = RoomFixture::named("broadcast", limits);
    let Admission::Here {
        frames, effects, ..
    } = room.arrive("alice", "a1", None, T0)
    else {
        panic!("the root keeps the first socket")
    };
    assert!(matches!(frames.as_slice(), [ServerFrame::Welcome { .. }]));
    assert!(effects.is_empty(), "no joined: {effects:?}");
    let (shard, effects) = room.join_shard("bob", "b1", T0);
    assert!(announcements(&effects).is_empty());
    // A shard reporting a socket the root had lost announces nothing either.
    let found = room
        .with(|r| r.sync(shard, &[("b2".into(), "carol".into())], T0))
        .unwrap();
    assert!(announcements(&found).is_empty());
    // Leaving records no departure, so no `left` is ever due.
    room.with(|r| r.close("a1", T0)).unwrap();
    assert!(room.store.departures().unwrap().is_empty());
    let later = T0 + room.limits.room_presence_grace_ms + 1;
    assert!(announcements(&room.with(|r| r.alarm(&[], later)).unwrap()).is_empty());
}

#[test]
fn nothing_a_broadcast_listener_sends_is_relayed_or_stored() {
    let mut room = RoomFixture::named("broadcast", Limits::default());
    let Admission::Here { mut member, .. } = room.arrive("alice", "a1", None, T0) else {
        panic!("kept")
    };
    for text in [
        r#"{"type":"publish","event":"chat.message","body":"hi all"}"#,
        r#"{"type":"typing"}"#,
    ] {
        let effects = room.with(|r| r.client_text(&mut member, text, T0));
        assert!(
            matches!(effects.as_slice(), [RoomEffect::Reply(ServerFrame::Error { code, .. })] if code == "forbidden"),
            "{text}: {effects:?}"
        );
    }
    assert_eq!(room.history.latest_seq().unwrap(), 0);
    // A ping and a resume still work; a producer's broadcast is kept for resume.
    let pong = room.with(|r| r.client_text(&mut member, r#"{"type":"ping"}"#, T0));
    assert_eq!(pong, [RoomEffect::Reply(ServerFrame::Pong)]);
    let (receipts, effects) = room.with(|r| r.publish(vec![chat("ntf_1")], T0)).unwrap();
    assert_eq!(seqs(&receipts), [1]);
    assert_eq!(fanned_out(&effects).len(), 1);
    let replay = room.with(|r| r.client_text(&mut member, r#"{"type":"resume","since":0}"#, T0));
    assert!(replay.len() >= 2, "the broadcast, then synced: {replay:?}");
}
