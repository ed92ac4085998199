//! What a room's root object keeps beside its history: the member list, departures
//! waiting out their grace period, the sockets that live on shard objects, and when each
//! shard last confirmed its sockets.
//!
//! [`RoomStore`] is the interface the room state machine runs on; the root maps it onto
//! SQLite (`edge::sql_room`) and tests run it on [`MemoryRoom`]. The rules built on it
//! (admission, placement, presence) live in [`crate::room`], so both stores behave alike.
#![warn(missing_docs)]

use std::collections::BTreeMap;

use thiserror::Error;

/// A socket of the room held by a shard object, as the root records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSocket {
    /// The socket's session id.
    pub session: String,
    /// Whose socket it is.
    pub user: String,
    /// The shard object holding it (`<room>#<n>`).
    pub shard: u64,
}

/// A room store failed; the event is answered with an error and changes nothing more.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("room storage failed: {0}")]
pub struct RoomStoreError(pub String);

/// The storage a room's root needs. Writes are durable when the event that made them ends.
pub trait RoomStore {
    /// The member list (`PUT /v1/rooms/{room}/members`), sorted.
    fn members(&self) -> Result<Vec<String>, RoomStoreError>;
    /// Replaces the member list.
    fn set_members(&mut self, members: &[String]) -> Result<(), RoomStoreError>;
    /// Users whose last socket closed, with when their `left` is due.
    fn departures(&self) -> Result<Vec<(String, u64)>, RoomStoreError>;
    /// Records (or with `None` cancels) `user`'s departure.
    fn set_departure(&mut self, user: &str, at: Option<u64>) -> Result<(), RoomStoreError>;
    /// The shard sockets of `user`.
    fn remote_of(&self, user: &str) -> Result<Vec<RemoteSocket>, RoomStoreError>;
    /// Every shard socket.
    fn remote(&self) -> Result<Vec<RemoteSocket>, RoomStoreError>;
    /// Records a shard socket (again: replaces it).
    fn add_remote(&mut self, socket: &RemoteSocket) -> Result<(), RoomStoreError>;
    /// Forgets a shard socket; answers what was recorded, if anything.
    fn remove_remote(&mut self, session: &str) -> Result<Option<RemoteSocket>, RoomStoreError>;
    /// Each shard holding sockets, with how many, in shard order.
    fn shard_sockets(&self) -> Result<Vec<(u64, u64)>, RoomStoreError>;
    /// When each shard last confirmed its sockets, in shard order.
    fn confirmations(&self) -> Result<Vec<(u64, u64)>, RoomStoreError>;
    /// Records (or with `None` forgets) when `shard` last confirmed its sockets.
    fn confirm(&mut self, shard: u64, at: Option<u64>) -> Result<(), RoomStoreError>;
}

/// A [`RoomStore`] in memory, for tests and fuzzing.
#[derive(Debug, Clone, Default)]
pub struct MemoryRoom {
    members: Vec<String>,
    departures: BTreeMap<String, u64>,
    remote: BTreeMap<String, RemoteSocket>,
    confirmed: BTreeMap<u64, u64>,
}

impl RoomStore for MemoryRoom {
    fn members(&self) -> Result<Vec<String>, RoomStoreError> {
        let mut members = self.members.clone();
        members.sort();
        Ok(members)
    }

    fn set_members(&mut self, members: &[String]) -> Result<(), RoomStoreError> {
        self.members = members.to_vec();
        Ok(())
    }

    fn departures(&self) -> Result<Vec<(String, u64)>, RoomStoreError> {
        Ok(self
            .departures
            .iter()
            .map(|(u, at)| (u.clone(), *at))
            .collect())
    }

    fn set_departure(&mut self, user: &str, at: Option<u64>) -> Result<(), RoomStoreError> {
        match at {
            Some(at) => self.departures.insert(user.to_owned(), at),
            None => self.departures.remove(user),
        };
        Ok(())
    }

    fn remote_of(&self, user: &str) -> Result<Vec<RemoteSocket>, RoomStoreError> {
        Ok(self
            .remote
            .values()
            .filter(|s| s.user == user)
            .cloned()
            .collect())
    }

    fn remote(&self) -> Result<Vec<RemoteSocket>, RoomStoreError> {
        Ok(self.remote.values().cloned().collect())
    }

    fn add_remote(&mut self, socket: &RemoteSocket) -> Result<(), RoomStoreError> {
        self.remote.insert(socket.session.clone(), socket.clone());
        Ok(())
    }

    fn remove_remote(&mut self, session: &str) -> Result<Option<RemoteSocket>, RoomStoreError> {
        Ok(self.remote.remove(session))
    }

    fn shard_sockets(&self) -> Result<Vec<(u64, u64)>, RoomStoreError> {
        let mut counts = BTreeMap::new();
        for socket in self.remote.values() {
            *counts.entry(socket.shard).or_insert(0) += 1;
        }
        Ok(counts.into_iter().collect())
    }

    fn confirmations(&self) -> Result<Vec<(u64, u64)>, RoomStoreError> {
        Ok(self.confirmed.iter().map(|(s, at)| (*s, *at)).collect())
    }

    fn confirm(&mut self, shard: u64, at: Option<u64>) -> Result<(), RoomStoreError> {
        match at {
            Some(at) => self.confirmed.insert(shard, at),
            None => self.confirmed.remove(&shard),
        };
        Ok(())
    }
}
