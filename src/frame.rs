//! WebSocket frames in both directions, and the close codes.
//!
//! Frames are JSON text with a `type` field. The one exception is the literal text `ping`,
//! which the runtime answers with `pong` without waking the hub; it never reaches this
//! module. Close codes follow DESIGN.md: 40xx mean "do not reconnect with the same token",
//! 41xx mean "reconnect with backoff".

use serde::{Deserialize, Serialize};

use crate::inbox::{Notification, Seq};

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame on every socket.
    Welcome {
        user: String,
        /// This connection's id; it appears in logs next to the user.
        session: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        device: Option<String>,
        /// The latest seq stored for the user.
        seq: Seq,
        unread_count: u64,
        /// How often the client should send `ping`.
        heartbeat_ms: u64,
    },
    /// One stored notification, pushed live.
    Notification(Notification),
    /// Answer to a JSON `{"type":"ping"}` (the literal `ping` gets a literal `pong`).
    Pong,
    /// The client sent something the server could not use; the socket stays open.
    Error { code: String, message: String },
}

impl ServerFrame {
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self::Error {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

/// What a client may send, apart from the literal `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// A JSON ping from clients that cannot send bare text; answered with `pong`.
    Ping,
}

/// WebSocket close codes Herald uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum CloseCode {
    /// The client closed, or the server is done with the socket.
    Normal = 1000,
    /// A frame larger than `MAX_FRAME_BYTES`.
    TooBig = 1009,
    /// Something broke on the server; reconnecting may help.
    Internal = 1011,
    /// The client sends frames faster than allowed.
    RateLimited = 4008,
    /// The user already has `MAX_DEVICES` sockets open.
    TooManyDevices = 4009,
}

impl CloseCode {
    pub fn code(self) -> u16 {
        self as u16
    }
}
