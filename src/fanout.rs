//! Room fan-out: frames on their way to a room's sockets, packed together when the room
//! is busy, and trimmed for a socket whose first frames already covered part of them.
//!
//! A room object pays the runtime's per-frame cost once per socket for every frame it
//! sends. When publishes arrive faster than one fan-out finishes, sending each on its own
//! falls behind; packing what queued up into one `batch` frame (reason `burst`) pays that
//! cost once for many. A quiet room sends every frame at once. Pure rules over `now`.
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};

use crate::frame::{BatchReason, PresenceAction, ServerFrame};
use crate::model::Seq;

/// What sending one frame to one socket costs the runtime, in microseconds (measured
/// locally: about 20 to 30 µs in workerd, the same for a JavaScript object).
pub const SEND_COST_US: u64 = 25;

/// Slack on top of a fan-out's estimated duration, for the requests that were on their
/// way when it ended.
pub const SLACK_MS: u64 = 2;

/// How long a publish in a busy room waits for others before the fan-out. Publishes that
/// arrive meanwhile share its frames; with 1,000 sockets, 2 ms caught too few of them to
/// lift the object's ceiling, 20 ms added more latency than it saved, 10 ms roughly
/// doubled the ceiling (see bench/results).
pub const GATHER_MS: u64 = 10;

/// A frame for every socket of a room but `except` (the sender of a typing notice, say).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    /// What every addressed socket gets.
    pub frame: ServerFrame,
    /// The session of the one socket left out; `None` reaches every socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<String>,
}

impl Outgoing {
    /// `frame` for every socket of the room.
    pub fn to_all(frame: ServerFrame) -> Self {
        Self {
            frame,
            except: None,
        }
    }

    /// `frame` for every socket but `session`'s, whose own action it announces.
    pub fn to_others(frame: ServerFrame, session: &str) -> Self {
        Self {
            frame,
            except: Some(session.to_owned()),
        }
    }

    /// What a joining socket still needs of this frame once its first frames covered the
    /// history up to `latest`: history items up to `latest` are dropped (from a batch,
    /// just those items), so a resume is exactly-once. Anything else passes unchanged.
    pub fn after(&self, latest: Seq) -> Option<Self> {
        let frame = match &self.frame {
            ServerFrame::Notification(n) | ServerFrame::Message(n) if n.seq <= latest => {
                return None
            }
            ServerFrame::Batch { reason, items } => {
                let items: Vec<_> = items.iter().filter(|n| n.seq > latest).cloned().collect();
                if items.is_empty() {
                    return None;
                }
                ServerFrame::Batch {
                    reason: *reason,
                    items,
                }
            }
            other => other.clone(),
        };
        Some(Self {
            frame,
            except: self.except.clone(),
        })
    }
}

/// Packs what queued up into as few frames as possible without reordering anything:
/// each run of notifications bound for every socket becomes one `burst` batch, and each
/// run of `joined` (or `left`) announcements one presence frame listing the users.
/// Everything else keeps its place, so sockets see frames in the order they were queued.
pub fn coalesce(frames: Vec<Outgoing>) -> Vec<Outgoing> {
    let mut out: Vec<Outgoing> = Vec::with_capacity(frames.len());
    for next in frames {
        let rest = match out.last_mut() {
            Some(last) => absorb(last, next),
            None => Some(next),
        };
        out.extend(rest);
    }
    out
}

/// Takes `next` into `last` when the two can travel as one frame; hands it back if not.
fn absorb(last: &mut Outgoing, next: Outgoing) -> Option<Outgoing> {
    let last_to_all = last.except.is_none();
    match (&mut last.frame, next) {
        (
            ServerFrame::Batch {
                reason: BatchReason::Burst,
                items,
            },
            Outgoing {
                frame: ServerFrame::Notification(item),
                except: None,
            },
        ) if last_to_all && ServerFrame::fits(items, &item) => {
            items.push(item);
            None
        }
        (
            ServerFrame::Notification(first),
            Outgoing {
                frame: ServerFrame::Notification(item),
                except: None,
            },
        ) if last_to_all && ServerFrame::fits(std::slice::from_ref(first), &item) => {
            last.frame = ServerFrame::Batch {
                reason: BatchReason::Burst,
                items: vec![first.clone(), item],
            };
            None
        }
        // Announcements name someone else to each socket, but a joiner who also reads
        // its own name loses nothing (it is in the `online` list it got), so a merged
        // announcement goes to every socket.
        (
            ServerFrame::Presence {
                action,
                user,
                users,
            },
            Outgoing {
                frame:
                    ServerFrame::Presence {
                        action: next_action,
                        user: Some(next_user),
                        users: None,
                    },
                ..
            },
        ) if *action == next_action && *action != PresenceAction::Online => {
            let mut named = users.take().unwrap_or_default();
            named.extend(user.take());
            named.push(next_user);
            *users = Some(named);
            last.except = None;
            None
        }
        (_, next) => Some(next),
    }
}

/// Whether the room is busy, and so whether the next publish goes out at once or waits
/// to gather others.
///
/// Busy means this publish queued behind the last fan-out: it arrived before that
/// fan-out, estimated from its start and its socket count, could have ended. The end
/// cannot be timed, because the runtime's clock stands still while code runs (it moves
/// between events). A room publishing slower than its fan-outs take is never busy, so
/// gathering adds latency only where it is what keeps the room from falling behind.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pace {
    busy_until: u64,
}

impl Pace {
    /// How long a publish arriving at `now_ms` waits before its fan-out.
    pub fn wait_ms(&self, now_ms: u64) -> u64 {
        if now_ms < self.busy_until {
            GATHER_MS
        } else {
            0
        }
    }

    /// A fan-out to `sockets` sockets began at `now_ms`.
    pub fn sent(&mut self, now_ms: u64, sockets: usize) {
        let duration_ms = (sockets as u64 * SEND_COST_US).div_ceil(1000);
        self.busy_until = now_ms + duration_ms + SLACK_MS;
    }
}
