//! What a room keeps beside its history (which is a [`super::sql_inbox::SqlInbox`]): the
//! member list, departures waiting out their grace period, the sockets that live on shard
//! objects, and the shard counters. Only the room's root object writes these.

use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue};

use super::{int, unsigned};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS room_members (user TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS room_leaving (user TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS room_remote (
    session TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    shard INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS room_remote_user ON room_remote (user);
CREATE TABLE IF NOT EXISTS room_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS room_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

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
struct Text {
    value: String,
}

#[derive(Deserialize)]
struct Number {
    n: Option<i64>,
}

type Result<T> = worker::Result<T>;

impl RoomSql {
    pub fn open(sql: SqlStorage) -> Result<Self> {
        sql.exec(SCHEMA, None)?;
        Ok(Self { sql })
    }

    fn users(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<Vec<String>> {
        let rows: Vec<UserRow> = self.sql.exec(query, bindings)?.to_array()?;
        Ok(rows.into_iter().map(|r| r.user).collect())
    }

    fn run(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<()> {
        self.sql.exec(query, bindings)?.raw().count();
        Ok(())
    }

    pub fn members(&self) -> Result<Vec<String>> {
        self.users("SELECT user FROM room_members ORDER BY user", vec![])
    }

    pub fn set_members(&self, members: &[String]) -> Result<()> {
        self.run("DELETE FROM room_members", vec![])?;
        for member in members {
            self.run(
                "INSERT OR IGNORE INTO room_members (user) VALUES (?)",
                vec![member.as_str().into()],
            )?;
        }
        Ok(())
    }

    pub fn leaving(&self) -> Result<Vec<(String, u64)>> {
        let rows: Vec<LeavingRow> = self
            .sql
            .exec("SELECT user, at FROM room_leaving", None)?
            .to_array()?;
        Ok(rows.into_iter().map(|r| (r.user, unsigned(r.at))).collect())
    }

    pub fn set_leaving(&self, user: &str, at: Option<u64>) -> Result<()> {
        match at {
            Some(at) => self.run(
                "INSERT OR REPLACE INTO room_leaving (user, at) VALUES (?, ?)",
                vec![user.into(), int(at)],
            ),
            None => self.run("DELETE FROM room_leaving WHERE user = ?", vec![user.into()]),
        }
    }

    /// Users with a socket on some shard.
    pub fn remote_users(&self) -> Result<Vec<String>> {
        self.users("SELECT DISTINCT user FROM room_remote", vec![])
    }

    /// Whether `user` has a socket on some shard.
    pub fn remote_user_present(&self, user: &str) -> Result<bool> {
        let found = self.users(
            "SELECT user FROM room_remote WHERE user = ? LIMIT 1",
            vec![user.into()],
        )?;
        Ok(!found.is_empty())
    }

    pub fn add_remote(&self, session: &str, user: &str, shard: u64) -> Result<()> {
        self.run(
            "INSERT OR REPLACE INTO room_remote (session, user, shard) VALUES (?, ?, ?)",
            vec![session.into(), user.into(), int(shard)],
        )
    }

    pub fn remove_remote(&self, session: &str) -> Result<()> {
        self.run(
            "DELETE FROM room_remote WHERE session = ?",
            vec![session.into()],
        )
    }

    pub fn counter(&self, key: &str) -> Result<u64> {
        let rows: Vec<Number> = self
            .sql
            .exec(
                "SELECT value AS n FROM room_meta WHERE key = ?",
                vec![key.into()],
            )?
            .to_array()?;
        Ok(rows.first().and_then(|r| r.n).map_or(0, unsigned))
    }

    pub fn set_counter(&self, key: &str, value: u64) -> Result<()> {
        self.run(
            "INSERT OR REPLACE INTO room_meta (key, value) VALUES (?, ?)",
            vec![key.into(), int(value)],
        )
    }

    /// The room's name, as the Worker gave it.
    pub fn name(&self) -> Result<Option<String>> {
        let rows: Vec<Text> = self
            .sql
            .exec("SELECT value FROM room_info WHERE key = 'name'", None)?
            .to_array()?;
        Ok(rows.into_iter().next().map(|r| r.value))
    }

    pub fn set_name(&self, name: &str) -> Result<()> {
        self.run(
            "INSERT OR REPLACE INTO room_info (key, value) VALUES ('name', ?)",
            vec![name.into()],
        )
    }
}
