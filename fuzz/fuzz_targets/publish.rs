//! A `POST /v1/publish` body, through [`PublishRequest::parse`] as the Worker calls it.
//!
//! Each body is parsed twice: under the default limits, and under tight ones (a few
//! messages and recipients, a small body) that a short input can run into. Beyond "no
//! panic", an accepted request must respect every documented bound, checked here by an
//! oracle written apart from the parser: 1 to `max_batch_messages` messages (exactly one
//! without `messages`), at most `max_recipients` distinct users, valid and deduplicated
//! user ids, a valid room or event name, text fields within their lengths, a TTL within
//! the retention period, and a distinct id per message. A body the tight limits accept
//! must parse the same under the looser defaults.

#![no_main]

use herald::config::Limits;
use herald::error::ApiError;
use herald::model::{valid_room, valid_user_id, MAX_BODY_LEN, MAX_TITLE_LEN};
use herald::publish::{PublishRequest, MAX_ACTOR_LEN, MAX_IDEMPOTENCY_KEY_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let tight = Limits {
        max_publish_bytes: 2_048,
        max_batch_messages: 3,
        max_recipients: 4,
        ..Limits::default()
    };
    let loose = parse(body, &Limits::default());
    if let Some(request) = parse(body, &tight) {
        assert_eq!(
            loose,
            Some(request),
            "the tight limits accepted what the defaults refuse"
        );
    }
});

/// Parses as the Worker does, with ids `ntf_0`, `ntf_1`, … and checks the outcome.
fn parse(body: &[u8], limits: &Limits) -> Option<PublishRequest> {
    let mut minted = 0_usize;
    let request = match PublishRequest::parse(body, limits, || {
        minted += 1;
        format!("ntf_{}", minted - 1)
    }) {
        Ok(request) => request,
        Err(e) => {
            // The one place errors become answers must cope with whatever the message says.
            let answer = ApiError::from(e);
            assert!(matches!(answer.status, 400 | 413), "{answer:?}");
            answer.body();
            return None;
        }
    };
    assert!(body.len() <= limits.max_publish_bytes);
    check(&request, limits, minted);
    Some(request)
}

fn check(request: &PublishRequest, limits: &Limits, minted: usize) {
    let count = request.messages.len();
    assert!(
        (1..=limits.max_batch_messages).contains(&count),
        "{count} messages"
    );
    assert!(request.batch || count == 1);
    assert_eq!(minted, count, "one id per message");
    let recipients = request.by_recipient();
    assert!(recipients.len() <= limits.max_recipients);
    let delivered: usize = recipients.iter().map(|(_, drafts)| drafts.len()).sum();
    let addressed: usize = request.messages.iter().map(|m| m.recipients.len()).sum();
    assert_eq!(
        delivered, addressed,
        "every recipient gets each of its messages once"
    );
    let max_ttl = limits.inbox_max_age_ms / 1000;
    for (i, message) in request.messages.iter().enumerate() {
        let draft = &message.draft;
        assert_eq!(draft.id, format!("ntf_{i}"));
        match &message.room {
            Some(room) => {
                assert!(valid_room(room), "{room:?}");
                assert!(message.recipients.is_empty());
                assert_eq!(draft.room.as_ref(), Some(room));
            }
            None => {
                assert!(!message.inbox, "inbox without a room");
                assert!(!message.recipients.is_empty());
                assert!(draft.room.is_none());
            }
        }
        for (j, user) in message.recipients.iter().enumerate() {
            assert!(valid_user_id(user), "{user:?}");
            assert!(!message.recipients[..j].contains(user), "{user:?} twice");
        }
        assert!(valid_event(&draft.event), "{:?}", draft.event);
        assert!(chars(&draft.title) <= MAX_TITLE_LEN);
        assert!(chars(&draft.body) <= MAX_BODY_LEN);
        assert!(chars(&draft.actor) <= MAX_ACTOR_LEN);
        if let Some(key) = &draft.idempotency_key {
            assert!(!key.is_empty() && key.chars().count() <= MAX_IDEMPOTENCY_KEY_LEN);
            assert!(!key.chars().any(char::is_control), "{key:?}");
        }
        assert!(draft.ttl_s.is_none_or(|ttl| (1..=max_ttl).contains(&ttl)));
        assert!(draft.data.as_ref().is_none_or(|d| !d.is_null()));
        // The Worker sends drafts to each hub as JSON.
        serde_json::to_vec(draft).expect("drafts serialize");
    }
}

fn chars(text: &Option<String>) -> usize {
    text.as_deref().map_or(0, |t| t.chars().count())
}

/// An event name: 1 to 128 of `A–Z a–z 0–9 . _ : -`, written out again here so that the
/// target checks the parser instead of agreeing with it.
fn valid_event(event: &str) -> bool {
    (1..=128).contains(&event.len())
        && event
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}
