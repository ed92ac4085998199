//! Herald: real-time notifications at the edge.
//!
//! A Cloudflare Worker authenticates WebSocket upgrades with a JWT and hands each socket to
//! the caller's `UserHub` Durable Object, which keeps every device of that user, a durable
//! inbox with per-user sequence numbers, and fans out what producers publish over HTTPS.
//! The product contract lives in `DESIGN.md` (beside the project) and `docs/`.
//!
//! # Layout
//!
//! The crate is split so that everything with a rule in it can be tested natively, with a
//! fake clock and an in-memory store, and the workers-rs glue stays thin:
//!
//! - [`config`]: the deployment's settings and limits, read from `[vars]` and secrets.
//! - [`error`]: bad input (`InputError`) and the one place where every failure becomes an
//!   HTTP status and JSON body.
//! - [`auth`]: bearer extraction from an upgrade, JWT verification against an algorithm
//!   allow-list, claim checks at a given `now`, and the publish-key comparison.
//! - [`route`]: which route a method and path name, and the 404/405 answers.
//! - [`frame`]: WebSocket frames in both directions and the close codes.
//! - [`publish`]: parsing and validating a producer's publish request into notifications.
//! - [`inbox`]: the stored notification log of one user (`Inbox` trait, in-memory store).
//! - [`attention`]: preferences (batch window, focus, quiet hours in a time zone, muted
//!   events, minimum priority) and what they mean for one notification at one moment.
//! - [`hub`]: the sans-IO core of a `UserHub`: connects, publishes, client frames and the
//!   alarm in, `Effect`s and the next deadline out.
//! - [`room`]: project rooms: grants, presence with a grace period, client events,
//!   shard placement, the roster of a room object's sockets (a room's history is an
//!   inbox run by [`hub`]).
//! - [`fanout`]: frames on their way to a room's sockets, packed into one `burst` batch
//!   while the room is busy.
//! - [`stats`]: the counters behind `GET /v1/stats`: what each object counts, when it
//!   reports (throttled), how reports merge without double counting, who may read them.
//! - `edge` (wasm32 only): the Worker entry point and the `UserHub` Durable Object, mapping
//!   requests, sockets and SQLite storage onto the core; the `RoomHub` object; and the
//!   `StatsHub` object that sums the hubs' reports.

pub mod attention;
pub mod auth;
pub mod config;
pub mod error;
pub mod fanout;
pub mod frame;
pub mod hub;
pub mod inbox;
pub mod publish;
pub mod room;
pub mod route;
pub mod stats;

#[cfg(target_arch = "wasm32")]
mod edge;
