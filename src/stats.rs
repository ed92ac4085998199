//! Operational counters for `GET /v1/stats`: what each hub counts, when it reports, how the
//! stats object adds reports up, and who may read the totals.
//!
//! Durable Objects share nothing, so there is no place where "all connections" could be
//! counted as they happen. Instead every user and room object keeps its own counters and,
//! now and then, reports their absolute values to one stats object, which keeps the latest
//! report of each object and sums them. Absolute values make a report idempotent: a report
//! sent twice, or overtaken by a newer one, cannot count anything twice, because the stats
//! object keeps the highest value of each cumulative counter and the newest connection
//! count per object ([`merge`]).
//!
//! Reports are throttled per object ([`Reporter`]): at most one per `STATS_REPORT_MS`, and
//! one that has to wait is sent by the object's alarm, so the hot paths pay a counter
//! increment and nothing else, and no object is kept awake by a timer.
//!
//! Pure: no clock (callers pass `now`), no IO, no runtime.
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};

use crate::frame::ServerFrame;

/// Which kind of object a report comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A `UserHub`: one user's sockets and inbox.
    UserHub,
    /// A `RoomHub`: a room's root object or one of its shards.
    Room,
    /// The broadcast room's root object or one of its shards.
    Broadcast,
}

impl Kind {
    /// The name stored beside each report.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::UserHub => "user_hub",
            Kind::Room => "room",
            Kind::Broadcast => "broadcast",
        }
    }

    /// The kind a stored report names; `None` for a name this version does not know.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "user_hub" => Some(Kind::UserHub),
            "room" => Some(Kind::Room),
            "broadcast" => Some(Kind::Broadcast),
            _ => None,
        }
    }
}

/// One object's figures, as absolute values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Sockets open on the object when it reported (a gauge, not cumulative).
    pub connections: u64,
    /// Notifications the object has stored since it was created: its latest seq (a user's
    /// inbox, a room's history). Repeated idempotency keys store nothing and do not count.
    pub stored: u64,
    /// Notification copies written to a socket: one per item per socket, whether pushed
    /// live, in a `batch` (window, digest, burst) or replayed on resume.
    pub delivered: u64,
    /// Notification copies Herald gave up on: copies that could not be written to a
    /// socket (it was closing), and, in user hubs, unread items that retention removed
    /// before any device read them.
    pub dropped: u64,
}

/// What an object sends to the stats object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Which totals the report's figures go into.
    pub kind: Kind,
    /// The object's id (not a user or room name: the stats store holds no identities).
    pub object: String,
    /// When the object took the figures (ms since the epoch, the object's clock).
    pub at: u64,
    /// The object's figures at `at`.
    pub counters: Counters,
}

/// The state kept for an object after `incoming` arrives, given what was kept before.
///
/// Cumulative counters only grow, so the higher value is the newer one whatever order
/// reports arrive in; the connection count is a gauge and comes from the newest report.
pub fn merge(kept: Option<&Report>, incoming: Report) -> Report {
    let Some(kept) = kept else {
        return incoming;
    };
    let newer = incoming.at >= kept.at;
    Report {
        kind: incoming.kind,
        object: incoming.object,
        at: kept.at.max(incoming.at),
        counters: Counters {
            connections: if newer {
                incoming.counters.connections
            } else {
                kept.counters.connections
            },
            stored: kept.counters.stored.max(incoming.counters.stored),
            delivered: kept.counters.delivered.max(incoming.counters.delivered),
            dropped: kept.counters.dropped.max(incoming.counters.dropped),
        },
    }
}

/// The sums over every object of one kind that has reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Objects that have reported since the stats store began.
    pub objects: u64,
    /// Sockets open, as of each object's last report.
    pub connections: u64,
    /// Sum of [`Counters::stored`].
    pub stored: u64,
    /// Sum of [`Counters::delivered`].
    pub delivered: u64,
    /// Sum of [`Counters::dropped`].
    pub dropped: u64,
}

/// The body of `GET /v1/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Totals over every user's hub.
    pub user_hubs: Totals,
    /// Totals over every room object, shards included.
    pub rooms: Totals,
    /// Totals over the broadcast room's objects, shards included (not in `rooms`).
    pub broadcast: Totals,
    /// When the stats object answered (ms since the epoch). Figures are as of each
    /// object's last report, at most `STATS_REPORT_MS` behind while it is active.
    pub as_of: u64,
}

impl Summary {
    /// The totals of one kind.
    pub fn totals_mut(&mut self, kind: Kind) -> &mut Totals {
        match kind {
            Kind::UserHub => &mut self.user_hubs,
            Kind::Room => &mut self.rooms,
            Kind::Broadcast => &mut self.broadcast,
        }
    }
}

/// The cumulative counters an object keeps between reports (the gauges, connections and
/// stored, are read when reporting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// See [`Counters::delivered`].
    pub delivered: u64,
    /// See [`Counters::dropped`].
    pub dropped: u64,
}

impl Tally {
    /// A frame carrying `items` notifications went to `sends.sent` sockets and could not
    /// be written to `sends.failed` others.
    pub fn sent(&mut self, items: u64, sends: Sends) {
        self.delivered += items * sends.sent;
        self.dropped += items * sends.failed;
    }
}

/// The outcome of writing one frame to a set of sockets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sends {
    /// Sockets the frame was written to.
    pub sent: u64,
    /// Sockets that were closing, so the frame was lost for them.
    pub failed: u64,
}

impl Sends {
    /// One socket: written, or not.
    pub fn one(ok: bool) -> Self {
        Sends {
            sent: u64::from(ok),
            failed: u64::from(!ok),
        }
    }
}

/// How many notifications a frame carries, for `delivered`: one for a `notification` or a
/// room `message`, its items for a `batch`, none for anything else (welcome, presence,
/// counts, pages of the REST-like `fetch`).
pub fn items(frame: &ServerFrame) -> u64 {
    match frame {
        ServerFrame::Notification(_) | ServerFrame::Message(_) => 1,
        ServerFrame::Batch { items, .. } => items.len() as u64,
        _ => 0,
    }
}

/// What an object should do about its report at the end of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Nothing changed since the last report.
    Idle,
    /// Send a report now (the reporter has recorded it as sent).
    Report,
    /// Something changed but a report went out recently: make sure the object wakes by
    /// this time (its alarm) to send it.
    WaitUntil(u64),
}

/// The per-object throttle: a report when something changed, at most one per interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reporter {
    interval_ms: u64,
    /// When the last report went out: `None` for an object that never reported, whose
    /// first change reports at once ([`Reporter::resume`] after a wake-up).
    last_report_at: Option<u64>,
    /// Something a report carries changed since the last one.
    dirty: bool,
}

impl Reporter {
    /// A throttle for an object just created or woken, allowing one report per
    /// `interval_ms`; its first change reports at once unless [`Reporter::resume`] says
    /// it reported less than an interval ago.
    pub fn new(interval_ms: u64) -> Self {
        Self {
            interval_ms,
            last_report_at: None,
            dirty: false,
        }
    }

    /// A woken object continues from its last report's time, kept in its storage, so that
    /// waking up is not by itself a reason to report: with many users each woken now and
    /// then by one notification, that was a report per notification. Ignored once this
    /// instance has reported.
    pub fn resume(&mut self, last_report_at: Option<u64>) {
        if self.last_report_at.is_none() {
            self.last_report_at = last_report_at;
        }
    }

    /// Whether something changed since the last report.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// Something a report carries changed (a delivery, a store, a socket opened or closed).
    pub fn touch(&mut self) {
        self.dirty = true;
    }

    /// Decides at the end of an event.
    pub fn tick(&mut self, now_ms: u64) -> Tick {
        if !self.dirty {
            return Tick::Idle;
        }
        match self.last_report_at {
            Some(last) if now_ms < last + self.interval_ms => {
                Tick::WaitUntil(last + self.interval_ms)
            }
            _ => {
                self.last_report_at = Some(now_ms);
                self.dirty = false;
                Tick::Report
            }
        }
    }

    /// When a waiting report is due, for the object's alarm; `None` when none waits (or
    /// when the next [`Reporter::tick`] will send at once).
    pub fn deadline(&self) -> Option<u64> {
        match (self.dirty, self.last_report_at) {
            (true, Some(last)) => Some(last + self.interval_ms),
            _ => None,
        }
    }
}
