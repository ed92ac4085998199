//! [`Inbox`] on a Durable Object's SQLite database.
//!
//! Statements run synchronously inside the object, and the runtime coalesces the writes of
//! one event into a single atomic commit that must succeed before any response or socket
//! message leaves the object (its output gate). That is what lets the publish route say
//! "stored" the moment `append` returns, and makes every multi-statement write here atomic.

use std::cell::{Cell, RefCell};

use serde::de::DeserializeOwned;
use worker::{SqlStorage, SqlStorageValue};

mod rows;

use self::rows::{
    json_list, notification, storage_error, Cut, FiguresRow, HorizonRow, IdRow, ItemRow, KeyRow,
    Number, UnreadRow, IN_LIST,
};
use super::{int, unsigned};

use crate::attention::Preferences;
use crate::inbox::{Hold, Horizon, Inbox, InboxError, Prune, Range, ReadTarget};
use crate::model::{Notification, Receipt, Seq};

/// Schema, applied idempotently when the object starts. The item itself is stored as JSON;
/// the columns beside it are what queries filter and sort on. `hub_meta` keeps counters
/// that must not be derived from rows that retention deletes.
const SCHEMA: &str = include_str!("schema/inbox.sql");

/// `expires_at` filter shared by every read of live items; binds `now`.
const LIVE: &str = "(expires_at IS NULL OR expires_at > ?)";

pub struct SqlInbox {
    sql: SqlStorage,
    /// The stored preferences, read on first use and then kept: every publish and alarm
    /// consults them, and `set_preferences` on this object is their only writer.
    preferences: RefCell<Option<Preferences>>,
    /// How many idempotency keys are stored, counted on first use and then kept: the
    /// count bound is checked on every keyed publish, and this object is the table's only
    /// writer.
    key_count: Cell<Option<u64>>,
    /// What every publish and every alarm schedule consults, kept like the two above.
    known: Known,
}

/// Figures read on first use after a wake-up and then kept up to date by this object's
/// own writes, so that a publish to a warm object runs one statement (its insert) instead
/// of a read of each. `None` is "not known": read on next use. A write whose effect on a
/// figure is not cheap to work out (a delete, a release of held items) forgets the figure
/// rather than guess it.
#[derive(Default)]
struct Known {
    latest_seq: Cell<Option<Seq>>,
    item_count: Cell<Option<u64>>,
    window_closes_at: Cell<Option<Option<u64>>>,
    window_held: Cell<Option<bool>>,
    attention_held: Cell<Option<bool>>,
    horizon: Cell<Option<Horizon>>,
    /// Live unread items, true until the first of them expires (an item's TTL takes it
    /// out of the count without a write).
    unread: Cell<Option<Unread>>,
}

#[derive(Clone, Copy)]
struct Unread {
    count: u64,
    /// The earliest `expires_at` among the counted items.
    until: Option<u64>,
}

impl Known {
    /// Rows left the notifications table (a delete).
    fn items_removed(&self) {
        self.item_count.set(None);
        self.holds_released();
        self.horizon.set(None);
        self.unread.set(None);
    }

    /// Retention removed the rows `cut` describes: the counts follow it exactly.
    fn items_gone(&self, cut: &Cut) {
        let less = |n: Option<i64>| n.map_or(0, unsigned);
        let count = &self.item_count;
        count.set(count.get().map(|n| n.saturating_sub(unsigned(cut.removed))));
        self.unread.set(self.unread.get().map(|u| Unread {
            count: u.count.saturating_sub(less(cut.unread_removed)),
            ..u
        }));
        if less(cut.held_removed) > 0 {
            self.holds_released();
        }
        // The oldest item, and maybe the earliest expiry, went.
        self.horizon.set(None);
    }

    /// Some held items may no longer be held.
    fn holds_released(&self) {
        self.window_held.set(None);
        self.attention_held.set(None);
    }

    /// Whether anything is held for `hold`.
    fn held(&self, hold: Hold) -> &Cell<Option<bool>> {
        match hold {
            Hold::Window => &self.window_held,
            Hold::Attention => &self.attention_held,
        }
    }
}

/// The retention horizon's columns (`HorizonRow`), in [`HORIZON`] and [`FIGURES`]. Each a
/// single index lookup: items are stored in seq order with the time of storing, so the
/// oldest is the first by seq (a clock stepping back delays its retention by at most the
/// step); the other columns have an index.
macro_rules! horizon_columns {
    () => {
        "(SELECT created_at FROM notifications ORDER BY seq LIMIT 1) AS oldest_item_at,
    (SELECT MIN(expires_at) FROM notifications WHERE expires_at IS NOT NULL) AS earliest_expiry,
    (SELECT MIN(at) FROM idempotency_keys) AS oldest_key_at,
    (SELECT MIN(at) FROM device_acks) AS oldest_ack_at"
    };
}

/// Everything [`Known`] keeps but the unread count (which depends on the time), and the
/// preferences, read in one statement on first use after a wake-up.
const FIGURES: &str = concat!(
    "SELECT
    MAX(COALESCE((SELECT MAX(seq) FROM notifications), 0),
        COALESCE((SELECT value FROM hub_meta WHERE key = 'latest_seq'), 0)) AS latest_seq,
    (SELECT COUNT(*) FROM notifications) AS item_count,
    (SELECT value FROM hub_meta WHERE key = 'window_closes_at') AS window_closes_at,
    EXISTS (SELECT 1 FROM notifications WHERE held = 1) AS window_held,
    EXISTS (SELECT 1 FROM notifications WHERE held = 2) AS attention_held,
    (SELECT value FROM hub_settings WHERE key = 'preferences') AS preferences,
    ",
    horizon_columns!()
);

/// The retention horizon alone, once retention has made it unknown.
const HORIZON: &str = concat!("SELECT ", horizon_columns!());

/// The earlier of two optional times, either alone if the other is unset.
fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How the `held` column spells a [`Hold`] (NULL: not held).
fn hold_flag(hold: Hold) -> SqlStorageValue {
    SqlStorageValue::Integer(match hold {
        Hold::Window => 1,
        Hold::Attention => 2,
    })
}

impl SqlInbox {
    pub fn open(sql: SqlStorage) -> Result<Self, InboxError> {
        sql.exec(SCHEMA, None).map_err(storage_error)?;
        Ok(Self {
            sql,
            preferences: RefCell::new(None),
            key_count: Cell::new(None),
            known: Known::default(),
        })
    }

    fn rows<T: DeserializeOwned>(
        &self,
        query: &str,
        bindings: Vec<SqlStorageValue>,
    ) -> Result<Vec<T>, InboxError> {
        self.sql
            .exec(query, bindings)
            .and_then(|cursor| cursor.to_array())
            .map_err(storage_error)
    }

    fn run(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<usize, InboxError> {
        self.sql
            .exec(query, bindings)
            .map(|cursor| {
                // Writes happen as the cursor is consumed.
                cursor.raw().count();
                cursor.rows_written()
            })
            .map_err(storage_error)
    }

    fn number(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<u64, InboxError> {
        let rows: Vec<Number> = self.rows(query, bindings)?;
        Ok(rows.first().and_then(|r| r.n).map_or(0, unsigned))
    }

    /// Raises a counter: `latest_seq` (a floor under the rows' own highest seq) and
    /// `pruned_through` only ever grow.
    fn set_meta(&self, key: &str, value: u64) -> Result<(), InboxError> {
        self.run(
            "INSERT INTO hub_meta (key, value) VALUES (?, ?)
             ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            vec![key.into(), int(value)],
        )?;
        Ok(())
    }

    /// Keeps the highest seq ever assigned beyond the rows about to be deleted, which may
    /// hold it: the one write of `latest_seq`, so that an append is a single insert.
    fn keep_latest_seq(&self) -> Result<(), InboxError> {
        let latest = self.latest_seq()?;
        self.set_meta("latest_seq", latest)
    }

    /// Reads every figure [`Known`] keeps (but the unread count) and the preferences, in
    /// one statement: what a woken object's first publish or schedule needs.
    fn load(&self) -> Result<(), InboxError> {
        let rows: Vec<FiguresRow> = self.rows(FIGURES, vec![])?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| storage_error("no figures row"))?;
        let known = &self.known;
        // The highest stored row, unless deletes took it: then the floor kept before them.
        known.latest_seq.set(Some(unsigned(row.latest_seq)));
        known.item_count.set(Some(unsigned(row.item_count)));
        known
            .window_closes_at
            .set(Some(row.window_closes_at.map(unsigned)));
        known.window_held.set(Some(row.window_held != 0));
        known.attention_held.set(Some(row.attention_held != 0));
        known.horizon.set(Some(row.horizon.horizon()));
        if self.preferences.borrow().is_none() {
            let stored = match &row.preferences {
                Some(value) => serde_json::from_str(value).map_err(storage_error)?,
                None => Preferences::default(),
            };
            *self.preferences.borrow_mut() = Some(stored);
        }
        Ok(())
    }

    /// A figure of [`Known`], loaded with all the others if this one is not known.
    fn figure<T: Copy>(&self, cell: &Cell<Option<T>>) -> Result<T, InboxError> {
        if let Some(value) = cell.get() {
            return Ok(value);
        }
        self.load()?;
        cell.get().ok_or_else(|| storage_error("figure not loaded"))
    }

    /// Keeps the key count true after `removed` keys were deleted.
    fn keys_removed(&self, removed: usize) {
        if let Some(count) = self.key_count.get() {
            self.key_count
                .set(Some(count.saturating_sub(removed as u64)));
        }
    }

    fn notifications(&self, rows: Vec<ItemRow>) -> Result<Vec<Notification>, InboxError> {
        rows.into_iter()
            .map(|row| notification(&row.item, row.read))
            .collect()
    }
}

impl Inbox for SqlInbox {
    fn latest_seq(&self) -> Result<Seq, InboxError> {
        self.figure(&self.known.latest_seq)
    }

    fn pruned_through(&self) -> Result<Seq, InboxError> {
        self.number(
            "SELECT value AS n FROM hub_meta WHERE key = 'pruned_through'",
            vec![],
        )
    }

    fn oldest_seq(&self) -> Result<Option<Seq>, InboxError> {
        let rows: Vec<Number> = self.rows("SELECT MIN(seq) AS n FROM notifications", vec![])?;
        Ok(rows.first().and_then(|r| r.n).map(unsigned))
    }

    fn item_count(&self) -> Result<u64, InboxError> {
        self.figure(&self.known.item_count)
    }

    fn append(&mut self, notification: &Notification) -> Result<(), InboxError> {
        let item = serde_json::to_string(notification).map_err(storage_error)?;
        self.run(
            "INSERT INTO notifications (seq, id, created_at, expires_at, item)
             VALUES (?, ?, ?, ?, ?)",
            vec![
                int(notification.seq),
                notification.id.as_str().into(),
                int(notification.created_at),
                notification.expires_at.map(int).into(),
                item.into(),
            ],
        )?;
        let known = &self.known;
        known
            .latest_seq
            .set(known.latest_seq.get().map(|l| l.max(notification.seq)));
        known.item_count.set(known.item_count.get().map(|n| n + 1));
        known.unread.set(known.unread.get().map(|u| Unread {
            count: u.count + 1,
            until: earliest(u.until, notification.expires_at),
        }));
        known.horizon.set(known.horizon.get().map(|h| Horizon {
            oldest_item_at: h.oldest_item_at.or(Some(notification.created_at)),
            earliest_expiry: earliest(h.earliest_expiry, notification.expires_at),
            ..h
        }));
        Ok(())
    }

    fn items(&self, range: &Range) -> Result<Vec<Notification>, InboxError> {
        let mut query =
            format!("SELECT item, read_at IS NOT NULL AS read FROM notifications WHERE {LIVE}");
        let mut bindings = vec![int(range.now_ms)];
        if let Some(after) = range.after {
            query.push_str(" AND seq > ?");
            bindings.push(int(after));
        }
        if let Some(before) = range.before {
            query.push_str(" AND seq < ?");
            bindings.push(int(before));
        }
        if range.unread_only {
            query.push_str(" AND read_at IS NULL");
        }
        query.push_str(if range.newest_first {
            " ORDER BY seq DESC LIMIT ?"
        } else {
            " ORDER BY seq ASC LIMIT ?"
        });
        bindings.push(int(range.limit as u64));
        let rows = self.rows(&query, bindings)?;
        self.notifications(rows)
    }

    fn items_by_id(&self, ids: &[String], now_ms: u64) -> Result<Vec<Notification>, InboxError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let query = format!(
            "SELECT item, read_at IS NOT NULL AS read FROM notifications
             WHERE {LIVE} AND id {IN_LIST} ORDER BY seq"
        );
        let rows = self.rows(&query, vec![int(now_ms), json_list(ids)?])?;
        self.notifications(rows)
    }

    fn unread_count(&self, now_ms: u64) -> Result<u64, InboxError> {
        if let Some(known) = self.known.unread.get() {
            if known.until.is_none_or(|until| now_ms < until) {
                return Ok(known.count);
            }
        }
        let rows: Vec<UnreadRow> = self.rows(
            &format!(
                "SELECT COUNT(*) AS n, MIN(expires_at) AS until
                 FROM notifications WHERE read_at IS NULL AND {LIVE}"
            ),
            vec![int(now_ms)],
        )?;
        let unread = rows.first().map_or(
            Unread {
                count: 0,
                until: None,
            },
            |r| Unread {
                count: r.n.map_or(0, unsigned),
                until: r.until.map(unsigned),
            },
        );
        self.known.unread.set(Some(unread));
        Ok(unread.count)
    }

    fn mark_read(
        &mut self,
        target: ReadTarget<'_>,
        now_ms: u64,
    ) -> Result<Vec<String>, InboxError> {
        let (condition, mut bindings) = match target {
            ReadTarget::Seqs([]) => return Ok(Vec::new()),
            ReadTarget::Seqs(seqs) => (format!("seq {IN_LIST}"), vec![json_list(seqs)?]),
            ReadTarget::Through(through) => ("seq <= ?".to_owned(), vec![int(through)]),
        };
        bindings.push(int(now_ms));
        let filter = format!("{condition} AND read_at IS NULL AND {LIVE}");
        let ids: Vec<IdRow> = self.rows(
            &format!("SELECT id FROM notifications WHERE {filter} ORDER BY seq"),
            bindings.clone(),
        )?;
        let mut update = vec![int(now_ms)];
        update.extend(bindings);
        self.run(
            &format!("UPDATE notifications SET read_at = ? WHERE {filter}"),
            update,
        )?;
        // Exactly the live unread items were marked.
        let unread = &self.known.unread;
        unread.set(unread.get().map(|u| Unread {
            count: u.count.saturating_sub(ids.len() as u64),
            ..u
        }));
        Ok(ids.into_iter().map(|r| r.id).collect())
    }

    fn remove(&mut self, seq: Seq) -> Result<bool, InboxError> {
        self.keep_latest_seq()?;
        let removed = self.run("DELETE FROM notifications WHERE seq = ?", vec![int(seq)])? > 0;
        self.known.items_removed();
        Ok(removed)
    }

    fn prune(&mut self, prune: &Prune) -> Result<u64, InboxError> {
        // -1 matches no seq: no count cut this time. ?1 is now, ?2 the count cut, ?3 the
        // age cut: the rows going are those, and those whose TTL ran out.
        let through = prune.through_seq.map_or(SqlStorageValue::Integer(-1), int);
        let rows: Vec<Cut> = self.rows(
            "SELECT MAX(CASE WHEN seq <= ?2 OR created_at < ?3 THEN seq END) AS through,
                    SUM((seq <= ?2 OR created_at < ?3) AND read_at IS NULL
                        AND (expires_at IS NULL OR expires_at > ?1)) AS unread,
                    COUNT(*) AS removed,
                    MAX(seq) AS last_removed,
                    SUM(read_at IS NULL AND (expires_at IS NULL OR expires_at > ?1))
                      AS unread_removed,
                    SUM(held IS NOT NULL) AS held_removed
             FROM notifications
             WHERE seq <= ?2 OR created_at < ?3 OR (expires_at IS NOT NULL AND expires_at <= ?1)",
            vec![
                int(prune.expired_by),
                through.clone(),
                int(prune.created_before),
            ],
        )?;
        let cut = rows.first().copied().unwrap_or_default();
        let horizon = self.known.horizon.get();
        if cut.removed > 0 {
            if cut.last_removed.map(unsigned) >= Some(self.latest_seq()?) {
                self.keep_latest_seq()?;
            }
            self.run(
                "DELETE FROM notifications
                 WHERE seq <= ? OR created_at < ? OR (expires_at IS NOT NULL AND expires_at <= ?)",
                vec![through, int(prune.created_before), int(prune.expired_by)],
            )?;
            self.known.items_gone(&cut);
        }
        if let Some(retained) = cut.through {
            self.set_meta("pruned_through", unsigned(retained))?;
        }
        // The known horizon says when keys and acks fall due; nothing due, nothing to run.
        let due = |oldest: fn(&Horizon) -> Option<u64>, before: u64| {
            horizon.is_none_or(|h| oldest(&h).is_some_and(|at| at < before))
        };
        if due(|h| h.oldest_key_at, prune.keys_before) {
            let forgotten = self.run(
                "DELETE FROM idempotency_keys WHERE at < ?",
                vec![int(prune.keys_before)],
            )?;
            self.keys_removed(forgotten);
            self.known.horizon.set(None);
        }
        if due(|h| h.oldest_ack_at, prune.acks_before) {
            self.run(
                "DELETE FROM device_acks WHERE at < ?",
                vec![int(prune.acks_before)],
            )?;
            self.known.horizon.set(None);
        }
        Ok(cut.unread.map_or(0, unsigned))
    }

    fn horizon(&self) -> Result<Horizon, InboxError> {
        if let Some(horizon) = self.known.horizon.get() {
            return Ok(horizon);
        }
        if self.known.latest_seq.get().is_none() {
            return self.figure(&self.known.horizon);
        }
        // Only the horizon is unknown (retention just ran): read it alone.
        let rows: Vec<HorizonRow> = self.rows(HORIZON, vec![])?;
        let horizon = rows
            .first()
            .map_or_else(Horizon::default, HorizonRow::horizon);
        self.known.horizon.set(Some(horizon));
        Ok(horizon)
    }

    fn receipt_for(&self, key: &str) -> Result<Option<(Receipt, u64)>, InboxError> {
        let rows: Vec<KeyRow> = self.rows(
            "SELECT id, seq, at FROM idempotency_keys WHERE key = ?",
            vec![key.into()],
        )?;
        Ok(rows.into_iter().next().map(|r| {
            let receipt = Receipt {
                id: r.id,
                seq: unsigned(r.seq),
                duplicate: false,
            };
            (receipt, unsigned(r.at))
        }))
    }

    fn remember(&mut self, key: &str, receipt: &Receipt, now_ms: u64) -> Result<(), InboxError> {
        let row = vec![
            key.into(),
            receipt.id.as_str().into(),
            int(receipt.seq),
            int(now_ms),
        ];
        // One statement for a new key (the common case); a key past its window is
        // remembered again in place.
        let added = self.run(
            "INSERT INTO idempotency_keys (key, id, seq, at) VALUES (?, ?, ?, ?)
             ON CONFLICT (key) DO NOTHING",
            row.clone(),
        )?;
        let horizon = &self.known.horizon;
        if added == 0 {
            self.run(
                "UPDATE idempotency_keys SET id = ?2, seq = ?3, at = ?4 WHERE key = ?1",
                row,
            )?;
            // The oldest key may have been this one.
            horizon.set(None);
        } else {
            if let Some(count) = self.key_count.get() {
                self.key_count.set(Some(count + 1));
            }
            horizon.set(horizon.get().map(|h| Horizon {
                oldest_key_at: earliest(h.oldest_key_at, Some(now_ms)),
                ..h
            }));
        }
        Ok(())
    }

    fn key_count(&self) -> Result<u64, InboxError> {
        if let Some(count) = self.key_count.get() {
            return Ok(count);
        }
        let count = self.number("SELECT COUNT(*) AS n FROM idempotency_keys", vec![])?;
        self.key_count.set(Some(count));
        Ok(count)
    }

    fn forget_oldest_keys(&mut self, count: u64) -> Result<(), InboxError> {
        let forgotten = self.run(
            "DELETE FROM idempotency_keys WHERE key IN
             (SELECT key FROM idempotency_keys ORDER BY at LIMIT ?)",
            vec![int(count)],
        )?;
        self.keys_removed(forgotten);
        self.known.horizon.set(None);
        Ok(())
    }

    fn forget_ack(&mut self, device: &str) -> Result<(), InboxError> {
        self.run(
            "DELETE FROM device_acks WHERE device = ?",
            vec![device.into()],
        )?;
        self.known.horizon.set(None);
        Ok(())
    }

    fn record_ack(&mut self, device: &str, seq: Seq, now_ms: u64) -> Result<(), InboxError> {
        self.run(
            "INSERT INTO device_acks (device, seq, at) VALUES (?, ?, ?)
             ON CONFLICT (device) DO UPDATE SET seq = MAX(seq, excluded.seq), at = excluded.at",
            vec![device.into(), int(seq), int(now_ms)],
        )?;
        // A new ack is the newest; an updated one may have been the oldest.
        self.known.horizon.set(None);
        Ok(())
    }

    fn preferences(&self) -> Result<Preferences, InboxError> {
        if self.preferences.borrow().is_none() {
            self.load()?;
        }
        self.preferences
            .borrow()
            .clone()
            .ok_or_else(|| storage_error("preferences not loaded"))
    }

    fn set_preferences(&mut self, preferences: &Preferences) -> Result<(), InboxError> {
        let value = serde_json::to_string(preferences).map_err(storage_error)?;
        self.run(
            "INSERT OR REPLACE INTO hub_settings (key, value) VALUES ('preferences', ?)",
            vec![value.into()],
        )?;
        *self.preferences.borrow_mut() = Some(preferences.clone());
        Ok(())
    }

    fn set_hold(&mut self, seqs: &[Seq], hold: Option<Hold>) -> Result<(), InboxError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let flag = hold.map_or(SqlStorageValue::Null, hold_flag);
        self.run(
            &format!("UPDATE notifications SET held = ? WHERE seq {IN_LIST}"),
            vec![flag, json_list(seqs)?],
        )?;
        match hold {
            Some(hold) => self.known.held(hold).set(Some(true)),
            None => self.known.holds_released(),
        }
        Ok(())
    }

    fn held(
        &self,
        after: Seq,
        through: Seq,
        limit: usize,
    ) -> Result<Vec<Notification>, InboxError> {
        let rows = self.rows(
            "SELECT item, read_at IS NOT NULL AS read FROM notifications
             WHERE held IS NOT NULL AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            vec![int(after), int(through), int(limit as u64)],
        )?;
        self.notifications(rows)
    }

    fn holds(&self, hold: Hold) -> Result<bool, InboxError> {
        self.figure(self.known.held(hold))
    }

    fn move_holds(&mut self, from: Hold, to: Hold) -> Result<(), InboxError> {
        self.run(
            "UPDATE notifications SET held = ? WHERE held = ?",
            vec![hold_flag(to), hold_flag(from)],
        )?;
        let (moved, kept) = (self.known.held(from).get(), self.known.held(to).get());
        self.known.held(to).set(match (moved, kept) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), kept) => kept,
            (None, _) => None,
        });
        self.known.held(from).set(Some(false));
        Ok(())
    }

    fn window_closes_at(&self) -> Result<Option<u64>, InboxError> {
        self.figure(&self.known.window_closes_at)
    }

    fn set_window_closes_at(&mut self, at: Option<u64>) -> Result<(), InboxError> {
        match at {
            Some(at) => self.run(
                "INSERT OR REPLACE INTO hub_meta (key, value) VALUES ('window_closes_at', ?)",
                vec![int(at)],
            )?,
            None => self.run(
                "DELETE FROM hub_meta WHERE key = 'window_closes_at'",
                vec![],
            )?,
        };
        self.known.window_closes_at.set(Some(at));
        Ok(())
    }
}
