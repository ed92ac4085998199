//! The room store ([`RoomStore`]) on the root object's SQLite: the member list,
//! departures waiting out their grace period, the sockets that live on shard objects and
//! when each shard last confirmed them. Also the object's identity (room name, shard
//! number), which only the glue needs.

use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue};

use super::{int, unsigned};
use crate::room_store::{RemoteSocket, RoomStore, RoomStoreError};

const SCHEMA: &str = include_str!("schema/room.sql");

pub struct RoomSql {
    sql: SqlStorage,
}

#[derive(Deserialize)]
struct UserRow {
    user: String,
}

#[derive(Deserialize)]
struct LeavingRow {
    user: String,
    at: i64,
}

#[derive(Deserialize)]
struct RemoteRow {
    session: String,
    user: String,
    shard: i64,
}

#[derive(Deserialize)]
struct Pair {
    a: i64,
    b: i64,
}

#[derive(Deserialize)]
struct Text {
    value: String,
}

type Result<T> = std::result::Result<T, RoomStoreError>;

fn failed(e: worker::Error) -> RoomStoreError {
    RoomStoreError(e.to_string())
}

impl RoomSql {
    /// Whether the schema has been created in this object's database.
    pub fn exists(sql: &SqlStorage) -> bool {
        sql.exec(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'room_info'",
            None,
        )
        .and_then(|cursor| cursor.to_array::<serde_json::Value>())
        .is_ok_and(|rows| !rows.is_empty())
    }

    pub fn open(sql: SqlStorage) -> worker::Result<Self> {
        sql.exec(SCHEMA, None)?;
        Ok(Self { sql })
    }

    fn rows<T: serde::de::DeserializeOwned>(
        &self,
        query: &str,
        bindings: Vec<SqlStorageValue>,
    ) -> Result<Vec<T>> {
        self.sql
            .exec(query, bindings)
            .and_then(|cursor| cursor.to_array())
            .map_err(failed)
    }

    fn run(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<()> {
        self.sql
            .exec(query, bindings)
            .map(|cursor| cursor.raw().count())
            .map(|_| ())
            .map_err(failed)
    }

    fn remote_rows(
        &self,
        query: &str,
        bindings: Vec<SqlStorageValue>,
    ) -> Result<Vec<RemoteSocket>> {
        let rows: Vec<RemoteRow> = self.rows(query, bindings)?;
        Ok(rows
            .into_iter()
            .map(|r| RemoteSocket {
                session: r.session,
                user: r.user,
                shard: unsigned(r.shard),
            })
            .collect())
    }

    fn pairs(&self, query: &str) -> Result<Vec<(u64, u64)>> {
        let rows: Vec<Pair> = self.rows(query, vec![])?;
        Ok(rows
            .into_iter()
            .map(|p| (unsigned(p.a), unsigned(p.b)))
            .collect())
    }

    fn info(&self, key: &str) -> Result<Option<String>> {
        let rows: Vec<Text> = self.rows(
            "SELECT value FROM room_info WHERE key = ?",
            vec![key.into()],
        )?;
        Ok(rows.into_iter().next().map(|r| r.value))
    }

    fn set_info(&self, key: &str, value: &str) -> Result<()> {
        self.run(
            "INSERT OR REPLACE INTO room_info (key, value) VALUES (?, ?)",
            vec![key.into(), value.into()],
        )
    }

    /// The room's name, as the Worker gave it.
    pub fn name(&self) -> Result<Option<String>> {
        self.info("name")
    }

    pub fn set_name(&self, name: &str) -> Result<()> {
        self.set_info("name", name)
    }

    /// This object's shard number; `None` on the root.
    pub fn shard(&self) -> Result<Option<u64>> {
        Ok(self.info("shard")?.and_then(|n| n.parse().ok()))
    }

    pub fn set_shard(&self, shard: u64) -> Result<()> {
        self.set_info("shard", &shard.to_string())
    }
}

impl RoomStore for RoomSql {
    fn members(&self) -> Result<Vec<String>> {
        let rows: Vec<UserRow> =
            self.rows("SELECT user FROM room_members ORDER BY user", vec![])?;
        Ok(rows.into_iter().map(|r| r.user).collect())
    }

    fn set_members(&mut self, members: &[String]) -> Result<()> {
        self.run("DELETE FROM room_members", vec![])?;
        for member in members {
            self.run(
                "INSERT OR IGNORE INTO room_members (user) VALUES (?)",
                vec![member.as_str().into()],
            )?;
        }
        Ok(())
    }

    fn departures(&self) -> Result<Vec<(String, u64)>> {
        let rows: Vec<LeavingRow> = self.rows("SELECT user, at FROM room_leaving", vec![])?;
        Ok(rows.into_iter().map(|r| (r.user, unsigned(r.at))).collect())
    }

    fn set_departure(&mut self, user: &str, at: Option<u64>) -> Result<()> {
        match at {
            Some(at) => self.run(
                "INSERT OR REPLACE INTO room_leaving (user, at) VALUES (?, ?)",
                vec![user.into(), int(at)],
            ),
            None => self.run("DELETE FROM room_leaving WHERE user = ?", vec![user.into()]),
        }
    }

    fn remote_of(&self, user: &str) -> Result<Vec<RemoteSocket>> {
        self.remote_rows(
            "SELECT session, user, shard FROM room_remote WHERE user = ?",
            vec![user.into()],
        )
    }

    fn remote(&self) -> Result<Vec<RemoteSocket>> {
        self.remote_rows("SELECT session, user, shard FROM room_remote", vec![])
    }

    fn add_remote(&mut self, socket: &RemoteSocket) -> Result<()> {
        self.run(
            "INSERT OR REPLACE INTO room_remote (session, user, shard) VALUES (?, ?, ?)",
            vec![
                socket.session.as_str().into(),
                socket.user.as_str().into(),
                int(socket.shard),
            ],
        )
    }

    fn remove_remote(&mut self, session: &str) -> Result<Option<RemoteSocket>> {
        let found = self.remote_rows(
            "DELETE FROM room_remote WHERE session = ? RETURNING session, user, shard",
            vec![session.into()],
        )?;
        Ok(found.into_iter().next())
    }

    fn shard_sockets(&self) -> Result<Vec<(u64, u64)>> {
        self.pairs(
            "SELECT shard AS a, COUNT(*) AS b FROM room_remote GROUP BY shard ORDER BY shard",
        )
    }

    fn confirmations(&self) -> Result<Vec<(u64, u64)>> {
        // Shard rows written before leases existed have no confirmation: they count as
        // never confirmed, so a live shard re-confirms them and a dead one's go.
        self.pairs(
            "SELECT shard AS a, confirmed_at AS b FROM room_shards
             UNION SELECT DISTINCT shard AS a, 0 AS b FROM room_remote
               WHERE shard NOT IN (SELECT shard FROM room_shards)
             ORDER BY a",
        )
    }

    fn confirm(&mut self, shard: u64, at: Option<u64>) -> Result<()> {
        match at {
            Some(at) => self.run(
                "INSERT OR REPLACE INTO room_shards (shard, confirmed_at) VALUES (?, ?)",
                vec![int(shard), int(at)],
            ),
            None => self.run("DELETE FROM room_shards WHERE shard = ?", vec![int(shard)]),
        }
    }
}
