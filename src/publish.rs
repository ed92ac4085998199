//! A producer's publish request: parsing, validation, grouping by recipient and by room,
//! the drafts filed in room members' inboxes, and the 202's body.
//!
//! Validation is done by hand on a `serde_json::Value` rather than by derived
//! deserialization so that every error names the offending field by its path
//! (`messages[2].event`), which is what a producer debugging a 400 needs.
//! Nothing here stores or sends anything; ids come from a generator the caller passes in.
#![warn(missing_docs)]

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use crate::config::Limits;
use crate::model::{
    check_room, name_rule, valid_event, valid_user_id, Draft, InputError, Priority, Receipt,
    BROADCAST_ROOM, MAX_BODY_LEN, MAX_EVENT_LEN, MAX_ROOM_LEN, MAX_TITLE_LEN,
};

/// Longest `actor`, in characters.
pub const MAX_ACTOR_LEN: usize = 128;

/// Longest `idempotency_key`, in characters.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

const MESSAGE_FIELDS: &[&str] = &[
    "to",
    "event",
    "title",
    "body",
    "data",
    "priority",
    "actor",
    "idempotency_key",
    "ttl_s",
    "inbox",
];

/// A key repeated within one batch is a repeat of the first message, answered with its id
/// and seq; aimed at other recipients it would be answered with an id that some of them
/// never got, so it is refused.
fn same_key_same_target(messages: &[Message]) -> Result<(), InputError> {
    for (i, later) in messages.iter().enumerate() {
        let Some(key) = &later.draft.idempotency_key else {
            continue;
        };
        let first = messages[..i]
            .iter()
            .position(|m| m.draft.idempotency_key.as_ref() == Some(key));
        if let Some(j) = first.filter(|&j| {
            messages[j].recipients != later.recipients || messages[j].room != later.room
        }) {
            return Err(field_error(
                format!("messages[{i}].idempotency_key"),
                format!("repeats the key of messages[{j}], which goes to other recipients"),
            ));
        }
    }
    Ok(())
}

fn field_error(field: impl Into<String>, message: impl Into<String>) -> InputError {
    InputError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// One validated message and who receives it: users (deduplicated, in the order given)
/// or a room.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `to.users`; empty for a room message.
    pub recipients: Vec<String>,
    /// `to.room`.
    pub room: Option<String>,
    /// With a room: also file it in every member's inbox.
    pub inbox: bool,
    /// What gets stored: the content and the message's id.
    pub draft: Draft,
}

/// A validated publish request.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishRequest {
    /// Sent as `{"messages":[…]}`; the answer then lists results in the same order.
    pub batch: bool,
    /// In request order; one for a single-message body.
    pub messages: Vec<Message>,
}

impl PublishRequest {
    /// Parses and validates a request body; `new_id` names each message.
    pub fn parse(
        body: &[u8],
        limits: &Limits,
        mut new_id: impl FnMut() -> String,
    ) -> Result<Self, InputError> {
        if body.len() > limits.max_publish_bytes {
            return Err(InputError::TooLarge {
                size: body.len(),
                limit: limits.max_publish_bytes,
            });
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| InputError::Json(e.to_string()))?;
        let Value::Object(top) = value else {
            return Err(field_error("body", "must be a JSON object"));
        };
        let (batch, messages) = match top.get("messages") {
            Some(Value::Array(items)) => {
                // A message's fields beside `messages` would otherwise be silently dropped.
                if let Some(stray) = top.keys().find(|k| *k != "messages") {
                    return Err(field_error(stray.as_str(), "unknown field in a batch body"));
                }
                if items.is_empty() || items.len() > limits.max_batch_messages {
                    return Err(field_error(
                        "messages",
                        format!("must hold 1 to {} messages", limits.max_batch_messages),
                    ));
                }
                let parsed = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        parse_message(item, &format!("messages[{i}]."), limits, new_id())
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                same_key_same_target(&parsed)?;
                (true, parsed)
            }
            Some(_) => return Err(field_error("messages", "must be an array")),
            None => (
                false,
                vec![parse_message(&Value::Object(top), "", limits, new_id())?],
            ),
        };
        let request = Self { batch, messages };
        let recipients = request.by_recipient().len();
        if recipients > limits.max_recipients {
            return Err(field_error(
                "to.users",
                format!(
                    "{recipients} distinct recipients; one request may reach at most {}",
                    limits.max_recipients
                ),
            ));
        }
        Ok(request)
    }

    /// The drafts each recipient gets, in publish order; one entry per distinct user, so
    /// one call to each hub stores all of that user's messages in order.
    pub fn by_recipient(&self) -> Vec<(&str, Vec<&Draft>)> {
        let mut groups: Vec<(&str, Vec<&Draft>)> = Vec::new();
        let mut index = HashMap::new();
        for message in &self.messages {
            for user in &message.recipients {
                let slot = *index.entry(user.as_str()).or_insert_with(|| {
                    groups.push((user.as_str(), Vec::new()));
                    groups.len() - 1
                });
                groups[slot].1.push(&message.draft);
            }
        }
        groups
    }

    /// The room messages by room, in publish order: one call to each room stores all of
    /// that room's messages in order.
    pub fn by_room(&self) -> Vec<(&str, Vec<&Message>)> {
        let mut groups: Vec<(&str, Vec<&Message>)> = Vec::new();
        for message in &self.messages {
            let Some(room) = message.room.as_deref() else {
                continue;
            };
            match groups.iter_mut().find(|(r, _)| *r == room) {
                Some((_, list)) => list.push(message),
                None => groups.push((room, vec![message])),
            }
        }
        groups
    }

    /// Whether a message goes to everyone (`to.broadcast`), which needs more than the
    /// right to publish: see [`crate::access::may_broadcast`].
    pub fn broadcasts(&self) -> bool {
        self.messages
            .iter()
            .any(|m| m.room.as_deref() == Some(BROADCAST_ROOM))
    }

    /// The rooms whose members `inbox:true` messages are filed for, each once.
    pub fn filed_rooms(&self) -> Vec<&str> {
        let mut rooms: Vec<&str> = Vec::new();
        for m in self.messages.iter().filter(|m| m.inbox) {
            if let Some(room) = m.room.as_deref().filter(|r| !rooms.contains(r)) {
                rooms.push(room);
            }
        }
        rooms
    }

    /// Checked before anything is stored: the distinct users the request reaches, its
    /// `to.users` and the members of every room it files for (`members`, by room), are at
    /// most `MAX_RECIPIENTS`. Each is a call into a user object.
    pub fn check_reach(
        &self,
        members: &HashMap<String, Vec<String>>,
        limits: &Limits,
    ) -> Result<(), InputError> {
        let mut reached: HashSet<&str> = self
            .messages
            .iter()
            .flat_map(|m| m.recipients.iter().map(String::as_str))
            .collect();
        for room in self.filed_rooms() {
            reached.extend(members.get(room).into_iter().flatten().map(String::as_str));
        }
        if reached.len() > limits.max_recipients {
            return Err(field_error(
                "to",
                format!(
                    "{} distinct recipients, room members' inboxes included; one request may \
                     reach at most {} (MAX_RECIPIENTS)",
                    reached.len(),
                    limits.max_recipients
                ),
            ));
        }
        Ok(())
    }

    /// What each member's inbox gets for the `inbox:true` messages whose room stored them
    /// (`rooms`: the room's receipt by draft id): one entry per member, in publish order,
    /// each filed draft beside the id of the message it files.
    pub fn filings(
        &self,
        members: &HashMap<String, Vec<String>>,
        rooms: &HashMap<&str, Receipt>,
    ) -> Vec<(String, Vec<(&str, Draft)>)> {
        let mut groups: Vec<(String, Vec<(&str, Draft)>)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for m in self.messages.iter().filter(|m| m.inbox) {
            let id = m.draft.id.as_str();
            let (Some(room), Some(stored)) = (m.room.as_deref(), rooms.get(id)) else {
                continue;
            };
            let filed = m.filing(room, stored);
            for member in members.get(room).into_iter().flatten() {
                let slot = *index.entry(member.as_str()).or_insert_with(|| {
                    groups.push((member.clone(), Vec::new()));
                    groups.len() - 1
                });
                groups[slot].1.push((id, filed.clone()));
            }
        }
        groups
    }

    /// The answer: per message, its id and each recipient's seq (or the room's seq and
    /// how many members it was filed for), a batch as `{"messages":[…]}` in request
    /// order. A target that was not stored is listed with `"stored":false`, and the
    /// answer is then not complete: a 503 carrying it, which a retry with the same
    /// idempotency keys completes. `members` are the rooms' member lists it was filed for.
    pub fn answer(
        &self,
        receipts: &Receipts<'_>,
        members: &HashMap<String, Vec<String>>,
    ) -> Answer {
        let mut complete = true;
        let mut results = Vec::with_capacity(self.messages.len());
        for m in &self.messages {
            let id = m.draft.id.as_str();
            if let Some(room) = &m.room {
                let Some(receipt) = receipts.rooms.get(id) else {
                    complete = false;
                    results.push(json!({ "id": id, "room": room, "stored": false }));
                    continue;
                };
                let mut result = json!({ "id": receipt.id, "room": room, "seq": receipt.seq });
                if receipt.duplicate {
                    result["duplicate"] = true.into();
                }
                if m.inbox {
                    let filed = receipts.filed.get(id).copied().unwrap_or_default();
                    complete &= filed == members.get(room.as_str()).map_or(0, Vec::len);
                    result["inbox"] = json!({ "members": filed });
                }
                results.push(result);
                continue;
            }
            let mut first_id = None;
            let mut recipients = Vec::with_capacity(m.recipients.len());
            for user in &m.recipients {
                let Some(receipt) = receipts.users.get(&(id, user.as_str())) else {
                    complete = false;
                    recipients.push(json!({ "user": user, "stored": false }));
                    continue;
                };
                // A repeated idempotency key answers with the id first stored.
                first_id.get_or_insert_with(|| receipt.id.clone());
                let mut recipient = json!({ "user": user, "seq": receipt.seq });
                if receipt.duplicate {
                    recipient["duplicate"] = true.into();
                }
                recipients.push(recipient);
            }
            let id = first_id.unwrap_or_else(|| id.to_owned());
            results.push(json!({ "id": id, "recipients": recipients }));
        }
        let body = match self.batch {
            true => json!({ "messages": results }),
            false => results.into_iter().next().unwrap_or_default(),
        };
        Answer { body, complete }
    }
}

/// What a publish answers: the body, and whether every target was stored (a 202) or not
/// (a 503 carrying the body as what was stored).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// In the 202's shape.
    pub body: Value,
    /// Every room, recipient and member filing stored.
    pub complete: bool,
}

impl Message {
    /// The draft filed in a member's inbox for this `inbox:true` room message, which the
    /// room stored as `stored`. It is keyed by the room's id for the message, so a retry
    /// (of this request, or the producer's with its idempotency key) files it once.
    pub fn filing(&self, room: &str, stored: &Receipt) -> Draft {
        Draft {
            id: stored.id.clone(),
            idempotency_key: Some(format!("room:{room}:{}", stored.id)),
            ..self.draft.clone()
        }
    }
}

/// What storing a request answered, by draft id: each room message's receipt, how many
/// of its members it was filed for, and each user message's receipt per recipient. A
/// target that failed has no entry.
#[derive(Debug, Default)]
pub struct Receipts<'a> {
    /// Room messages: the room's receipt.
    pub rooms: HashMap<&'a str, Receipt>,
    /// `inbox:true` room messages: how many members it was filed for.
    pub filed: HashMap<&'a str, usize>,
    /// User messages: the receipt of each (draft id, recipient).
    pub users: HashMap<(&'a str, &'a str), Receipt>,
}

fn parse_message(
    value: &Value,
    path: &str,
    limits: &Limits,
    id: String,
) -> Result<Message, InputError> {
    let Value::Object(fields) = value else {
        return Err(field_error(
            path.trim_end_matches('.'),
            "must be a JSON object",
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !MESSAGE_FIELDS.contains(&k.as_str()))
    {
        return Err(field_error(format!("{path}{unknown}"), "unknown field"));
    }
    let (recipients, room) = parse_target(fields.get("to"), path, limits)?;
    let inbox = match fields.get("inbox") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) if room.as_deref() == Some(BROADCAST_ROOM) => {
            return Err(field_error(
                format!("{path}inbox"),
                "a broadcast is kept in the broadcast history, not filed in every inbox",
            ))
        }
        Some(Value::Bool(true)) if room.is_some() => true,
        Some(Value::Bool(true)) => {
            return Err(field_error(
                format!("{path}inbox"),
                "only a room message can be filed in its members' inboxes",
            ))
        }
        Some(_) => return Err(field_error(format!("{path}inbox"), "must be true or false")),
    };
    let event = match fields.get("event") {
        Some(Value::String(e)) if valid_event(e) => e.clone(),
        Some(_) => {
            return Err(field_error(
                format!("{path}event"),
                name_rule(MAX_EVENT_LEN),
            ))
        }
        None => return Err(field_error(format!("{path}event"), "required")),
    };
    let priority = match fields.get("priority") {
        None | Some(Value::Null) => Priority::default(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            field_error(
                format!("{path}priority"),
                "must be one of low, normal, high, urgent",
            )
        })?,
    };
    let message = Message {
        recipients,
        inbox,
        draft: Draft {
            id,
            event,
            title: optional_text(fields, path, "title", MAX_TITLE_LEN)?,
            body: optional_text(fields, path, "body", MAX_BODY_LEN)?,
            data: fields.get("data").filter(|d| !d.is_null()).cloned(),
            priority,
            actor: optional_text(fields, path, "actor", MAX_ACTOR_LEN)?,
            idempotency_key: match optional_text(
                fields,
                path,
                "idempotency_key",
                MAX_IDEMPOTENCY_KEY_LEN,
            )? {
                Some(key) if key.is_empty() || key.chars().any(char::is_control) => {
                    return Err(field_error(
                        format!("{path}idempotency_key"),
                        "must be 1 to 128 printable characters",
                    ))
                }
                key => key,
            },
            ttl_s: parse_ttl(fields.get("ttl_s"), path, limits)?,
            room: room.clone(),
        },
        room,
    };
    let size = message.draft.stored_size();
    if size > limits.max_notification_bytes {
        return Err(InputError::ItemTooLarge {
            field: match path.trim_end_matches('.') {
                "" => "message".to_owned(),
                path => path.to_owned(),
            },
            size,
            limit: limits.max_notification_bytes,
        });
    }
    Ok(message)
}

/// `to`: `{"users":[…]}`, `{"room":"…"}` or `{"broadcast":true}` (the reserved room
/// [`BROADCAST_ROOM`], which only a producer key may reach: see
/// [`PublishRequest::broadcasts`]).
fn parse_target(
    to: Option<&Value>,
    path: &str,
    limits: &Limits,
) -> Result<(Vec<String>, Option<String>), InputError> {
    let field = format!("{path}to");
    let Some(Value::Object(to)) = to else {
        return Err(field_error(
            field,
            "required: {\"users\":[…]}, {\"room\":\"…\"} or {\"broadcast\":true}",
        ));
    };
    if let Some(unknown) = to
        .keys()
        .find(|k| !["users", "room", "broadcast"].contains(&k.as_str()))
    {
        return Err(field_error(format!("{field}.{unknown}"), "unknown field"));
    }
    if to.len() > 1 {
        return Err(field_error(field, "give one of users, room or broadcast"));
    }
    match (to.get("users"), to.get("room"), to.get("broadcast")) {
        (_, _, Some(Value::Bool(true))) => Ok((Vec::new(), Some(BROADCAST_ROOM.to_owned()))),
        (_, _, Some(_)) => Err(field_error(format!("{field}.broadcast"), "must be true")),
        (_, Some(Value::String(room)), _) => {
            let room = check_room(&format!("{field}.room"), room)?;
            Ok((Vec::new(), Some(room.to_owned())))
        }
        (_, Some(_), _) => Err(field_error(
            format!("{field}.room"),
            name_rule(MAX_ROOM_LEN),
        )),
        (users, None, None) => Ok((parse_users(users, &field, limits)?, None)),
    }
}

fn parse_users(
    users: Option<&Value>,
    field: &str,
    limits: &Limits,
) -> Result<Vec<String>, InputError> {
    let users_field = format!("{field}.users");
    let Some(Value::Array(users)) = users else {
        return Err(field_error(users_field, "required: an array of user ids"));
    };
    // Checked before deduplication so that an oversized list costs nothing to refuse.
    if users.is_empty() || users.len() > limits.max_recipients {
        return Err(field_error(
            users_field,
            format!("must name 1 to {} users", limits.max_recipients),
        ));
    }
    let mut seen = HashSet::with_capacity(users.len());
    let mut recipients = Vec::with_capacity(users.len());
    for (i, user) in users.iter().enumerate() {
        match user {
            Value::String(u) if valid_user_id(u) => {
                if seen.insert(u.as_str()) {
                    recipients.push(u.clone());
                }
            }
            _ => {
                return Err(field_error(
                    format!("{users_field}[{i}]"),
                    "must be a user id: 1 to 128 printable characters",
                ))
            }
        }
    }
    Ok(recipients)
}

fn parse_ttl(
    value: Option<&Value>,
    path: &str,
    limits: &Limits,
) -> Result<Option<u64>, InputError> {
    let max_s = limits.inbox_max_age_ms / 1000;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(ttl) if (1..=max_s).contains(&ttl) => Ok(Some(ttl)),
            _ => Err(field_error(
                format!("{path}ttl_s"),
                format!("must be a whole number of seconds from 1 to {max_s}"),
            )),
        },
    }
}

fn optional_text(
    fields: &Map<String, Value>,
    path: &str,
    name: &str,
    max_chars: usize,
) -> Result<Option<String>, InputError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max_chars => Ok(Some(s.clone())),
        Some(_) => Err(field_error(
            format!("{path}{name}"),
            format!("must be a string of at most {max_chars} characters"),
        )),
    }
}
