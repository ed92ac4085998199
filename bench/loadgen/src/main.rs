//! Herald load generator: opens sockets against one target over loopback, publishes over
//! HTTP and prints one JSON result per line on stdout (diagnostics go to stderr), for a
//! runner script to collect.
//!
//! # Layout
//!
//! - `cli`: the command line; which scenarios a target can run.
//! - `audience`: a Herald room, one user's devices or many users: where subscribers
//!   connect, what a publish's `to` says.
//! - `fanout`: the `fanout`, `devices` and `users` scenarios, open-loop publishes at
//!   stepped rates.
//! - `connect`: the `connect` scenario, only opening sockets.
//! - `resume`: the `resume` scenario, a `?since=0` replay of a stored inbox.
//! - `coldwake`: the `coldwake` scenario, a delivery through an evicted object.
//! - `subscriber`: opening sockets with each target's handshake; the per-socket reader.
//! - `scan`: the stamps in a frame, found without parsing it.
//! - `publish`: the open-loop publisher and the publish request bodies.
//! - `schedule`: send times fixed in advance; the clock they are stamped with.
//! - `stats`: latency histograms, the shared recorder, medians.
//! - `http`: a minimal keep-alive HTTP/1.1 POST client.
//! - `jwt`: HS256 tokens for the subscribers.
//! - `engineio`: the Engine.IO / Socket.IO packets a subscriber meets.

mod audience;
mod cli;
mod coldwake;
mod connect;
mod engineio;
mod fanout;
mod http;
mod jwt;
mod publish;
mod resume;
mod scan;
mod schedule;
mod stats;
mod subscriber;

use clap::Parser;
use cli::{Args, Scenario};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.check() {
        eprintln!("loadgen: {e}");
        return ExitCode::FAILURE;
    }
    let result = match args.scenario {
        Scenario::Fanout | Scenario::Devices | Scenario::Users => fanout::run(&args).await,
        Scenario::Connect => connect::run(&args).await,
        Scenario::Resume => resume::run(&args).await,
        Scenario::Coldwake => coldwake::run(&args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
