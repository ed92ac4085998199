//! Publish request parsing: what producers may send, and the field paths they are told
//! about when they get it wrong.

use herald::config::Limits;
use herald::model::{InputError, Priority, Receipt};
use herald::publish::{PublishRequest, Receipts};
use std::collections::HashMap;

use serde_json::{json, Value};

// ---- helpers ------------------------------------------------------------------------

/// Parses with `limits` and ids `ntf_1`, `ntf_2`, … in call order.
fn parse_with(body: &[u8], limits: &Limits) -> Result<PublishRequest, InputError> {
    let mut n = 0;
    PublishRequest::parse(body, limits, || {
        n += 1;
        format!("ntf_{n}")
    })
}

fn parse(body: &Value) -> Result<PublishRequest, InputError> {
    parse_with(body.to_string().as_bytes(), &Limits::default())
}

/// A minimal valid message.
fn message(event: &str, users: &[&str]) -> Value {
    json!({ "to": { "users": users }, "event": event })
}

fn batch(messages: Vec<Value>) -> Value {
    json!({ "messages": messages })
}

/// `n` valid messages with events `e0`, `e1`, ….
fn numbered(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| message(&format!("e{i}"), &["alice"]))
        .collect()
}

/// Asserts that `body` is refused for `field`, and that the text a producer reads (the
/// error's Display) names that field too.
fn assert_field_error(body: &Value, field: &str) {
    let error = parse(body).expect_err(&format!("{body} was accepted; expected {field}"));
    let InputError::Field { field: got, .. } = &error else {
        panic!("expected an error for {field}, got {error:?} for body {body}");
    };
    assert_eq!(got, field, "for body {body}");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("{field}: ")),
        "{text:?} does not name {field}"
    );
}

fn events(request: &PublishRequest) -> Vec<&str> {
    request
        .messages
        .iter()
        .map(|m| m.draft.event.as_str())
        .collect()
}

// ---- accepted requests --------------------------------------------------------------

#[test]
fn a_single_message_is_accepted_with_every_field() {
    let body = json!({
        "to": { "users": ["alice"] },
        "event": "task.updated",
        "title": "Task 7 moved",
        "body": "Bob moved it to Done",
        "data": { "task": 7 },
        "priority": "high",
        "actor": "bob",
    });
    let request = parse(&body).unwrap();
    assert!(!request.batch);
    assert_eq!(request.messages.len(), 1);
    let message = &request.messages[0];
    assert_eq!(message.recipients, ["alice"]);
    let draft = &message.draft;
    assert_eq!(draft.id, "ntf_1");
    assert_eq!(draft.event, "task.updated");
    assert_eq!(draft.title.as_deref(), Some("Task 7 moved"));
    assert_eq!(draft.body.as_deref(), Some("Bob moved it to Done"));
    assert_eq!(draft.data, Some(json!({ "task": 7 })));
    assert_eq!(draft.priority, Priority::High);
    assert_eq!(draft.actor.as_deref(), Some("bob"));
}

#[test]
fn optional_fields_default() {
    let request = parse(&message("task.updated", &["alice"])).unwrap();
    let draft = &request.messages[0].draft;
    assert_eq!(draft.priority, Priority::Normal);
    assert_eq!(
        (&draft.title, &draft.body, &draft.data, &draft.actor),
        (&None, &None, &None, &None)
    );
}

#[test]
fn a_batch_keeps_its_order_and_names_each_message() {
    let request = parse(&batch(numbered(3))).unwrap();
    assert!(request.batch);
    assert_eq!(events(&request), ["e0", "e1", "e2"]);
    let ids: Vec<&str> = request
        .messages
        .iter()
        .map(|m| m.draft.id.as_str())
        .collect();
    assert_eq!(ids, ["ntf_1", "ntf_2", "ntf_3"]);
}

#[test]
fn a_batch_may_hold_up_to_the_limit() {
    let request = parse(&batch(numbered(100))).unwrap();
    assert_eq!(request.messages.len(), 100);
}

// ---- whole-body errors --------------------------------------------------------------

#[test]
fn a_batch_over_the_limit_or_empty_is_refused() {
    assert_field_error(&batch(numbered(101)), "messages");
    assert_field_error(&batch(vec![]), "messages");
    assert_field_error(&json!({ "messages": {} }), "messages");
}

#[test]
fn a_body_over_the_size_limit_is_too_large() {
    let limits = Limits::default();
    let limit = limits.max_publish_bytes;
    // Valid JSON padded with whitespace, so only the size can be the problem.
    let padded = |size: usize| {
        let mut body = message("e", &["alice"]).to_string().into_bytes();
        body.resize(size, b' ');
        body
    };
    assert!(parse_with(&padded(limit), &limits).is_ok());
    assert_eq!(
        parse_with(&padded(limit + 1), &limits),
        Err(InputError::TooLarge {
            size: limit + 1,
            limit
        })
    );
}

#[test]
fn each_notification_is_bounded_by_its_stored_size() {
    let limit = Limits::default().max_notification_bytes;
    assert_eq!(limit, 16 * 1024);
    // `data` of a length that makes event ("e") + data (as JSON, with its quotes) exact.
    let sized = |total: usize| {
        let mut m = message("e", &["alice"]);
        m["data"] = json!("x".repeat(total - 1 - 2));
        m
    };
    assert!(parse(&sized(limit)).is_ok());
    assert_eq!(
        parse(&sized(limit + 1)),
        Err(InputError::ItemTooLarge {
            field: "message".into(),
            size: limit + 1,
            limit
        })
    );
    // In a batch, the message is named by index, and nothing of the batch is accepted.
    let err = parse(&batch(vec![message("a", &["bob"]), sized(limit + 1)])).unwrap_err();
    assert!(matches!(&err, InputError::ItemTooLarge { field, .. } if field == "messages[1]"));
    let api = herald::error::ApiError::from(err);
    assert_eq!((api.status, api.code), (413, "payload_too_large"));
    assert!(api.message.starts_with("messages[1]: "), "{}", api.message);
    // Title, body and actor count too.
    let mut texts = message("e", &["alice"]);
    texts["title"] = json!("t".repeat(200));
    texts["body"] = json!("b".repeat(4_000));
    texts["data"] = json!({ "blob": "d".repeat(limit - 4_200) });
    assert!(matches!(
        parse(&texts),
        Err(InputError::ItemTooLarge { .. })
    ));
}

#[test]
fn invalid_json_is_refused() {
    for body in [&b"{"[..], b"", b"not json", b"{\"event\": }"] {
        let result = parse_with(body, &Limits::default());
        assert!(
            matches!(result, Err(InputError::Json(_))),
            "{body:?} gave {result:?}"
        );
    }
}

#[test]
fn a_body_that_is_not_an_object_is_refused() {
    assert_field_error(&json!([message("e", &["alice"])]), "body");
    assert_field_error(&json!("hello"), "body");
}

// ---- message fields -----------------------------------------------------------------

#[test]
fn event_is_required_and_checked() {
    assert_field_error(&json!({ "to": { "users": ["alice"] } }), "event");
    for bad in [
        json!(""),
        json!("has space"),
        json!(7),
        json!("x".repeat(129)),
    ] {
        let body = json!({ "to": { "users": ["alice"] }, "event": bad });
        assert_field_error(&body, "event");
    }
}

#[test]
fn errors_in_a_batch_name_the_message_by_index() {
    let mut messages = numbered(4);
    messages[2]["event"] = json!("not an event!");
    assert_field_error(&batch(messages), "messages[2].event");
}

#[test]
fn priority_must_be_a_known_level() {
    for bad in [json!("critical"), json!("HIGH"), json!(3)] {
        let body = json!({ "to": { "users": ["alice"] }, "event": "e", "priority": bad });
        assert_field_error(&body, "priority");
    }
    let mut messages = numbered(2);
    messages[1]["priority"] = json!("loud");
    assert_field_error(&batch(messages), "messages[1].priority");
}

#[test]
fn unknown_fields_are_named() {
    let mut body = message("e", &["alice"]);
    body["colour"] = json!("red");
    assert_field_error(&body, "colour");

    let mut messages = numbered(2);
    messages[1]["urgency"] = json!(1);
    assert_field_error(&batch(messages), "messages[1].urgency");
}

#[test]
fn text_fields_are_bounded() {
    let cases = [("title", 256), ("body", 4096), ("actor", 128)];
    for (field, max) in cases {
        let mut body = message("e", &["alice"]);
        body[field] = json!("é".repeat(max));
        assert!(parse(&body).is_ok(), "{field} of {max} characters refused");
        body[field] = json!("é".repeat(max + 1));
        assert_field_error(&body, field);
        body[field] = json!(42);
        assert_field_error(&body, field);
    }
}

// ---- recipients ---------------------------------------------------------------------

#[test]
fn to_and_to_users_are_required() {
    assert_field_error(&json!({ "event": "e" }), "to");
    assert_field_error(&json!({ "to": "alice", "event": "e" }), "to");
    assert_field_error(&json!({ "to": {}, "event": "e" }), "to.users");
    assert_field_error(
        &json!({ "to": { "users": "alice" }, "event": "e" }),
        "to.users",
    );
    assert_field_error(&message("e", &[]), "to.users");
}

#[test]
fn each_user_must_be_a_usable_id() {
    let too_long = "u".repeat(129);
    let cases = [
        (json!(["alice", 7]), "to.users[1]"),
        (json!(["alice", "bob", ""]), "to.users[2]"),
        (json!([null]), "to.users[0]"),
        (json!([too_long]), "to.users[0]"),
        (json!(["tab\there"]), "to.users[0]"),
    ];
    for (users, field) in cases {
        assert_field_error(&json!({ "to": { "users": users }, "event": "e" }), field);
    }
    assert!(parse(&message("e", &[&"u".repeat(128)])).is_ok());

    let mut messages = numbered(2);
    messages[1]["to"]["users"] = json!([""]);
    assert_field_error(&batch(messages), "messages[1].to.users[0]");
}

#[test]
fn a_room_target_is_validated_and_carried_on_the_draft() {
    let parsed = parse(&json!({ "to": { "room": "project:42" }, "event": "e" })).unwrap();
    let m = &parsed.messages[0];
    assert_eq!(m.room.as_deref(), Some("project:42"));
    assert_eq!(m.draft.room.as_deref(), Some("project:42"));
    assert!(m.recipients.is_empty());
    assert!(
        parsed.by_recipient().is_empty(),
        "rooms have no user recipients"
    );
    assert_field_error(&json!({ "to": { "room": "a/b" }, "event": "e" }), "to.room");
    assert_field_error(
        &json!({ "to": { "room": "r", "users": ["a"] }, "event": "e" }),
        "to",
    );
}

#[test]
fn a_broadcast_goes_to_the_reserved_room_and_nowhere_else() {
    let parsed = parse(&json!({ "to": { "broadcast": true }, "event": "maintenance" })).unwrap();
    assert!(parsed.broadcasts());
    let m = &parsed.messages[0];
    assert_eq!(m.room.as_deref(), Some(herald::model::BROADCAST_ROOM));
    assert!(m.recipients.is_empty());
    assert!(!parse(&message("e", &["alice"])).unwrap().broadcasts());
    // Only `true`, alone, and never filed in inboxes.
    assert_field_error(
        &json!({ "to": { "broadcast": false }, "event": "e" }),
        "to.broadcast",
    );
    assert_field_error(
        &json!({ "to": { "broadcast": true, "users": ["a"] }, "event": "e" }),
        "to",
    );
    assert_field_error(
        &json!({ "to": { "broadcast": true }, "event": "e", "inbox": true }),
        "inbox",
    );
}

#[test]
fn the_broadcast_room_cannot_be_named_as_a_room() {
    let body = json!({ "to": { "room": "broadcast" }, "event": "e" });
    assert_field_error(&body, "to.room");
    let text = parse(&body).unwrap_err().to_string();
    assert!(text.contains("reserved"), "{text}");
    let batch = batch(vec![message("e", &["alice"]), body]);
    assert_field_error(&batch, "messages[1].to.room");
}

#[test]
fn duplicate_recipients_are_dropped_keeping_first_order() {
    let request = parse(&message("e", &["bob", "alice", "bob", "alice"])).unwrap();
    assert_eq!(request.messages[0].recipients, ["bob", "alice"]);
}

#[test]
fn by_recipient_groups_drafts_per_user_in_publish_order() {
    let request = parse(&batch(vec![
        message("A", &["alice", "bob"]),
        message("B", &["bob"]),
        message("C", &["carol", "alice"]),
    ]))
    .unwrap();
    let groups: Vec<(&str, Vec<&str>)> = request
        .by_recipient()
        .into_iter()
        .map(|(user, drafts)| (user, drafts.iter().map(|d| d.event.as_str()).collect()))
        .collect();
    assert_eq!(
        groups,
        [
            ("alice", vec!["A", "C"]),
            ("bob", vec!["A", "B"]),
            ("carol", vec!["C"]),
        ]
    );
}

#[test]
fn distinct_recipients_across_a_batch_are_capped() {
    let limits = Limits {
        max_recipients: 3,
        ..Limits::default()
    };
    let parse_small = |body: Value| parse_with(body.to_string().as_bytes(), &limits);

    // Three distinct users, however often they repeat, are within the cap.
    let within = batch(vec![
        message("A", &["alice", "bob"]),
        message("B", &["bob", "carol", "alice"]),
    ]);
    assert!(parse_small(within).is_ok());

    let over = batch(vec![
        message("A", &["alice", "bob"]),
        message("B", &["carol", "dave"]),
    ]);
    match parse_small(over) {
        Err(InputError::Field { field, message }) => {
            assert_eq!(field, "to.users");
            assert!(message.contains('4') && message.contains('3'), "{message}");
        }
        other => panic!("expected the recipient cap, got {other:?}"),
    }
}

#[test]
fn a_batch_body_refuses_fields_beside_messages() {
    // Otherwise the top-level message to `b` would be dropped without a word.
    let mut body = batch(numbered(1));
    body["to"] = json!({ "users": ["b"] });
    assert_field_error(&body, "to");
}

#[test]
fn unknown_keys_inside_to_are_refused() {
    assert_field_error(
        &json!({ "to": { "users": ["a"], "usrs": ["b"] }, "event": "e" }),
        "to.usrs",
    );
}

#[test]
fn inbox_filing_is_only_for_room_messages() {
    let mut to_users = message("e", &["a"]);
    to_users["inbox"] = json!(true);
    assert_field_error(&to_users, "inbox");
    let mut not_bool = json!({ "to": { "room": "project:42" }, "event": "e" });
    not_bool["inbox"] = json!("yes");
    assert_field_error(&not_bool, "inbox");
    not_bool["inbox"] = json!(true);
    let parsed = parse(&not_bool).unwrap();
    assert!(parsed.messages[0].inbox);
}

#[test]
fn an_oversized_user_list_is_refused_on_length_before_deduplication() {
    let limits = Limits {
        max_recipients: 3,
        ..Limits::default()
    };
    let body = message("e", &["a", "a", "a", "a"]);
    let error = parse_with(body.to_string().as_bytes(), &limits).unwrap_err();
    assert!(
        matches!(&error, InputError::Field { field, .. } if field == "to.users"),
        "{error:?}"
    );
}

#[test]
fn a_key_repeated_in_a_batch_must_name_the_same_recipients() {
    let keyed = |users: &[&str]| {
        let mut m = message("task.updated", users);
        m["idempotency_key"] = json!("k-1");
        m
    };
    // The same message twice is a repeat: the hub answers it `duplicate`.
    let request = parse(&batch(vec![keyed(&["ann"]), keyed(&["ann"])])).unwrap();
    assert_eq!(request.messages.len(), 2);
    // Aimed elsewhere, the repeat would be answered with an id bob never got.
    assert_field_error(
        &batch(vec![keyed(&["ann"]), keyed(&["ann", "bob"])]),
        "messages[1].idempotency_key",
    );
}

// ---- grouping by room, filings and the 202's body -------------------------------------

fn receipt(id: &str, seq: u64, duplicate: bool) -> Receipt {
    Receipt {
        id: id.into(),
        seq,
        duplicate,
    }
}

#[test]
fn by_room_groups_room_messages_per_room_in_publish_order() {
    let request = parse(&batch(vec![
        json!({ "to": { "room": "project:1" }, "event": "A" }),
        message("B", &["alice"]),
        json!({ "to": { "room": "project:2" }, "event": "C" }),
        json!({ "to": { "room": "project:1" }, "event": "D" }),
    ]))
    .unwrap();
    let groups: Vec<(&str, Vec<&str>)> = request
        .by_room()
        .into_iter()
        .map(|(room, ms)| (room, ms.iter().map(|m| m.draft.event.as_str()).collect()))
        .collect();
    assert_eq!(
        groups,
        [("project:1", vec!["A", "D"]), ("project:2", vec!["C"])]
    );
}

#[test]
fn a_filing_is_keyed_by_the_room_and_the_rooms_id_so_a_retry_files_once() {
    let request = parse(&json!({ "to": { "room": "project:1" }, "event": "A", "inbox": true, "idempotency_key": "k" })).unwrap();
    let filed = request.messages[0].filing("project:1", &receipt("msg_9", 4, false));
    assert_eq!(filed.id, "msg_9");
    assert_eq!(
        filed.idempotency_key.as_deref(),
        Some("room:project:1:msg_9")
    );
    assert_eq!(filed.event, "A");
}

#[test]
fn the_answer_to_one_message_lists_each_recipients_seq_under_the_first_stored_id() {
    let request = parse(&message("e", &["alice", "bob"])).unwrap();
    let mut receipts = Receipts::default();
    receipts
        .users
        .insert(("ntf_1", "alice"), receipt("ntf_0", 3, true));
    receipts
        .users
        .insert(("ntf_1", "bob"), receipt("ntf_1", 7, false));
    let answer = request.answer(&receipts, &HashMap::new());
    assert!(answer.complete);
    assert_eq!(
        answer.body,
        json!({ "id": "ntf_0", "recipients": [
            { "user": "alice", "seq": 3, "duplicate": true },
            { "user": "bob", "seq": 7 },
        ]})
    );
}

#[test]
fn the_answer_to_a_batch_keeps_request_order_and_says_where_room_messages_were_filed() {
    let request = parse(&batch(vec![
        json!({ "to": { "room": "project:1" }, "event": "A", "inbox": true }),
        message("B", &["alice"]),
        json!({ "to": { "room": "project:1" }, "event": "C" }),
    ]))
    .unwrap();
    let mut receipts = Receipts::default();
    receipts.rooms.insert("ntf_1", receipt("msg_a", 1, false));
    receipts.filed.insert("ntf_1", 12);
    receipts.rooms.insert("ntf_3", receipt("msg_c", 2, true));
    receipts
        .users
        .insert(("ntf_2", "alice"), receipt("ntf_2", 5, false));
    let twelve: Vec<&str> = vec!["m"; 12];
    let answer = request.answer(&receipts, &members(&[("project:1", &twelve)]));
    assert!(answer.complete);
    assert_eq!(
        answer.body,
        json!({ "messages": [
            { "id": "msg_a", "room": "project:1", "seq": 1, "inbox": { "members": 12 } },
            { "id": "ntf_2", "recipients": [{ "user": "alice", "seq": 5 }] },
            { "id": "msg_c", "room": "project:1", "seq": 2, "duplicate": true },
        ]})
    );
}

#[test]
fn a_missing_receipt_makes_a_partial_answer_that_says_what_was_not_stored() {
    let request = parse(&message("e", &["alice", "bob"])).unwrap();
    let mut receipts = Receipts::default();
    receipts
        .users
        .insert(("ntf_1", "alice"), receipt("ntf_1", 1, false));
    let answer = request.answer(&receipts, &HashMap::new());
    assert!(!answer.complete);
    assert_eq!(
        answer.body,
        json!({ "id": "ntf_1", "recipients": [
            { "user": "alice", "seq": 1 },
            { "user": "bob", "stored": false },
        ]})
    );
    // A room stored but a member's filing missing is partial too.
    let filed = parse(&json!({ "to": { "room": "r:1" }, "event": "A", "inbox": true })).unwrap();
    let mut receipts = Receipts::default();
    receipts.rooms.insert("ntf_1", receipt("msg_a", 4, false));
    receipts.filed.insert("ntf_1", 2);
    let three = members(&[("r:1", &["a", "b", "c"])]);
    assert!(!filed.answer(&receipts, &three).complete);
    receipts.filed.insert("ntf_1", 3);
    assert!(filed.answer(&receipts, &three).complete);
    assert!(!filed.answer(&Receipts::default(), &three).complete);
}

fn members(rooms: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
    rooms
        .iter()
        .map(|(room, list)| {
            (
                room.to_string(),
                list.iter().map(|m| m.to_string()).collect(),
            )
        })
        .collect()
}

#[test]
fn room_members_filed_for_count_toward_the_recipient_cap() {
    let limits = Limits {
        max_recipients: 4,
        ..Limits::default()
    };
    let body = batch(vec![
        json!({ "to": { "room": "r:1" }, "event": "A", "inbox": true }),
        json!({ "to": { "room": "r:2" }, "event": "B", "inbox": true }),
        json!({ "to": { "room": "r:3" }, "event": "C" }),
        message("D", &["alice"]),
    ]);
    let request = parse_with(body.to_string().as_bytes(), &limits).unwrap();
    assert_eq!(request.filed_rooms(), vec!["r:1", "r:2"]);
    // alice, bob, carol, dave: four distinct, however they overlap; r:3 files nothing.
    let within = members(&[
        ("r:1", &["alice", "bob"]),
        ("r:2", &["bob", "carol", "dave"]),
        ("r:3", &["x", "y"]),
    ]);
    assert_eq!(request.check_reach(&within, &limits), Ok(()));
    let over = members(&[("r:1", &["bob", "carol"]), ("r:2", &["dave", "erin"])]);
    match request.check_reach(&over, &limits) {
        Err(InputError::Field { field, message }) => {
            assert_eq!(field, "to");
            assert!(
                message.contains('5') && message.contains("at most 4"),
                "{message}"
            );
        }
        other => panic!("expected the recipient cap, got {other:?}"),
    }
}

#[test]
fn filings_give_each_member_one_entry_with_the_drafts_in_publish_order() {
    let request = parse(&batch(vec![
        json!({ "to": { "room": "r:1" }, "event": "A", "inbox": true }),
        json!({ "to": { "room": "r:2" }, "event": "B", "inbox": true }),
        json!({ "to": { "room": "r:1" }, "event": "C", "inbox": true }),
    ]))
    .unwrap();
    let members = members(&[("r:1", &["ann", "bo"]), ("r:2", &["bo"])]);
    let mut rooms = HashMap::new();
    rooms.insert("ntf_1", receipt("msg_a", 1, false));
    rooms.insert("ntf_2", receipt("msg_b", 1, false));
    // ntf_3's room failed: nothing is filed for it.
    let filings = request.filings(&members, &rooms);
    let events = |drafts: &Vec<(&str, herald::model::Draft)>| {
        drafts
            .iter()
            .map(|(_, d)| d.event.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(filings.len(), 2);
    assert_eq!(
        (filings[0].0.as_str(), events(&filings[0].1)),
        ("ann", vec!["A".to_string()])
    );
    assert_eq!(
        (filings[1].0.as_str(), events(&filings[1].1)),
        ("bo", vec!["A".to_string(), "B".to_string()])
    );
    assert_eq!(filings[1].1[1].0, "ntf_2");
    assert_eq!(
        filings[1].1[1].1.idempotency_key.as_deref(),
        Some("room:r:2:msg_b")
    );
}
