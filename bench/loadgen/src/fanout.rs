//! `fanout` and `devices`: every subscriber of one audience (a room's sockets, or one
//! user's devices) gets every publish; `users`: each publish reaches the one socket of
//! one user. Sent open-loop at stepped rates; one result per rate step.

use crate::audience::Audience;
use crate::cli::{Args, Scenario, Target};
use crate::stats::{max_ms, quantile_ms, Recorder};
use crate::{publish, schedule, subscriber};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After the last publish of a step, how long deliveries still count.
const STRAGGLER_WAIT: Duration = Duration::from_secs(2);
/// Independent locks for the subscribers' recordings (see [`Recorder`]).
const RECORDER_SHARDS: usize = 32;

#[derive(Serialize)]
struct StepResult {
    scenario: Scenario,
    target: Target,
    subscribers: usize,
    rate: u32,
    published: u64,
    expected: u64,
    delivered: u64,
    deliveries_per_s: f64,
    p50_ms: Option<f64>,
    p90_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    late_sends: u64,
    connect_p50_ms: Option<f64>,
    connect_p99_ms: Option<f64>,
    publish_errors: u64,
}

pub async fn run(args: &Args) -> Result<(), String> {
    let audience = Audience::of(args);
    let recorder = Arc::new(Recorder::new(RECORDER_SHARDS));
    let opened = subscriber::open_all(args, &audience, recorder.clone()).await;
    if opened.connected == 0 {
        return Err("no subscriber could connect".into());
    }
    if opened.failed > 0 {
        eprintln!(
            "loadgen: {} of {} subscribers failed to connect",
            opened.failed,
            args.subscriber_count()
        );
    }
    tokio::time::sleep(args.settle()).await;
    let mut publisher = publish::Publisher::new(
        args.target,
        &args.addr,
        &args.publish_key,
        &audience,
        args.http_clients,
    );

    for &rate in &args.rates {
        let clock = schedule::Clock::now();
        recorder.reset(clock.start_unix_us);
        let sent = publisher.run(clock, rate, args.seconds).await;
        if let Some(e) = &sent.first_error {
            eprintln!(
                "loadgen: rate {rate}: {} publishes failed; first: {e}",
                sent.errors
            );
        }

        let expected = sent.published * audience.reached(opened.connected);
        let deadline = Instant::now() + STRAGGLER_WAIT;
        while recorder.delivered() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (latency, delivered) = recorder.snapshot();
        let closed = opened.closed.load(Ordering::Relaxed);
        if closed > 0 {
            eprintln!("loadgen: {closed} subscriber sockets have closed");
        }

        let result = StepResult {
            scenario: args.scenario,
            target: args.target,
            subscribers: opened.connected,
            rate,
            published: sent.published,
            expected,
            delivered,
            deliveries_per_s: (delivered as f64 / args.seconds as f64 * 10.0).round() / 10.0,
            p50_ms: quantile_ms(&latency, 0.5),
            p90_ms: quantile_ms(&latency, 0.9),
            p99_ms: quantile_ms(&latency, 0.99),
            max_ms: max_ms(&latency),
            late_sends: sent.late,
            connect_p50_ms: quantile_ms(&opened.connect_us, 0.5),
            connect_p99_ms: quantile_ms(&opened.connect_us, 0.99),
            publish_errors: sent.errors,
        };
        println!(
            "{}",
            serde_json::to_string(&result).expect("result serialises")
        );

        if sent.published == 0 {
            return Err(format!("nothing was published at rate {rate}"));
        }
        // Past the limit (or with nothing measured at all) a higher rate tells nothing new.
        match result.p99_ms {
            Some(p99) if p99 <= args.p99_limit_ms => {}
            _ => break,
        }
    }
    Ok(())
}
