//! Latency histograms (microseconds) and the shared recorder the subscriber tasks feed.

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// 1 µs to 60 s at 3 significant digits; anything slower is clamped to 60 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The value at quantile `q` (0..=1) in milliseconds, rounded to µs; `None` when empty.
pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| us_to_ms(h.value_at_quantile(q)))
}

pub fn max_ms(h: &Histogram<u64>) -> Option<f64> {
    (!h.is_empty()).then(|| us_to_ms(h.max()))
}

/// The median of `values` (the mean of the middle two for an even count), to 3 decimals
/// as the ms values it takes are given to the µs; `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let median = match sorted.len() {
        0 => return None,
        n if n % 2 == 1 => sorted[mid],
        _ => (sorted[mid - 1] + sorted[mid]) / 2.0,
    };
    Some((median * 1000.0).round() / 1000.0)
}

/// A duration in milliseconds, to the µs.
pub fn ms(d: Duration) -> f64 {
    us_to_ms(d.as_micros() as u64)
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Latencies of one rate step, recorded from every subscriber task. Sharded so hundreds of
/// tasks on several threads do not all queue on one lock.
pub struct Recorder {
    shards: Vec<Mutex<Shard>>,
    /// Frames stamped before this (unix µs) belong to an earlier step and are ignored.
    since_us: AtomicU64,
}

struct Shard {
    latencies: Histogram<u64>,
    delivered: u64,
}

impl Recorder {
    pub fn new(shards: usize) -> Self {
        let shard = || {
            Mutex::new(Shard {
                latencies: histogram(),
                delivered: 0,
            })
        };
        Recorder {
            shards: (0..shards.max(1)).map(|_| shard()).collect(),
            since_us: AtomicU64::new(0),
        }
    }

    /// A frame carrying deliveries stamped `stamps` (one per notification, several for a
    /// batch) arrived at `now_us` on subscriber `subscriber`: each is one delivery with a
    /// latency of its own.
    pub fn record(&self, subscriber: usize, stamps: impl IntoIterator<Item = u64>, now_us: u64) {
        let since_us = self.since_us.load(Ordering::Relaxed);
        let mut stamps = stamps
            .into_iter()
            .filter(|&t_us| t_us >= since_us)
            .peekable();
        if stamps.peek().is_none() {
            return;
        }
        let mut shard = self.shards[subscriber % self.shards.len()].lock().unwrap();
        for t_us in stamps {
            shard.delivered += 1;
            // Same machine, same clock; a negative difference is rounding, not time travel.
            shard
                .latencies
                .saturating_record(now_us.saturating_sub(t_us).max(1));
        }
    }

    /// Starts a new step: forget everything and ignore frames stamped before `since_us`.
    pub fn reset(&self, since_us: u64) {
        // Raise the bar first so a straggler cannot slip in between the two.
        self.since_us.store(since_us, Ordering::Relaxed);
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap();
            shard.latencies.reset();
            shard.delivered = 0;
        }
    }

    pub fn delivered(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap().delivered)
            .sum()
    }

    /// All shards merged.
    pub fn snapshot(&self) -> (Histogram<u64>, u64) {
        let mut merged = histogram();
        let mut delivered = 0;
        for shard in &self.shards {
            let shard = shard.lock().unwrap();
            merged.add(&shard.latencies).expect("same bounds");
            delivered += shard.delivered;
        }
        (merged, delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_data() {
        // 1..=1000 ms, once each.
        let mut h = histogram();
        for ms in 1..=1000u64 {
            h.record(ms * 1000).unwrap();
        }
        let close = |got: Option<f64>, want: f64| {
            let got = got.unwrap();
            // hdrhistogram keeps 3 significant digits: within 0.1 %.
            assert!((got - want).abs() <= want * 0.001, "got {got}, want {want}");
        };
        close(quantile_ms(&h, 0.5), 500.0);
        close(quantile_ms(&h, 0.9), 900.0);
        close(quantile_ms(&h, 0.99), 990.0);
        close(max_ms(&h), 1000.0);
    }

    #[test]
    fn a_single_slow_outlier_sets_max_and_p99_only_when_it_is_1_percent() {
        let mut h = histogram();
        for _ in 0..99 {
            h.record(2_000).unwrap();
        }
        h.record(250_000).unwrap();
        assert_eq!(quantile_ms(&h, 0.5), Some(2.0));
        assert_eq!(quantile_ms(&h, 0.99), Some(2.0));
        assert!((max_ms(&h).unwrap() - 250.0).abs() < 0.25);
        h.record(250_000).unwrap(); // now 2 of 101 are slow: above the 99th percentile
        assert!(quantile_ms(&h, 0.99).unwrap() > 249.0);
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        let h = histogram();
        assert_eq!(quantile_ms(&h, 0.5), None);
        assert_eq!(max_ms(&h), None);
    }

    #[test]
    fn huge_values_are_clamped_not_lost() {
        let mut h = histogram();
        h.saturating_record(u64::MAX);
        assert_eq!(h.len(), 1);
        assert!(max_ms(&h).unwrap() >= 60_000.0);
    }

    #[test]
    fn recorder_merges_shards_and_drops_earlier_steps() {
        let r = Recorder::new(4);
        r.reset(1_000);
        for sub in 0..8 {
            r.record(sub, [1_000], 1_000 + 2_000); // 2 ms: exact at 3 digits (< 2048 µs)
        }
        r.record(0, [999], 50_000); // stamped before the step: a straggler from the last one
        assert_eq!(r.delivered(), 8);
        let (h, delivered) = r.snapshot();
        assert_eq!(delivered, 8);
        assert_eq!(quantile_ms(&h, 0.99), Some(2.0));

        r.reset(2_000);
        assert_eq!(r.delivered(), 0);
        r.record(3, [2_500], 2_000); // receive clock a hair behind: recorded as 1 µs
        let (h, delivered) = r.snapshot();
        assert_eq!((delivered, h.max()), (1, 1));
    }

    #[test]
    fn a_batch_frame_is_one_delivery_per_stamp_each_with_its_own_latency() {
        let r = Recorder::new(2);
        r.reset(10_000);
        // Three items coalesced into one frame that arrived at 20_000: the oldest waited
        // longest. One stamp from the previous step rides along and is dropped.
        r.record(1, [9_000, 11_000, 14_000, 18_000], 20_000);
        let (h, delivered) = r.snapshot();
        assert_eq!(delivered, 3);
        assert_eq!(h.min(), 2_000);
        assert!((9_000..9_010).contains(&h.max()), "{}", h.max()); // 3 significant digits
                                                                   // A frame with nothing from this step records nothing.
        r.record(0, [], 30_000);
        r.record(0, [1], 30_000);
        assert_eq!(r.delivered(), 3);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 10.0]), Some(3.0));
        assert_eq!(median(&[8.008, 5.584]), Some(6.796));
    }
}
