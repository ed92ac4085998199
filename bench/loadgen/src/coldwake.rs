//! `coldwake` (Herald and jsdo): what an evicted Durable Object adds to a delivery. One
//! subscriber connects, then stays silent for `--idle-seconds` (workerd evicts an object
//! about 10 s after its last event, and the hibernated socket stays open) but for one
//! `ping` halfway, which the runtime answers without waking the object, as a client's
//! heartbeat would be. Then one publish, which has to start the object again (cold), and at
//! once a second one (warm), each timed from just before its publish request until the
//! subscriber has it.
//!
//! Herald's subscriber is a user socket and the publishes go to the user's inbox
//! (`to.users`), the common path; jsdo's is its one room, as in `fanout`. Every repeat
//! opens a fresh socket, so that Herald's idle-socket alarm (due 75 s after a socket's last
//! frame) cannot fire during a wait and wake the object early.

use crate::audience::Audience;
use crate::cli::{Args, Scenario, Target};
use crate::scan::stamps;
use crate::schedule::unix_us;
use crate::stats::{median, ms};
use crate::subscriber::{self, Incoming, Ws};
use crate::{http, publish};
use futures_util::SinkExt;
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// A delivery not seen by then is a failure rather than a very slow wake.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Serialize)]
struct ColdwakeResult {
    scenario: Scenario,
    target: Target,
    /// What the publishes address: Herald's user inbox, or the peer's room.
    publish_to: &'static str,
    idle_seconds: u64,
    repeats: Vec<Wake>,
    median_cold_ms: Option<f64>,
    median_warm_ms: Option<f64>,
}

#[derive(Serialize)]
struct Wake {
    /// Publish to delivery, the object evicted before it.
    cold_ms: f64,
    /// The same right after, the object awake.
    warm_ms: f64,
}

pub async fn run(args: &Args) -> Result<(), String> {
    let audience = Audience::of(args);
    let mut client = http::Client::new(&args.addr);
    let idle = Duration::from_secs(args.idle_seconds);
    let mut n = 0;
    let mut repeats = Vec::new();
    for _ in 0..args.repeats {
        let mut ws = subscriber::open(args, &audience, 0, None).await?;
        tokio::time::sleep(idle / 2).await;
        ws.send(Message::text("ping"))
            .await
            .map_err(|e| format!("ping: {e}"))?;
        tokio::time::sleep(idle - idle / 2).await;
        // Connecting reaches the runtime, never the object; done now, so that both
        // publishes go out on a connection that is already open.
        client
            .reconnect()
            .await
            .map_err(|e| format!("connecting to publish: {e}"))?;
        let cold = deliver(args, &mut ws, &mut client, &audience, n).await?;
        let warm = deliver(args, &mut ws, &mut client, &audience, n + 1).await?;
        n += 2;
        subscriber::close(ws).await;
        repeats.push(Wake {
            cold_ms: ms(cold),
            warm_ms: ms(warm),
        });
    }
    let result = ColdwakeResult {
        scenario: args.scenario,
        target: args.target,
        publish_to: if args.target == Target::Herald {
            "user"
        } else {
            "room"
        },
        idle_seconds: args.idle_seconds,
        median_cold_ms: median(&repeats.iter().map(|w| w.cold_ms).collect::<Vec<_>>()),
        median_warm_ms: median(&repeats.iter().map(|w| w.warm_ms).collect::<Vec<_>>()),
        repeats,
    };
    println!(
        "{}",
        serde_json::to_string(&result).expect("result serialises")
    );
    Ok(())
}

/// Publishes publish `n` and waits for it on `ws`: the time from just before the request
/// until the frame arrived. The request and the wait run together, since the frame may
/// well arrive before the publish is answered.
async fn deliver(
    args: &Args,
    ws: &mut Ws,
    client: &mut http::Client,
    audience: &Audience,
    n: u64,
) -> Result<Duration, String> {
    let started = Instant::now();
    let t_us = unix_us();
    let body = publish::body(args.target, audience, t_us, n);
    let path = publish::path(args.target, None);
    let post = publish::post(client, &path, &args.publish_key, &body);
    let arrival = async {
        loop {
            let text = subscriber::next_text(ws).await?;
            let arrived = started.elapsed();
            if let Incoming::Deliveries(text) = subscriber::classify(args.target, &text) {
                if stamps(text).any(|t| t == t_us) {
                    return Ok::<_, String>(arrived);
                }
            }
        }
    };
    let arrival = async {
        tokio::time::timeout(DELIVERY_TIMEOUT, arrival)
            .await
            .map_err(|_| {
                format!(
                    "publish {n} not delivered within {} s",
                    DELIVERY_TIMEOUT.as_secs()
                )
            })?
    };
    let (posted, arrived) = tokio::join!(post, arrival);
    posted?;
    arrived
}
