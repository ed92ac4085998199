//! Herald: real-time notifications at the edge.
//!
//! A Cloudflare Worker authenticates WebSocket upgrades with a JWT and hands each socket to
//! the caller's `UserHub` Durable Object, which keeps every device of that user, a durable
//! inbox with per-user sequence numbers, and fans out what producers publish over HTTPS.
//! The product contract lives in `DESIGN.md` (beside the project) and `docs/`.
//!
//! # Layout
//!
//! Everything with a rule in it is tested natively, with a fake clock and in-memory
//! stores; the workers-rs glue in `edge` only carries out effects. Imports go one way,
//! up this list (`tests/layers.rs` fails on a cycle or an upward import):
//!
//! ```text
//!   edge (wasm32)          Worker, Durable Objects, SQLite stores: IO only
//!   route publish error    HTTP request rules
//!   hub room               the two hub state machines
//!   history socket timer   log rules, per-socket rules, typed timer tables,
//!   stats fanout           counters and report timing, room fan-out packing
//!   inbox room_store       store interfaces + in-memory stores
//!   config keys auth       settings and limits; signing keys and their caches; tokens
//!   access                 the privilege table: who may call which route
//!   frame                  the wire protocol
//!   attention              preferences
//!   model                  ids, names, Seq, Notification, Draft, InputError
//! ```
//!
//! - [`model`]: the product's words: [`model::Seq`], [`model::Notification`],
//!   [`model::Draft`], [`model::Receipt`], bad input ([`model::InputError`]) and the one
//!   name charset every room, device and event name is checked with.
//! - [`attention`]: preferences (batch window, focus, quiet hours in a time zone, muted
//!   events, minimum priority) and what they mean for one notification at one moment.
//! - [`frame`]: WebSocket frames in both directions and the close codes.
//! - [`config`]: the deployment's settings and limits, read from `[vars]` and secrets, and
//!   which URLs Herald may call out to ([`config::outbound_url`]).
//! - [`keys`]: JWK sets (unusable keys skipped, not fatal) and one JWKS URL's cache rules:
//!   freshness from `Cache-Control`, at most one refetch a minute, the last good set kept.
//! - [`auth`]: bearer extraction from an upgrade, JWT verification against an algorithm
//!   allow-list with keys bound to their issuer, claim checks at a given `now`.
//! - [`access`]: the one table of credentials and rights, and the check every route's
//!   caller goes through.
//! - [`inbox`]: the stored notification log of one user (`Inbox` trait, in-memory store).
//! - [`history`]: the rules of a seq-numbered log, shared by a user's inbox and a room's
//!   history: storing a draft (idempotency), replaying after a cursor, retention.
//! - [`socket`]: what every client socket is held to: frame size and rate, and closing at
//!   token expiry (4001) or after silence (1001).
//! - [`timer`]: the typed timer table each hub fills; the alarm goes to its earliest slot.
//! - [`stats`]: the counters behind `GET /v1/stats`: what each object counts, when it
//!   reports (throttled), how reports merge without double counting.
//! - [`fanout`]: frames on their way to a room's sockets, packed into one `burst` batch
//!   while the room is busy.
//! - [`hub`]: the sans-IO core of a `UserHub`: connects, publishes, client frames and the
//!   alarm in, `Effect`s and the next deadline out.
//! - [`room_store`]: what a room's root keeps beside its history (`RoomStore` trait,
//!   in-memory store): members, departures, shard sockets and their confirmations.
//! - [`room`]: the sans-IO core of a `RoomHub`: grants, admission, shard placement and
//!   retirement, presence with a grace period and shard leases, the typing throttle,
//!   client events; events in, `Effect`s and a timer table out, like [`hub`].
//! - [`route`]: which route a method and path name, and the 404/405 answers (`Allow`).
//! - [`publish`]: parsing and validating a producer's publish request into notifications,
//!   grouping it by user and by room, the drafts filed in room members' inboxes, and the
//!   202's body.
//! - [`error`]: the one place where every failure becomes an HTTP status and JSON body.
//! - `edge` (wasm32 only) maps requests, sockets and storage onto the core and decides
//!   nothing:
//!   - `api` (the Worker: routes, upgrades, dev mode), `producer` (the publish path),
//!     `http` (bounded bodies, assets, CORS), `call` (which object, and one way to call it),
//!     `keys` (the per-isolate verifier and JWKS fetches);
//!   - `user_hub` and `room_hub` (with `routes`, and the room's `send` and `shard`): the
//!     Durable Objects, over one `runner` (accept, refuse, close handshake, alarm);
//!   - `sql_inbox` and `sql_room` (schemas in `schema/`): the SQLite stores; `stats`: the
//!     `StatsHub` object and each object's counters; `log`: one JSON line per event.

pub mod access;
pub mod attention;
pub mod auth;
pub mod config;
pub mod error;
pub mod fanout;
pub mod frame;
pub mod history;
pub mod hub;
pub mod inbox;
pub mod keys;
pub mod model;
pub mod publish;
pub mod room;
pub mod room_store;
pub mod route;
pub mod socket;
pub mod stats;
pub mod timer;

#[cfg(target_arch = "wasm32")]
mod edge;
