//! Subscriber sockets: opening them (with each target's handshake), telling deliveries
//! apart from the other frames, and the per-socket task that timestamps and records every
//! delivery.

use crate::audience::Audience;
use crate::cli::{Args, Target};
use crate::engineio::{self, Packet};
use crate::jwt;
use crate::scan::{is_herald_delivery, stamps};
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

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

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

/// Opens `args.subscriber_count()` sockets for `audience`, `args.connect_concurrency` at a
/// time, and leaves a reader task on each that feeds `recorder` until the process exits.
pub async fn open_all(args: &Args, audience: &Audience, recorder: Arc<Recorder>) -> Opened {
    let closed = Arc::new(AtomicUsize::new(0));
    let mut results = stream::iter(0..args.subscriber_count())
        .map(|i| async move {
            let started = Instant::now();
            let ws = open(args, audience, i, None).await?;
            Ok::<_, String>((i, ws, started.elapsed()))
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

/// Opens subscriber `i` of `audience` (resuming after `since`, for Herald) and takes it
/// through its target's handshake, within [`CONNECT_TIMEOUT`].
pub async fn open(
    args: &Args,
    audience: &Audience,
    i: usize,
    since: Option<u64>,
) -> Result<Ws, String> {
    let token = (args.target == Target::Herald).then(|| {
        let claims = jwt::Claims::bench(
            audience.subject(i),
            unix_us() / 1_000_000,
            args.jwt_issuer.as_deref(),
            args.jwt_audience.as_deref(),
        );
        jwt::sign(&claims, args.jwt_secret.as_bytes())
    });
    let url = match args.target {
        Target::Herald => format!("ws://{}{}", args.addr, audience.path(i, since)),
        Target::Ws | Target::Jsdo | Target::JsdoInbox | Target::Django => {
            format!("ws://{}/ws{}", args.addr, peer_query(audience, i))
        }
        Target::Socketio => {
            let user = peer_query(audience, i).replace('?', "&");
            format!(
                "ws://{}/socket.io/?EIO=4&transport=websocket{user}",
                args.addr
            )
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connect(args.target, url, token))
        .await
        .unwrap_or_else(|_| Err("handshake timed out".into()))
}

/// The `?user=` of subscriber `i` on a peer, in the `users` scenario.
fn peer_query(audience: &Audience, i: usize) -> String {
    let user = matches!(audience, Audience::Users { .. }).then(|| audience.subject(i));
    Audience::peer_query(user.as_deref())
}

/// One socket through its target's handshake, until it is ready to receive publishes.
async fn connect(target: Target, url: String, token: Option<String>) -> Result<Ws, String> {
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

    match target {
        // `welcome` comes first; waiting for it proves the token (and the room) were
        // accepted and the socket is listening before anything is published.
        Target::Herald => {
            let first = next_text(&mut ws).await?;
            if !first.contains("\"type\":\"welcome\"") {
                return Err(format!("expected welcome, got {first}"));
            }
        }
        Target::Ws | Target::Jsdo | Target::JsdoInbox | Target::Django => {}
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

/// The next text frame, skipping control and binary frames.
pub async fn next_text(ws: &mut Ws) -> Result<String, String> {
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

/// Closes `ws` with a close frame and waits briefly for the server's, so that the server
/// sees a normal close rather than a dropped connection.
pub async fn close(mut ws: Ws) {
    if ws.close(None).await.is_ok() {
        let drained = async { while let Some(Ok(_)) = ws.next().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(2), drained).await;
    }
}

/// What a received text frame is to a subscriber.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// Text whose [`stamps`] are this frame's deliveries.
    Deliveries(&'a str),
    /// A Socket.IO ping: answer with [`engineio::PONG`] or be dropped.
    Ping,
    /// The server is closing the session.
    Close,
    /// Anything else: Herald's `welcome`, `presence`, `unread_count`, replays, …
    Other,
}

pub fn classify(target: Target, text: &str) -> Incoming<'_> {
    match target {
        Target::Herald if is_herald_delivery(text) => Incoming::Deliveries(text),
        Target::Herald => Incoming::Other,
        // These servers send only what was published, verbatim.
        Target::Ws | Target::Jsdo | Target::JsdoInbox | Target::Django => {
            Incoming::Deliveries(text)
        }
        Target::Socketio => match engineio::parse(text) {
            Packet::Event {
                name: "notification",
                args,
            } => Incoming::Deliveries(args),
            Packet::Ping => Incoming::Ping,
            Packet::Close => Incoming::Close,
            _ => Incoming::Other,
        },
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
        match classify(target, &text) {
            Incoming::Deliveries(text) => recorder.record(i, stamps(text), received_us),
            Incoming::Ping => {
                if ws.send(Message::text(engineio::PONG)).await.is_err() {
                    break;
                }
            }
            Incoming::Close => break,
            Incoming::Other => {}
        }
    }
    closed.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herald_deliveries_are_notifications_and_live_batches() {
        let notification = r#"{"type":"notification","seq":1,"data":{"t":1,"n":0}}"#;
        assert_eq!(
            classify(Target::Herald, notification),
            Incoming::Deliveries(notification)
        );
        let burst =
            r#"{"type":"batch","reason":"burst","items":[{"data":{"t":1}},{"data":{"t":2}}]}"#;
        assert_eq!(classify(Target::Herald, burst), Incoming::Deliveries(burst));
        for other in [
            r#"{"type":"welcome","user":"bench-user","seq":0}"#,
            r#"{"type":"unread_count","unread_count":3}"#,
            r#"{"type":"batch","reason":"replay","items":[{"data":{"t":1}}]}"#,
            "pong",
        ] {
            assert_eq!(classify(Target::Herald, other), Incoming::Other, "{other}");
        }
    }

    #[test]
    fn peers_send_deliveries_verbatim_and_socketio_wraps_them() {
        let raw = r#"{"t":5,"n":0}"#;
        assert_eq!(classify(Target::Jsdo, raw), Incoming::Deliveries(raw));
        assert_eq!(classify(Target::Ws, raw), Incoming::Deliveries(raw));
        assert_eq!(
            classify(Target::Socketio, r#"42["notification",{"t":5,"n":0}]"#),
            Incoming::Deliveries(r#"["notification",{"t":5,"n":0}]"#)
        );
        assert_eq!(classify(Target::Socketio, "2"), Incoming::Ping);
        assert_eq!(classify(Target::Socketio, "1"), Incoming::Close);
        assert_eq!(
            classify(Target::Socketio, r#"42["other",{}]"#),
            Incoming::Other
        );
    }
}
