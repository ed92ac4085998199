//! Project rooms: who may join, who is present, what members may send, and where a new
//! socket goes when a room outgrows one object.
//!
//! A room's history is an inbox (the same log, seq and replay rules as a user's, run by
//! [`crate::hub::Hub`] with the room's own limits); this module adds only what is
//! particular to rooms. Pure rules over `now`, no IO.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::model::{
    valid_event, valid_user_id, Draft, InputError, Seq, MAX_BODY_LEN, MAX_TITLE_LEN,
};
use crate::socket::FrameBudget;

/// Most members a room's list may hold. Filing a room message in every member's inbox
/// costs one subrequest per member from one Worker request, which the platform bounds.
pub const MAX_MEMBERS: usize = 1_000;

/// Scope a token needs to send `publish` frames into a room.
pub const WRITE_SCOPE: &str = "rooms:write";

/// Whether a token's `rooms` claim grants `room`: an exact name, or `prefix*` for every
/// room that starts with `prefix` (so `project:*` grants `project:42`, not `projects:1`).
pub fn grants(granted: &[String], room: &str) -> bool {
    granted.iter().any(|g| match g.strip_suffix('*') {
        Some(prefix) => room.len() > prefix.len() && room.starts_with(prefix),
        None => g == room,
    })
}

/// A `PUT /v1/rooms/{room}/members` body: `{"members":["alice", …]}`, deduplicated.
pub fn parse_members(body: &[u8]) -> Result<Vec<String>, InputError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        members: Vec<String>,
    }
    let body: Body = serde_json::from_slice(body).map_err(|e| InputError::Json(e.to_string()))?;
    if body.members.len() > MAX_MEMBERS {
        return Err(field("members", "at most 1,000 members"));
    }
    let mut seen = std::collections::HashSet::new();
    let mut members = Vec::with_capacity(body.members.len());
    for (i, member) in body.members.into_iter().enumerate() {
        if !valid_user_id(&member) {
            return Err(field(&format!("members[{i}]"), "must be a user id"));
        }
        if seen.insert(member.clone()) {
            members.push(member);
        }
    }
    Ok(members)
}

/// Per-socket state of a room member, kept in the socket's attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub user: String,
    /// Connection id.
    pub id: String,
    pub room: String,
    /// The token carries `rooms:write`: `publish` frames are allowed.
    pub can_write: bool,
    pub connected_at: u64,
    pub budget: FrameBudget,
    /// The shard object holding the socket; `None` on the room's root object.
    #[serde(default)]
    pub shard: Option<u64>,
}

/// What a member may send besides the literal `ping`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RoomFrame {
    Ping,
    /// A client event (chat message, reaction, edit, delete), stored in history and
    /// relayed as `message`.
    Publish {
        event: String,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        data: Option<serde_json::Value>,
    },
    /// Relayed to the room at once, never stored.
    Typing,
    /// Replay history after `since`.
    Resume {
        since: Seq,
    },
}

fn field(name: &str, message: &str) -> InputError {
    InputError::Field {
        field: name.to_owned(),
        message: message.to_owned(),
    }
}

impl RoomFrame {
    /// The history entry a `publish` frame becomes, with the sender as `actor`.
    pub fn draft(
        member: &Member,
        id: String,
        event: String,
        title: Option<String>,
        body: Option<String>,
        data: Option<serde_json::Value>,
    ) -> Result<Draft, InputError> {
        if !valid_event(&event) {
            return Err(field("event", "must be an event name such as chat.message"));
        }
        if title
            .as_ref()
            .is_some_and(|t| t.chars().count() > MAX_TITLE_LEN)
        {
            return Err(field("title", "too long"));
        }
        if body
            .as_ref()
            .is_some_and(|b| b.chars().count() > MAX_BODY_LEN)
        {
            return Err(field("body", "too long"));
        }
        Ok(Draft {
            id,
            event,
            title,
            body,
            data,
            priority: Default::default(),
            actor: Some(member.user.clone()),
            room: Some(member.room.clone()),
            idempotency_key: None,
            ttl_s: None,
        })
    }
}

/// Presence with a grace period: a user whose last socket closes is announced as `left`
/// only if they have not come back within `grace_ms`, so a quick reconnect does not flap.
pub mod presence {
    /// A socket of `user` joined. Announce `joined` unless the user was already present:
    /// another socket open, or a departure still within its grace period.
    pub fn announce_join(already_online: bool, leaving: bool) -> bool {
        !already_online && !leaving
    }

    /// A socket of `user` closed: when to announce `left`, if the user has no other socket.
    pub fn leave_deadline(still_online: bool, now_ms: u64, grace_ms: u64) -> Option<u64> {
        (!still_online).then_some(now_ms + grace_ms)
    }

    /// Departures whose grace has run out at `now_ms` for users who did not come back.
    pub fn due<'a>(
        leaving: &'a [(String, u64)],
        online: &'a [String],
        now_ms: u64,
    ) -> impl Iterator<Item = &'a str> {
        leaving
            .iter()
            .filter(move |(user, at)| *at <= now_ms && !online.contains(user))
            .map(|(user, _)| user.as_str())
    }
}

/// Who holds a socket on one room object: session id to user. The object rebuilds it
/// from its sockets' attachments once per wake-up and keeps it through joins and leaves,
/// so a join asks it instead of reading every socket (which made joining O(sockets)).
#[derive(Debug, Default, Clone)]
pub struct Roster {
    users_by_session: HashMap<String, String>,
    sessions_by_user: HashMap<String, usize>,
}

impl Roster {
    /// A socket is here. Adding a session twice counts it once.
    pub fn add(&mut self, session: &str, user: &str) {
        if self
            .users_by_session
            .insert(session.to_owned(), user.to_owned())
            .is_none()
        {
            *self.sessions_by_user.entry(user.to_owned()).or_default() += 1;
        }
    }

    /// A socket left; answers whose it was. Removing an unknown session changes nothing.
    pub fn remove(&mut self, session: &str) -> Option<String> {
        let user = self.users_by_session.remove(session)?;
        if let Some(count) = self.sessions_by_user.get_mut(&user) {
            *count -= 1;
            if *count == 0 {
                self.sessions_by_user.remove(&user);
            }
        }
        Some(user)
    }

    pub fn sockets(&self) -> usize {
        self.users_by_session.len()
    }

    /// Whether `user` has a socket here other than `session`.
    pub fn has_other(&self, user: &str, session: &str) -> bool {
        let own = usize::from(self.users_by_session.get(session).map(String::as_str) == Some(user));
        self.sessions_by_user.get(user).is_some_and(|n| *n > own)
    }

    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.sessions_by_user.keys().map(String::as_str)
    }
}

/// Where a new socket of a room goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The room's root object.
    Root,
    /// Shard object number `n` (1-based).
    Shard(u64),
}

/// The root keeps up to `shard_size` sockets; beyond that, sockets are dealt to shards in
/// order, `shard_size` to each, counting every socket ever sent to a shard so that a
/// placement never has to ask the shards how full they are.
pub fn place(root_sockets: usize, sent_to_shards: u64, shard_size: u64) -> Placement {
    if (root_sockets as u64) < shard_size {
        Placement::Root
    } else {
        Placement::Shard((sent_to_shards / shard_size.max(1)).saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn grant_matching() {
        let g = granted(&["project:*", "team:7"]);
        assert!(grants(&g, "project:42"));
        assert!(!grants(&g, "projects:1"));
        assert!(!grants(&g, "project:"));
        assert!(grants(&g, "team:7"));
        assert!(!grants(&g, "team:70"));
        assert!(!grants(&[], "project:42"));
    }

    #[test]
    fn presence_debounce() {
        assert!(presence::announce_join(false, false));
        assert!(!presence::announce_join(true, false));
        assert!(
            !presence::announce_join(false, true),
            "a quick reconnect is no join"
        );
        assert_eq!(presence::leave_deadline(true, 100, 50), None);
        assert_eq!(presence::leave_deadline(false, 100, 50), Some(150));
        let leaving = vec![("ann".to_string(), 150), ("bob".to_string(), 300)];
        let online = vec!["bob".to_string()];
        assert_eq!(
            presence::due(&leaving, &online, 149).collect::<Vec<_>>(),
            Vec::<&str>::new()
        );
        assert_eq!(
            presence::due(&leaving, &online, 400).collect::<Vec<_>>(),
            ["ann"]
        );
    }

    #[test]
    fn shard_placement() {
        assert_eq!(place(2, 0, 3), Placement::Root);
        assert_eq!(place(3, 0, 3), Placement::Shard(1));
        assert_eq!(place(3, 2, 3), Placement::Shard(1));
        assert_eq!(place(3, 3, 3), Placement::Shard(2));
        assert_eq!(place(3, 7, 3), Placement::Shard(3));
    }
}
