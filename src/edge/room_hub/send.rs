//! How a room's frames reach its sockets: the root's effects carried out, fan-out
//! gathered while the room is busy, then sent to the root's own sockets and to every
//! shard holding sockets, which relay them to theirs.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use worker::{Delay, Headers, Method, WebSocket};

use super::RoomHub;
use crate::edge::{call, internal_error, log, now_ms, runner};
use crate::error::ApiError;
use crate::fanout::{coalesce, Outgoing};
use crate::room::{Effect, Member};
use crate::stats::{self, Sends};

impl RoomHub {
    /// Carries out a room's effects; `origin` is the socket the event came from.
    pub(super) async fn execute(
        &self,
        origin: Option<&WebSocket>,
        effects: Vec<Effect>,
    ) -> std::result::Result<(), ApiError> {
        let mut out = Vec::new();
        for effect in effects {
            match effect {
                Effect::Fanout(frame) => out.push(frame),
                Effect::Reply(frame) => {
                    if let Some(ws) = origin {
                        let _ = runner::send(&self.state, &self.stats, ws, &frame);
                    }
                }
                Effect::Close {
                    session,
                    code,
                    reason,
                } => {
                    log::event(
                        "close",
                        json!({ "session": session, "code": code.code(), "reason": reason }),
                    );
                    if let Some(ws) = runner::tagged(&self.state, &session) {
                        let _ = runner::close(&ws, code, &reason);
                    }
                }
                Effect::Stored => self.stats.touch(),
            }
        }
        self.broadcast(out).await
    }

    /// Root: sends to every socket of the room, here and on every shard holding sockets.
    /// In a busy room (see [`Pace`]) the caller that finds the outbox empty waits a
    /// moment, then sends everything gathered meanwhile, runs of notifications packed
    /// into one `batch`; callers that find it filling leave their frames to that one.
    pub(super) async fn broadcast(
        &self,
        frames: Vec<Outgoing>,
    ) -> std::result::Result<(), ApiError> {
        // This caller sends if it brought the first frames; an earlier one is gathering.
        let sends = {
            let mut outbox = self.outbox.borrow_mut();
            let first = outbox.is_empty();
            outbox.extend(frames);
            first && !outbox.is_empty()
        };
        if !sends {
            return Ok(());
        }
        let wait = self.pace.get().wait_ms(now_ms());
        if wait > 0 {
            Delay::from(Duration::from_millis(wait)).await;
        }
        let frames = coalesce(std::mem::take(&mut *self.outbox.borrow_mut()));
        let mut pace = self.pace.get();
        pace.sent(now_ms(), self.awake().roster.sockets());
        self.pace.set(pace);
        self.send_local(&frames);
        self.send_to_shards(&frames).await
    }

    pub(super) async fn send_to_shards(
        &self,
        frames: &[Outgoing],
    ) -> std::result::Result<(), ApiError> {
        let shards = self.with_room(|room| room.shards())?;
        if shards.is_empty() {
            return Ok(());
        }
        let name = self.room_name()?;
        let body = serde_json::to_vec(frames).map_err(internal_error)?;
        let calls = shards.into_iter().map(|n| {
            let body = body.clone();
            let name = name.clone();
            async move {
                let shard = call::shard_stub(&self.env, &name, n)?;
                call::call(shard, Method::Post, "/fanout", Headers::new(), Some(body)).await
            }
        });
        for result in join_all(calls).await {
            if let Err(e) = result {
                log::event(
                    "error",
                    json!({ "room": name, "message": format!("fan-out: {}", e.message) }),
                );
            }
        }
        Ok(())
    }

    /// Sends to this object's own sockets, holding frames for sockets still joining.
    /// Each frame is serialized once, whatever the socket count. The sockets to skip or
    /// hold are found by their session tags.
    pub(super) fn send_local(&self, frames: &[Outgoing]) {
        let texts: Vec<String> = frames.iter().map(|out| out.frame.to_json()).collect();
        let mut pending = self.pending.borrow_mut();
        // The hot path: a plain fan-out to everyone, one crossing into JavaScript per frame.
        if pending.is_empty() && frames.iter().all(|out| out.except.is_none()) {
            for (out, text) in frames.iter().zip(&texts) {
                let sends = runner::send_to_all(&self.state, text);
                self.stats
                    .sent(&self.state, stats::items(&out.frame), sends);
            }
            return;
        }
        let held: Vec<(String, WebSocket)> = pending
            .keys()
            .filter_map(|session| Some((session.clone(), runner::tagged(&self.state, session)?)))
            .collect();
        let skipped: Vec<Option<WebSocket>> = frames
            .iter()
            .map(|out| {
                out.except
                    .as_deref()
                    .and_then(|s| runner::tagged(&self.state, s))
            })
            .collect();
        let same = |a: &WebSocket, b: &WebSocket| {
            AsRef::<worker::wasm_bindgen::JsValue>::as_ref(a.as_ref())
                == AsRef::<worker::wasm_bindgen::JsValue>::as_ref(b.as_ref())
        };
        for (ws, _) in runner::attached::<Member>(&self.state) {
            let holding = held.iter().find(|(_, h)| same(h, &ws));
            for ((out, text), skip) in frames.iter().zip(&texts).zip(&skipped) {
                if skip.as_ref().is_some_and(|s| same(s, &ws)) {
                    continue;
                }
                match holding.and_then(|(session, _)| pending.get_mut(session)) {
                    Some(waiting) => waiting.push(out.clone()),
                    // A socket closing under us misses nothing: history is stored.
                    None => {
                        let sent = ws.send_with_str(text).is_ok();
                        self.stats
                            .sent(&self.state, stats::items(&out.frame), Sends::one(sent));
                    }
                }
            }
        }
    }
}
