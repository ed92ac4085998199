//! The open-loop publish schedule. Send times are fixed before the step starts, so a slow
//! server cannot slow the publisher down and hide its own latency (coordinated omission):
//! a send that happens late is stamped with the time it *should* have gone out, and the
//! delay shows up in the measured latency.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Sends woken this much after their slot still count as on time: tokio's timer has 1 ms
/// granularity, so a wake-up up to about a millisecond late is the timer, not the server.
pub const LATE_AFTER: Duration = Duration::from_millis(2);

/// Offsets from the step's start of `rate × seconds` sends, evenly spaced `1/rate` apart.
pub fn offsets(rate: u32, seconds: u64) -> Vec<Duration> {
    let count = u64::from(rate) * seconds;
    // Nanosecond integer math: no drift accumulates over long steps.
    (0..count)
        .map(|k| Duration::from_nanos(k * 1_000_000_000 / u64::from(rate)))
        .collect()
}

/// Ties the monotonic clock the sender sleeps on to the wall clock subscribers read, so a
/// scheduled offset can be written into the payload as unix microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub start: Instant,
    pub start_unix_us: u64,
}

impl Clock {
    pub fn now() -> Self {
        Clock {
            start: Instant::now(),
            start_unix_us: unix_us(),
        }
    }

    /// What goes into a send's payload and whether it went out late.
    pub fn stamp(&self, offset: Duration, sent_at: Instant) -> Stamp {
        let scheduled = self.start + offset;
        Stamp {
            t_us: self.start_unix_us + offset.as_micros() as u64,
            late: sent_at.saturating_duration_since(scheduled) > LATE_AFTER,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The scheduled send time, unix µs — never the actual one.
    pub t_us: u64,
    pub late: bool,
}

/// Wall-clock time in unix microseconds.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_are_evenly_spaced_at_the_rate() {
        let s = offsets(50, 2);
        assert_eq!(s.len(), 100);
        assert_eq!(s[0], Duration::ZERO);
        for pair in s.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::from_millis(20));
        }
        assert_eq!(*s.last().unwrap(), Duration::from_millis(1980));
    }

    #[test]
    fn uneven_rates_do_not_drift() {
        let s = offsets(3, 10);
        assert_eq!(s.len(), 30);
        // k/3 s exactly, truncated to the nanosecond, never accumulating rounding error.
        assert_eq!(s[3], Duration::from_secs(1));
        assert_eq!(s[29], Duration::from_nanos(29_000_000_000 / 3));
        let gaps: Vec<_> = s.windows(2).map(|p| (p[1] - p[0]).as_nanos()).collect();
        assert!(gaps.iter().all(|&g| g == 333_333_333 || g == 333_333_334));
    }

    #[test]
    fn late_sends_keep_their_scheduled_stamp() {
        let clock = Clock {
            start: Instant::now(),
            start_unix_us: 1_000_000_000,
        };
        let offset = Duration::from_millis(500);
        let on_time = clock.stamp(offset, clock.start + offset + Duration::from_millis(1));
        assert_eq!(
            on_time,
            Stamp {
                t_us: 1_000_500_000,
                late: false
            }
        );
        // 40 ms behind: still stamped 1_000_500_000, so the 40 ms shows up as latency.
        let late = clock.stamp(offset, clock.start + offset + Duration::from_millis(40));
        assert_eq!(
            late,
            Stamp {
                t_us: 1_000_500_000,
                late: true
            }
        );
        // Early (cannot happen with sleep_until, but must not underflow).
        assert!(!clock.stamp(offset, clock.start).late);
    }
}
