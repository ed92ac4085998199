//! `connect`: only opens the subscribers (in one room, for Herald) and reports how long
//! that took; optionally holds them open so that the server's memory can be sampled.

use crate::audience::Audience;
use crate::cli::{Args, Scenario, Target};
use crate::stats::{max_ms, ms, quantile_ms, Recorder};
use crate::subscriber;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Serialize)]
struct ConnectResult {
    scenario: Scenario,
    target: Target,
    subscribers: usize,
    connected: usize,
    failed: usize,
    connect_p50_ms: Option<f64>,
    connect_p99_ms: Option<f64>,
    connect_max_ms: Option<f64>,
    total_ms: f64,
}

pub async fn run(args: &Args) -> Result<(), String> {
    let started = Instant::now();
    let opened = subscriber::open_all(args, &Audience::of(args), Arc::new(Recorder::new(1))).await;
    let total = started.elapsed();
    let result = ConnectResult {
        scenario: args.scenario,
        target: args.target,
        subscribers: args.subscriber_count(),
        connected: opened.connected,
        failed: opened.failed,
        connect_p50_ms: quantile_ms(&opened.connect_us, 0.5),
        connect_p99_ms: quantile_ms(&opened.connect_us, 0.99),
        connect_max_ms: max_ms(&opened.connect_us),
        total_ms: ms(total),
    };
    println!(
        "{}",
        serde_json::to_string(&result).expect("result serialises")
    );
    if opened.connected == 0 {
        return Err("no subscriber could connect".into());
    }
    // The sockets live as long as the process; they close when it exits.
    tokio::time::sleep(Duration::from_secs(args.hold_seconds)).await;
    Ok(())
}
