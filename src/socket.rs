//! What every client socket, user or room, is held to: the frame size and rate limits
//! before a frame is looked at, and the liveness rules (close at token expiry with 4001,
//! close after `IDLE_TIMEOUT_MS` of silence with 1001) with the deadlines they set.
//!
//! Both hubs keep the per-socket state in the socket's attachment and call these rules, so
//! a room socket and a user socket are closed for exactly the same reasons at exactly the
//! same moments.
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};

use crate::auth::LEEWAY_S;
use crate::config::Limits;
use crate::frame::CloseCode;

/// A token bucket for client frames: refills at `rate` per second up to `burst`.
/// Tokens are counted in thousandths so that refills between close frames are not lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameBudget {
    milli_tokens: u64,
    refilled_at: u64,
}

impl FrameBudget {
    /// A full bucket at `now_ms`.
    pub fn full(limits: &Limits, now_ms: u64) -> Self {
        Self {
            milli_tokens: limits.frame_burst * 1000,
            refilled_at: now_ms,
        }
    }

    /// Spends one token; false when the client is over its rate.
    pub fn take(&mut self, limits: &Limits, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.refilled_at);
        // rate tokens per 1000 ms = rate milli-tokens per ms.
        self.milli_tokens =
            (self.milli_tokens + elapsed * limits.frame_rate_per_s).min(limits.frame_burst * 1000);
        // A clock that steps back must not let the same interval be credited twice.
        self.refilled_at = self.refilled_at.max(now_ms);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// Why a socket is to be closed, with the code the client acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    /// The close code (see [`CloseCode`] for which mean "reconnect").
    pub code: CloseCode,
    /// Said in an `error` frame first and in the close frame.
    pub reason: String,
}

/// Size and rate checks for one client frame of `len` bytes: a close when the frame is
/// too big or the socket over its rate, else nothing.
pub fn admit(
    budget: &mut FrameBudget,
    limits: &Limits,
    len: usize,
    now_ms: u64,
) -> Option<Closing> {
    if len > limits.max_frame_bytes {
        return Some(Closing {
            code: CloseCode::TooBig,
            reason: format!("frames are limited to {} bytes", limits.max_frame_bytes),
        });
    }
    if !budget.take(limits, now_ms) {
        return Some(Closing {
            code: CloseCode::RateLimited,
            reason: format!("more than {} frames per second", limits.frame_rate_per_s),
        });
    }
    None
}

/// The latest deadline kept: the largest integer a JavaScript number holds exactly (about
/// 285,000 years from 1970), since attachments and alarms are JavaScript values.
pub const LATEST_DEADLINE_MS: u64 = (1 << 53) - 1;

/// When a socket opened with a token expiring at `exp` (seconds) is closed: at `exp` plus
/// the leeway, in ms. An absurd `exp` saturates at [`LATEST_DEADLINE_MS`] instead of
/// wrapping to a time long past.
pub fn token_deadline(exp: Option<u64>) -> Option<u64> {
    exp.map(|exp| {
        exp.saturating_add(LEEWAY_S)
            .saturating_mul(1000)
            .min(LATEST_DEADLINE_MS)
    })
}

/// What the liveness sweep knows of one open socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketView {
    /// The latest of: connected, last client frame, last runtime-answered ping (ms).
    pub last_seen: u64,
    /// When the socket's token runs out, leeway included (ms).
    pub token_expires_at: Option<u64>,
}

impl SocketView {
    /// The view of a socket connected at `connected_at` whose last client frame came at
    /// `last_frame_at` and whose last `ping` the runtime answered at `last_ping`.
    pub fn new(
        connected_at: u64,
        last_frame_at: u64,
        last_ping: Option<u64>,
        token_expires_at: Option<u64>,
    ) -> Self {
        Self {
            last_seen: connected_at.max(last_frame_at).max(last_ping.unwrap_or(0)),
            token_expires_at,
        }
    }

    /// Whether the socket must be closed at `now_ms`, and with which code.
    pub fn liveness(&self, limits: &Limits, now_ms: u64) -> Option<(CloseCode, &'static str)> {
        if self.token_expires_at.is_some_and(|at| at <= now_ms) {
            Some((CloseCode::TokenExpired, "token expired"))
        } else if self.last_seen + limits.idle_timeout_ms <= now_ms {
            Some((CloseCode::GoingAway, "idle"))
        } else {
            None
        }
    }

    /// When the socket goes silent past the idle timeout.
    pub fn idle_at(&self, limits: &Limits) -> u64 {
        self.last_seen + limits.idle_timeout_ms
    }
}
