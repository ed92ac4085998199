//! The objects' side of `GET /v1/stats` ([`crate::stats`] has the rules).
//!
//! [`ObjectStats`] lives in every `UserHub` and `RoomHub`: it counts deliveries and drops in
//! memory, and when its [`Reporter`] says so, writes them to the object's own SQLite (so a
//! wake-up continues from them) and sends a report to the [`StatsHub`] without waiting
//! for the answer. Reports that must wait are sent by the object's alarm, which the
//! objects set from [`ObjectStats::deadline`]; nothing here sets a timer.
//!
//! [`StatsHub`] is one object (named `stats`) that keeps the latest report of every object
//! and sums them. Each object reports at most once per `STATS_REPORT_MS` while it is
//! active, so it receives at most (active objects ÷ interval) requests per second: at the
//! default 60 s, some 60,000 busy objects reach the ~1,000 requests/s one object serves
//! comfortably. Beyond that, raise `STATS_REPORT_MS`.

use std::cell::{Cell, RefCell};

use serde::Deserialize;
use serde_json::json;
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result, SqlStorage,
    State,
};

use super::{int, internal, log, now_ms, unsigned};
use crate::stats::{merge, Counters, Kind, Report, Reporter, Sends, Summary, Tally, Tick};

/// The stats object's binding and name.
const BINDING: &str = "STATS";
const NAME: &str = "stats";

/// The counters of one hub, kept beside its data.
const TALLY_SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS stats_tally (key TEXT PRIMARY KEY, value INTEGER NOT NULL)";

#[derive(Deserialize)]
struct TallyRow {
    key: String,
    value: i64,
}

/// One hub's counters and report throttle. Cheap to update: a counter and a flag in
/// memory; storage and the network are touched only when a report goes out.
pub(crate) struct ObjectStats {
    kind: Kind,
    /// Loaded from storage on first use after a wake-up.
    tally: RefCell<Option<Tally>>,
    reporter: Cell<Reporter>,
}

impl ObjectStats {
    pub(crate) fn new(kind: Kind, interval_ms: u64) -> Self {
        Self {
            kind,
            tally: RefCell::new(None),
            reporter: Cell::new(Reporter::new(interval_ms)),
        }
    }

    /// A frame carrying `items` notifications was written to sockets with `sends`.
    pub(crate) fn sent(&self, state: &State, items: u64, sends: Sends) {
        if items == 0 {
            return;
        }
        self.update(state, |tally| tally.sent(items, sends));
    }

    /// Retention removed `count` unread items.
    pub(crate) fn dropped(&self, state: &State, count: u64) {
        if count == 0 {
            return;
        }
        self.update(state, |tally| tally.dropped += count);
    }

    /// Something a report carries changed: a store, a socket opened or closed.
    pub(crate) fn touch(&self) {
        let mut reporter = self.reporter.get();
        reporter.touch();
        self.reporter.set(reporter);
    }

    /// When the object's alarm must run to send a waiting report.
    pub(crate) fn deadline(&self) -> Option<u64> {
        self.reporter.get().deadline()
    }

    /// At the end of an event: sends a report if one is due. `gauges` reads the object's
    /// open sockets and stored count, only when a report goes out.
    pub(crate) fn tick(
        &self,
        state: &State,
        env: &Env,
        gauges: impl FnOnce() -> (u64, u64),
    ) -> Tick {
        let now = now_ms();
        let sql = state.storage().sql();
        if self.reporter.get().dirty() {
            // Before deciding: loading resumes the throttle from the last report's time.
            self.loaded(&sql);
        }
        let mut reporter = self.reporter.get();
        let tick = reporter.tick(now);
        self.reporter.set(reporter);
        if tick != Tick::Report {
            return tick;
        }
        let tally = self.loaded(&sql);
        // Kept before it is reported, so that a wake-up never reports less than was seen,
        // with the report's time, so that it does not report again before the interval.
        if let Err(e) = save(&sql, &tally, now) {
            log::event("error", json!({ "message": format!("stats: {e}") }));
        }
        let (connections, stored) = gauges();
        let report = Report {
            kind: self.kind,
            object: state.id().to_string(),
            at: now,
            counters: Counters {
                connections,
                stored,
                delivered: tally.delivered,
                dropped: tally.dropped,
            },
        };
        send(state, env, &report);
        tick
    }

    fn update(&self, state: &State, f: impl FnOnce(&mut Tally)) {
        if self.tally.borrow().is_none() {
            self.loaded(&state.storage().sql());
        }
        if let Some(tally) = self.tally.borrow_mut().as_mut() {
            f(tally);
        }
        self.touch();
    }

    /// The tally, read from storage if this instance has not yet, which also resumes the
    /// report throttle from the stored time of the last report.
    fn loaded(&self, sql: &SqlStorage) -> Tally {
        if let Some(tally) = *self.tally.borrow() {
            return tally;
        }
        let (tally, reported_at) = load(sql).unwrap_or_else(|e| {
            log::event("error", json!({ "message": format!("stats: {e}") }));
            (Tally::default(), None)
        });
        *self.tally.borrow_mut() = Some(tally);
        let mut reporter = self.reporter.get();
        reporter.resume(reported_at);
        self.reporter.set(reporter);
        tally
    }
}

/// The stored tally, and when the last report went out.
fn load(sql: &SqlStorage) -> Result<(Tally, Option<u64>)> {
    sql.exec(TALLY_SCHEMA, None)?.raw().count();
    let rows: Vec<TallyRow> = sql
        .exec("SELECT key, value FROM stats_tally", None)?
        .to_array()?;
    let mut tally = Tally::default();
    let mut reported_at = None;
    for row in rows {
        let value = unsigned(row.value);
        match row.key.as_str() {
            "delivered" => tally.delivered = value,
            "dropped" => tally.dropped = value,
            "reported_at" => reported_at = Some(value),
            _ => {}
        }
    }
    Ok((tally, reported_at))
}

/// Only after [`load`] (which applies the schema) in the same instance: `tick` loads first.
fn save(sql: &SqlStorage, tally: &Tally, reported_at: u64) -> Result<()> {
    sql.exec(
        "INSERT OR REPLACE INTO stats_tally (key, value)
         VALUES ('delivered', ?), ('dropped', ?), ('reported_at', ?)",
        vec![int(tally.delivered), int(tally.dropped), int(reported_at)],
    )?
    .raw()
    .count();
    Ok(())
}

/// Sends `report` to the stats object without waiting: the event that caused it answers
/// at once, and a lost report is made good by the next one (values are absolute).
fn send(state: &State, env: &Env, report: &Report) {
    // A deployment without the binding simply has no stats.
    let Ok(stub) = env
        .durable_object(BINDING)
        .and_then(|ns| ns.get_by_name(NAME))
    else {
        return;
    };
    let body = match serde_json::to_string(report) {
        Ok(body) => body,
        Err(_) => return,
    };
    state.wait_until(async move {
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(body.into()));
        let sent = match Request::new_with_init(&format!("{}/report", internal::HUB_ORIGIN), &init)
        {
            Ok(req) => stub.fetch_with_request(req).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            log::event("error", json!({ "message": format!("stats report: {e}") }));
        }
    });
}

/// `GET /v1/stats` after the Worker has checked the admin key: the stats object's sums.
pub(crate) async fn summary(env: &Env) -> std::result::Result<Response, crate::error::ApiError> {
    let stub = env
        .durable_object(BINDING)
        .and_then(|ns| ns.get_by_name(NAME))
        .map_err(|e| crate::error::ApiError::unavailable(format!("stats object: {e}")))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get);
    let req = Request::new_with_init(&format!("{}/summary", internal::HUB_ORIGIN), &init)
        .map_err(super::internal_error)?;
    stub.fetch_with_request(req)
        .await
        .map_err(|e| crate::error::ApiError::unavailable(format!("stats object: {e}")))
}

/// Every object's latest report, keyed by kind and object id.
const STATS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS object_stats (
    kind TEXT NOT NULL,
    object TEXT NOT NULL,
    at INTEGER NOT NULL,
    connections INTEGER NOT NULL,
    stored INTEGER NOT NULL,
    delivered INTEGER NOT NULL,
    dropped INTEGER NOT NULL,
    PRIMARY KEY (kind, object)
);
";

#[derive(Deserialize)]
struct ReportRow {
    at: i64,
    connections: i64,
    stored: i64,
    delivered: i64,
    dropped: i64,
}

#[derive(Deserialize)]
struct TotalsRow {
    kind: String,
    objects: i64,
    connections: Option<i64>,
    stored: Option<i64>,
    delivered: Option<i64>,
    dropped: Option<i64>,
}

/// The singleton that keeps every hub's latest report and sums them.
#[durable_object]
pub struct StatsHub {
    state: State,
    /// The schema has been applied since this instance woke.
    ready: Cell<bool>,
}

impl DurableObject for StatsHub {
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            ready: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let sql = self.sql()?;
        match req.path().as_str() {
            "/report" if req.method() == Method::Post => {
                let report: Report = req.json().await?;
                keep(&sql, report)?;
                Response::ok("kept")
            }
            "/summary" => Response::from_json(&summarize(&sql, now_ms())?),
            _ => Response::error("no such stats route", 404),
        }
    }
}

impl StatsHub {
    fn sql(&self) -> Result<SqlStorage> {
        let sql = self.state.storage().sql();
        if !self.ready.get() {
            sql.exec(STATS_SCHEMA, None)?.raw().count();
            self.ready.set(true);
        }
        Ok(sql)
    }
}

/// Merges `incoming` into the object's row (see [`merge`]).
fn keep(sql: &SqlStorage, incoming: Report) -> Result<()> {
    let rows: Vec<ReportRow> = sql
        .exec(
            "SELECT at, connections, stored, delivered, dropped FROM object_stats
             WHERE kind = ? AND object = ?",
            vec![
                incoming.kind.as_str().into(),
                incoming.object.as_str().into(),
            ],
        )?
        .to_array()?;
    let kept = rows.first().map(|row| Report {
        kind: incoming.kind,
        object: incoming.object.clone(),
        at: unsigned(row.at),
        counters: Counters {
            connections: unsigned(row.connections),
            stored: unsigned(row.stored),
            delivered: unsigned(row.delivered),
            dropped: unsigned(row.dropped),
        },
    });
    let merged = merge(kept.as_ref(), incoming);
    let c = merged.counters;
    sql.exec(
        "INSERT OR REPLACE INTO object_stats
           (kind, object, at, connections, stored, delivered, dropped)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        vec![
            merged.kind.as_str().into(),
            merged.object.as_str().into(),
            int(merged.at),
            int(c.connections),
            int(c.stored),
            int(c.delivered),
            int(c.dropped),
        ],
    )?
    .raw()
    .count();
    Ok(())
}

/// Sums per kind, in SQL: the table has a row per object that ever reported.
fn summarize(sql: &SqlStorage, now: u64) -> Result<Summary> {
    let rows: Vec<TotalsRow> = sql
        .exec(
            "SELECT kind, COUNT(*) AS objects, SUM(connections) AS connections,
                    SUM(stored) AS stored, SUM(delivered) AS delivered, SUM(dropped) AS dropped
             FROM object_stats GROUP BY kind",
            None,
        )?
        .to_array()?;
    let mut summary = Summary {
        as_of: now,
        ..Summary::default()
    };
    for row in rows {
        let Some(kind) = Kind::parse(&row.kind) else {
            continue;
        };
        let totals = summary.totals_mut(kind);
        totals.objects = unsigned(row.objects);
        totals.connections = unsigned(row.connections.unwrap_or(0));
        totals.stored = unsigned(row.stored.unwrap_or(0));
        totals.delivered = unsigned(row.delivered.unwrap_or(0));
        totals.dropped = unsigned(row.dropped.unwrap_or(0));
    }
    Ok(summary)
}
