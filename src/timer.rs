//! The deadlines a hub keeps, one typed table per hub: each kind of timer has its slot,
//! and the object's one alarm goes to the earliest of them.
//!
//! A hub fills the slots that apply to it; the runner in `edge` adds the stats report's
//! and sets the alarm at [`Timers::next`]. Nothing is due when every slot is empty, so an
//! object that has nothing to do keeps no alarm.
#![warn(missing_docs)]

/// Every kind of deadline either hub has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// A retention bound (age, TTL, idempotency key, device ack) removes something.
    Retention,
    /// The user's batch window closes.
    Window,
    /// Focus mode or quiet hours end while something is held for them.
    FocusEnd,
    /// A room member's grace period runs out: `left` is due unless they came back.
    PresenceGrace,
    /// A room shard has not confirmed its sockets for too long: its presence rows go.
    PresenceLease,
    /// A socket goes silent past `IDLE_TIMEOUT_MS`.
    IdleSweep,
    /// A socket's token runs out (leeway included).
    TokenExpiry,
    /// The throttled stats report is due.
    StatsReport,
}

const KINDS: usize = 8;

/// One hub's deadlines, at most one per [`Timer`] (the earliest of its kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timers {
    at: [Option<u64>; KINDS],
}

impl Timers {
    /// Keeps `at` for `timer` if it is earlier than what the slot holds.
    pub fn set(&mut self, timer: Timer, at: Option<u64>) {
        let slot = &mut self.at[timer as usize];
        *slot = match (*slot, at) {
            (Some(old), Some(new)) => Some(old.min(new)),
            (old, new) => old.or(new),
        };
    }

    /// When `timer` is due, if it is set.
    pub fn get(&self, timer: Timer) -> Option<u64> {
        self.at[timer as usize]
    }

    /// The earliest deadline of all: where the alarm goes.
    pub fn next(&self) -> Option<u64> {
        self.at.iter().flatten().copied().min()
    }
}

/// Whether an alarm must be set again for `next`, given what it is set for (`set`:
/// `None` when not known, as after a wake-up or once it fired; `Some(None)` when none is
/// set). Only an earlier deadline moves it: an alarm that turns out early runs, finds
/// nothing due and is set again, once, while moving it later (a socket's ping pushes its
/// idle sweep back on every event) would cost a storage write per event. Hence too an
/// event that cannot add a deadline of a kind it did not compute keeps the alarm.
pub fn must_move(set: Option<Option<u64>>, next: Option<u64>) -> bool {
    match (set, next) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(None), Some(_)) => true,
        (Some(Some(set)), Some(next)) => next < set,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alarm_only_moves_earlier_once_known() {
        assert!(must_move(None, None), "unknown after a wake-up: set it");
        assert!(must_move(None, Some(5)));
        assert!(must_move(Some(None), Some(5)), "none set, one due");
        assert!(must_move(Some(Some(10)), Some(5)), "an earlier deadline");
        assert!(!must_move(Some(Some(10)), Some(10)));
        assert!(
            !must_move(Some(Some(10)), Some(20)),
            "later: the early alarm re-sets"
        );
        assert!(
            !must_move(Some(Some(10)), None),
            "nothing due: it runs once, then clears"
        );
        assert!(!must_move(Some(None), None));
    }

    #[test]
    fn the_next_deadline_is_the_earliest_slot() {
        let mut timers = Timers::default();
        assert_eq!(timers.next(), None, "nothing set, no alarm");
        timers.set(Timer::Retention, Some(50));
        timers.set(Timer::IdleSweep, Some(30));
        timers.set(Timer::IdleSweep, Some(40));
        timers.set(Timer::StatsReport, None);
        assert_eq!(
            timers.get(Timer::IdleSweep),
            Some(30),
            "a slot keeps its earliest"
        );
        assert_eq!(timers.next(), Some(30));
    }
}
