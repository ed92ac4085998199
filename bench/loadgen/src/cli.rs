//! Command-line options. Kept apart from main.rs so the parsing can be tested.

use clap::{Parser, ValueEnum};

/// Drives one WebSocket fan-out target over loopback and prints one JSON object per
/// scenario step on stdout.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
pub struct Args {
    /// Target address (host:port).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub addr: String,

    /// Which server protocol to speak.
    #[arg(long, value_enum)]
    pub target: Target,

    #[arg(long, value_enum, default_value_t = Scenario::Fanout)]
    pub scenario: Scenario,

    /// Number of subscriber sockets.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,

    /// Publish rates to step through, in publishes per second (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10,50,100,200",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rates: Vec<u32>,

    /// How long each rate step publishes, in seconds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,

    /// Room every subscriber joins (Herald only; its token grants `bench:*`).
    #[arg(long, default_value = "bench:room")]
    pub room: String,

    /// HS256 secret for the subscribers' tokens (Herald).
    #[arg(long, default_value = "")]
    pub jwt_secret: String,

    /// `iss` claim, when the target checks it.
    #[arg(long)]
    pub jwt_issuer: Option<String>,

    /// `aud` claim, when the target checks it.
    #[arg(long)]
    pub jwt_audience: Option<String>,

    /// Producer key sent as `Authorization: Bearer` on publishes.
    #[arg(long, default_value = "")]
    pub publish_key: String,

    /// Stop stepping up rates once a step's p99 exceeds this.
    #[arg(long, default_value_t = 100.0)]
    pub p99_limit_ms: f64,

    /// Sockets being opened at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,

    /// Concurrent keep-alive HTTP connections that publish.
    #[arg(long, default_value_t = 8)]
    pub http_clients: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Herald,
    Ws,
    Jsdo,
    Socketio,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Fanout,
    Connect,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_a_comma_list() {
        let args =
            Args::try_parse_from(["loadgen", "--target", "herald", "--rates", "10,50"]).unwrap();
        assert_eq!(args.rates, vec![10, 50]);
        assert_eq!(args.target, Target::Herald);
        assert_eq!(args.scenario, Scenario::Fanout);
        assert_eq!(args.seconds, 3);
        assert_eq!(args.room, "bench:room");
        assert_eq!(args.p99_limit_ms, 100.0);
    }

    #[test]
    fn every_option_parses() {
        let args = Args::try_parse_from([
            "loadgen",
            "--addr",
            "127.0.0.1:9000",
            "--target",
            "socketio",
            "--scenario",
            "connect",
            "--subscribers",
            "500",
            "--seconds",
            "2",
            "--room",
            "bench:x",
            "--jwt-secret",
            "s",
            "--jwt-issuer",
            "https://i",
            "--jwt-audience",
            "a",
            "--publish-key",
            "k",
            "--p99-limit-ms",
            "50",
        ])
        .unwrap();
        assert_eq!(args.addr, "127.0.0.1:9000");
        assert_eq!(args.target, Target::Socketio);
        assert_eq!(args.scenario, Scenario::Connect);
        assert_eq!(args.subscribers, 500);
        assert_eq!(args.jwt_issuer.as_deref(), Some("https://i"));
        assert_eq!(args.p99_limit_ms, 50.0);
    }

    #[test]
    fn bad_rates_and_targets_are_refused() {
        assert!(
            Args::try_parse_from(["loadgen", "--target", "herald", "--rates", "10,x"]).is_err()
        );
        assert!(Args::try_parse_from(["loadgen", "--target", "herald", "--rates", "0"]).is_err());
        assert!(Args::try_parse_from(["loadgen", "--target", "nats"]).is_err());
    }
}
