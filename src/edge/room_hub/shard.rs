//! The shard side of a room, and the root's side of talking to its shards: handing a
//! socket over, a shard socket's first frames, its frames forwarded to the root, the
//! root's fan-out relayed to its sockets, and the confirmations that keep the root's
//! presence lease on them.

use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{Headers, Method, Request, Response, WebSocket, WebSocketIncomingMessage};

use super::{log_join, RoomHub};
use crate::config::Limits;
use crate::edge::{
    call, internal, internal_error, log, now_ms, number_header, required_header, runner,
};
use crate::error::ApiError;
use crate::fanout::Outgoing;
use crate::frame::{CloseCode, ServerFrame};
use crate::model::Seq;
use crate::room::{self, Effect, FirstFrames, Member};
use crate::socket::SocketView;

/// A shard's socket asking the root for its first frames.
#[derive(Deserialize, Serialize)]
struct ShardJoin {
    member: Member,
    since: Option<Seq>,
}

/// A frame a shard socket sent, for the root to handle.
#[derive(Deserialize, Serialize)]
struct ShardEvent {
    member: Member,
    text: String,
}

/// A shard's sockets (session, user), confirmed to the root.
#[derive(Deserialize, Serialize)]
struct ShardSync {
    shard: u64,
    members: Vec<(String, String)>,
}

impl RoomHub {
    /// Shard: the alarm sweeps this object's sockets and confirms the rest to the root.
    pub(super) async fn shard_alarm(
        &self,
        shard: u64,
        sockets: &[(String, SocketView)],
        limits: &Limits,
        now: u64,
    ) -> Result<(), ApiError> {
        self.execute(None, room::sweep(sockets, limits, now))
            .await?;
        let members = self
            .open_members()
            .into_iter()
            .map(|(_, m)| (m.id, m.user))
            .collect();
        let room = self.room_name()?;
        // A failed confirmation costs nothing now: the root's lease allows for it.
        if let Err(e) = self
            .root_call(&room, "/shard-sync", &ShardSync { shard, members })
            .await
        {
            log::event("error", json!({ "room": room, "message": e.message }));
        }
        Ok(())
    }

    /// Shard: a frame from one of this object's sockets. Its size and rate are checked
    /// here; the rest is the root's to decide.
    pub(super) async fn shard_frame(
        &self,
        ws: &WebSocket,
        member: &mut Member,
        message: WebSocketIncomingMessage,
        limits: &Limits,
        now: u64,
    ) -> Result<Vec<Effect>, ApiError> {
        let len = match &message {
            WebSocketIncomingMessage::String(text) => text.len(),
            WebSocketIncomingMessage::Binary(bytes) => bytes.len(),
        };
        if let Some(closing) = member.admit(limits, len, now) {
            return Ok(vec![Effect::Close {
                session: member.id.clone(),
                code: closing.code,
                reason: closing.reason,
            }]);
        }
        ws.serialize_attachment(&*member).map_err(internal_error)?;
        self.forward_frame(member, message).await
    }

    /// Root: forwards the upgrade to the member's shard. If the shard cannot take it, the
    /// socket the root counted for it is forgotten again.
    pub(super) async fn hand_to_shard(
        &self,
        req: Request,
        member: Member,
    ) -> std::result::Result<Response, ApiError> {
        let n = member.shard.unwrap_or_default();
        let headers = req.headers().clone();
        headers
            .set(internal::SHARD, &n.to_string())
            .map_err(internal_error)?;
        headers
            .set(
                internal::MEMBER,
                &serde_json::to_string(&member).map_err(internal_error)?,
            )
            .map_err(internal_error)?;
        let shard = call::shard_stub(&self.env, &member.room, n)?;
        let answer = call::call(shard, Method::Get, "/connect", headers, None).await;
        if !matches!(&answer, Ok(response) if response.status_code() == 101) {
            self.with_room(|room| room.close(&member.id, now_ms()))?;
        }
        answer
    }

    /// Shard: a socket handed over by the root, attached as the root described it. Its
    /// first frames come from the root; whatever is fanned out meanwhile waits in
    /// `pending` and follows them.
    pub(super) async fn shard_connect(
        &self,
        req: Request,
    ) -> std::result::Result<Response, ApiError> {
        let member: Member = serde_json::from_str(&required_header(&req, internal::MEMBER)?)
            .map_err(internal_error)?;
        let since = number_header(&req, internal::SINCE)?;
        if let (Ok(store), Some(n)) = (self.store(), member.shard) {
            store.borrow().set_shard(n).map_err(internal_error)?;
        }
        let (pair, server) = runner::socket_pair()?;
        self.pending
            .borrow_mut()
            .insert(member.id.clone(), Vec::new());
        runner::accept(&self.state, &server, &member.id, &member, &self.stats)?;
        self.awake().roster.add(&member.id, &member.user);
        let join = ShardJoin {
            member: member.clone(),
            since,
        };
        let first = match self.root_call(&member.room, "/shard-join", &join).await {
            Ok(answer) => call::json::<FirstFrames>(&answer).await,
            Err(e) => Err(e),
        };
        let waiting = self
            .pending
            .borrow_mut()
            .remove(&member.id)
            .unwrap_or_default();
        match first {
            Ok(first) => {
                let later = waiting.iter().filter_map(|out| out.after(first.latest));
                for frame in first
                    .frames
                    .iter()
                    .cloned()
                    .chain(later.map(|out| out.frame))
                {
                    runner::send(&self.state, &self.stats, &server, &frame)
                        .map_err(internal_error)?;
                }
                log_join(&member);
            }
            Err(e) => {
                log::event(
                    "error",
                    json!({ "room": member.room, "message": e.message }),
                );
                // The client reconnects; the root forgets the socket at the next sync.
                runner::close(&server, CloseCode::Internal, "room unavailable")
                    .map_err(internal_error)?;
            }
        }
        self.schedule().await?;
        runner::upgrade(&req, pair)
    }

    /// Shard: sends a frame that passed the checks to the root; answers its replies.
    pub(super) async fn forward_frame(
        &self,
        member: &Member,
        message: WebSocketIncomingMessage,
    ) -> std::result::Result<Vec<Effect>, ApiError> {
        let WebSocketIncomingMessage::String(text) = message else {
            return Ok(vec![Effect::Reply(ServerFrame::binary_refused())]);
        };
        let event = ShardEvent {
            member: member.clone(),
            text,
        };
        let answer = self.root_call(&member.room, "/shard-event", &event).await?;
        let replies: Vec<ServerFrame> = call::json(&answer).await?;
        Ok(replies.into_iter().map(Effect::Reply).collect())
    }

    pub(super) async fn shard_join(
        &self,
        mut req: Request,
    ) -> std::result::Result<Response, ApiError> {
        let join: ShardJoin = req.json().await.map_err(internal_error)?;
        let (first, effects) =
            self.with_room(|room| room.join(&join.member, join.since, now_ms()))?;
        self.execute(None, effects).await?;
        Response::from_json(&first).map_err(internal_error)
    }

    pub(super) async fn shard_leave(
        &self,
        mut req: Request,
    ) -> std::result::Result<Response, ApiError> {
        let session: String = req.json().await.map_err(internal_error)?;
        self.with_room(|room| room.close(&session, now_ms()))?;
        self.schedule().await?;
        Response::ok("left").map_err(internal_error)
    }

    pub(super) async fn shard_event(
        &self,
        mut req: Request,
    ) -> std::result::Result<Response, ApiError> {
        let event: ShardEvent = req.json().await.map_err(internal_error)?;
        let effects =
            self.with_room(|room| Ok(room.frame(&event.member, &event.text, now_ms())))?;
        // Replies travel back to the shard's socket; the rest is the room's to carry out.
        let mut replies = Vec::new();
        let mut rest = Vec::new();
        for effect in effects {
            match effect {
                Effect::Reply(frame) => replies.push(frame),
                other => rest.push(other),
            }
        }
        self.execute(None, rest).await?;
        Response::from_json(&replies).map_err(internal_error)
    }

    pub(super) async fn shard_sync(
        &self,
        mut req: Request,
    ) -> std::result::Result<Response, ApiError> {
        let sync: ShardSync = req.json().await.map_err(internal_error)?;
        let effects = self.with_room(|room| room.sync(sync.shard, &sync.members, now_ms()))?;
        self.execute(None, effects).await?;
        self.schedule().await?;
        Response::ok("confirmed").map_err(internal_error)
    }

    /// Shard: frames the root fans out, for this object's sockets.
    pub(super) async fn fanout(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let frames: Vec<Outgoing> = req.json().await.map_err(internal_error)?;
        self.send_local(&frames);
        Response::ok("sent").map_err(internal_error)
    }

    pub(super) async fn root_call<T: Serialize>(
        &self,
        room: &str,
        path: &str,
        body: &T,
    ) -> std::result::Result<Response, ApiError> {
        let body = serde_json::to_vec(body).map_err(internal_error)?;
        let root = call::root_stub(&self.env, room)?;
        let response = call::call(root, Method::Post, path, Headers::new(), Some(body)).await?;
        if response.status_code() != 200 {
            return Err(ApiError::unavailable(format!(
                "room root answered {}",
                response.status_code()
            )));
        }
        Ok(response)
    }
}
