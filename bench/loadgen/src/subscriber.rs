//! Subscriber sockets: opening them (with each target's handshake) and the per-socket task
//! that timestamps and records every delivery.

use crate::cli::{Args, Target};
use crate::engineio::{self, Packet};
use crate::jwt;
use crate::scan::{find_t, is_herald_notification};
use crate::schedule::unix_us;
use crate::stats::{histogram, Recorder};
use futures_util::{stream, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A socket that has not finished its handshake by then counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The outcome of opening every subscriber.
pub struct Opened {
    pub connected: usize,
    pub failed: usize,
    /// Time from starting a socket's TCP connect until it is ready to receive (µs).
    pub connect_us: Histogram<u64>,
    /// Sockets that have ended since; a non-zero value explains missing deliveries.
    pub closed: Arc<AtomicUsize>,
}

/// Opens `args.subscribers` sockets, `args.connect_concurrency` at a time, and leaves a
/// reader task on each that feeds `recorder` until the process exits.
pub async fn open_all(args: &Args, recorder: Arc<Recorder>) -> Opened {
    let now_s = unix_us() / 1_000_000;
    let closed = Arc::new(AtomicUsize::new(0));
    let mut results = stream::iter(0..args.subscribers)
        .map(|i| {
            let token = (args.target == Target::Herald).then(|| {
                let claims = jwt::Claims::bench(
                    i,
                    now_s,
                    args.jwt_issuer.as_deref(),
                    args.jwt_audience.as_deref(),
                );
                jwt::sign(&claims, args.jwt_secret.as_bytes())
            });
            async move {
                let started = Instant::now();
                let ws = tokio::time::timeout(CONNECT_TIMEOUT, connect(args, token))
                    .await
                    .unwrap_or_else(|_| Err("handshake timed out".into()))?;
                Ok::<_, String>((i, ws, started.elapsed()))
            }
        })
        .buffer_unordered(args.connect_concurrency.max(1));

    let mut opened = Opened {
        connected: 0,
        failed: 0,
        connect_us: histogram(),
        closed: closed.clone(),
    };
    while let Some(result) = results.next().await {
        match result {
            Ok((i, ws, took)) => {
                opened.connected += 1;
                opened.connect_us.saturating_record(took.as_micros() as u64);
                tokio::spawn(read(ws, args.target, i, recorder.clone(), closed.clone()));
            }
            Err(e) => {
                if opened.failed == 0 {
                    eprintln!("loadgen: subscriber failed to connect: {e}");
                }
                opened.failed += 1;
            }
        }
    }
    opened
}

/// One socket through its target's handshake, until it is ready to receive publishes.
async fn connect(args: &Args, token: Option<String>) -> Result<Ws, String> {
    let url = match args.target {
        Target::Herald => format!("ws://{}/v1/rooms/{}/connect", args.addr, args.room),
        Target::Ws | Target::Jsdo => format!("ws://{}/ws", args.addr),
        Target::Socketio => format!("ws://{}/socket.io/?EIO=4&transport=websocket", args.addr),
    };
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    if let Some(token) = token {
        // The browser transport: Herald answers `herald.v1` and never echoes the token.
        let protocols = HeaderValue::from_str(&format!("herald.v1, bearer.{token}"))
            .map_err(|e| e.to_string())?;
        request
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, protocols);
    }
    // Nagle off: a latency benchmark must not wait for a fuller segment.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .map_err(|e| e.to_string())?;

    match args.target {
        // `welcome` comes first; waiting for it proves the token and the room were
        // accepted and the socket is in the room before anything is published.
        Target::Herald => {
            let first = next_text(&mut ws).await?;
            if !first.contains("\"type\":\"welcome\"") {
                return Err(format!("expected welcome, got {first}"));
            }
        }
        Target::Ws | Target::Jsdo => {}
        // Engine.IO open, then Socket.IO CONNECT to the main namespace.
        Target::Socketio => {
            let open = next_text(&mut ws).await?;
            if !matches!(engineio::parse(&open), Packet::Open(_)) {
                return Err(format!("expected an Engine.IO open packet, got {open}"));
            }
            ws.send(Message::text(engineio::CONNECT))
                .await
                .map_err(|e| e.to_string())?;
            loop {
                let frame = next_text(&mut ws).await?;
                match engineio::parse(&frame) {
                    Packet::Connected(_) => break,
                    Packet::Ping => ws
                        .send(Message::text(engineio::PONG))
                        .await
                        .map_err(|e| e.to_string())?,
                    Packet::ConnectError(why) => return Err(format!("Socket.IO refused: {why}")),
                    _ => {}
                }
            }
        }
    }
    Ok(ws)
}

async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
            Some(Ok(Message::Close(frame))) => {
                return Err(format!("closed during handshake: {frame:?}"))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed during handshake".into()),
        }
    }
}

/// Reads until the socket ends: timestamps each frame on arrival, picks out deliveries and
/// records their latency. Socket.IO pings are answered here, or the server drops us.
async fn read(
    mut ws: Ws,
    target: Target,
    i: usize,
    recorder: Arc<Recorder>,
    closed: Arc<AtomicUsize>,
) {
    while let Some(Ok(message)) = ws.next().await {
        let received_us = unix_us();
        let Message::Text(text) = message else {
            continue;
        };
        let delivery = match target {
            Target::Herald => is_herald_notification(&text).then_some(&*text),
            // These servers send only what was published, verbatim.
            Target::Ws | Target::Jsdo => Some(&*text),
            Target::Socketio => match engineio::parse(&text) {
                Packet::Event {
                    name: "notification",
                    args,
                } => Some(args),
                Packet::Ping => {
                    if ws.send(Message::text(engineio::PONG)).await.is_err() {
                        break;
                    }
                    None
                }
                Packet::Close => break,
                _ => None,
            },
        };
        if let Some(t_us) = delivery.and_then(find_t) {
            recorder.record(i, t_us, received_us);
        }
    }
    closed.fetch_add(1, Ordering::Relaxed);
}
