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

    /// Number of subscriber sockets (`fanout`, `connect`: default 100; `devices`: the
    /// user's devices, default 4). `resume` and `coldwake` always use one socket.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub subscribers: Option<u64>,

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

    /// The user whose devices (`devices`), inbox (`resume`) or socket (`coldwake`) Herald
    /// publishes to. `resume` appends the run's start time, so that a second run against
    /// the same server does not find the first one's items.
    #[arg(long, default_value = "bench-user")]
    pub user: String,

    /// `resume`: notifications stored before reconnecting with `?since=0` (the server's
    /// `INBOX_MAX_ITEMS` must be at least this).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub items: u64,

    /// `resume` and `coldwake`: measurements taken; each is reported, and their median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeats: u32,

    /// `coldwake`: how long the subscriber stays silent (but for one ping halfway, which
    /// the runtime answers itself) before the cold publish. workerd evicts an object
    /// about 10 s after its last event.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_seconds: u64,

    /// `connect`: keep every socket open this long after reporting, so that a runner can
    /// sample the server's memory with all of them connected.
    #[arg(long, default_value_t = 0)]
    pub hold_seconds: u64,

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

    /// `fanout`, `devices`, `users`: how long to wait between the last socket opening and
    /// the first publish, so that the first rate step measures delivery, not the tail of
    /// the connecting (a thousand objects starting, their first writes, the collector).
    /// Default 2 s; `users` 15 s, past workerd's eviction of an object idle for about
    /// 10 s, so that every user's object has been evicted once its socket is open, as
    /// for users who get a notification now and then, rather than the thousand objects
    /// started together being evicted together in the middle of a step.
    #[arg(long)]
    pub settle_seconds: Option<u64>,

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
    /// The JavaScript Durable Object a team would write by hand for Herald's job: one per
    /// user, storing each notification in SQLite with the next seq before answering.
    #[serde(rename = "jsdo-inbox")]
    JsdoInbox,
    Socketio,
    /// Django Channels with channels_redis: a group per user, `group_send` per publish.
    Django,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Subscribers in one room (Herald: each a user of its own), open-loop publishes to
    /// the room at stepped rates.
    Fanout,
    /// Only opens the subscribers.
    Connect,
    /// One user's devices (Herald: `/v1/connect?device=…`), open-loop publishes to the
    /// user at stepped rates. For peers the same as `fanout`.
    Devices,
    /// Herald only: a reconnect with `?since=0` that replays `--items` stored items.
    Resume,
    /// Herald and jsdo: the first delivery after the object was evicted, then a warm one.
    Coldwake,
    /// Many users with one socket each (Herald: each its own user object; peers: a room
    /// per user), open-loop publishes each to one random user at stepped rates.
    Users,
}

impl Args {
    /// The wait between connecting and the first publish (see `settle_seconds`).
    pub fn settle(&self) -> std::time::Duration {
        let default = match self.scenario {
            Scenario::Users => 15,
            _ => 2,
        };
        std::time::Duration::from_secs(self.settle_seconds.unwrap_or(default))
    }

    /// How many subscriber sockets the scenario opens.
    pub fn subscriber_count(&self) -> usize {
        let given = |default: u64| self.subscribers.unwrap_or(default) as usize;
        match self.scenario {
            Scenario::Fanout | Scenario::Connect => given(100),
            Scenario::Users => given(1000),
            Scenario::Devices => given(4),
            Scenario::Resume | Scenario::Coldwake => 1,
        }
    }

    /// Refuses scenarios the target cannot run, before anything connects.
    pub fn check(&self) -> Result<(), String> {
        match (self.scenario, self.target) {
            (Scenario::Resume, Target::Herald) => Ok(()),
            (Scenario::Resume, _) => Err("resume runs against herald only".into()),
            (Scenario::Coldwake, Target::Herald | Target::Jsdo) => Ok(()),
            (Scenario::Coldwake, _) => Err(
                "coldwake runs against herald and jsdo only (the others have no object to evict)"
                    .into(),
            ),
            (Scenario::Users, Target::Ws | Target::Jsdo) => {
                Err("users needs a room per user: herald, jsdo-inbox, socketio or django".into())
            }
            _ => Ok(()),
        }
    }
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
        assert_eq!(
            args.settle().as_secs(),
            2,
            "the first step waits for connecting to settle"
        );
        let users = Args::try_parse_from(["loadgen", "--target", "herald", "--scenario", "users"]);
        assert_eq!(
            users.unwrap().settle().as_secs(),
            15,
            "past the eviction of idle objects"
        );
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
        assert_eq!(args.subscriber_count(), 500);
        assert_eq!(args.jwt_issuer.as_deref(), Some("https://i"));
        assert_eq!(args.p99_limit_ms, 50.0);
    }

    #[test]
    fn subscribers_default_per_scenario() {
        let count = |extra: &[&str]| {
            let mut argv = vec!["loadgen", "--target", "herald"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).unwrap().subscriber_count()
        };
        assert_eq!(count(&[]), 100);
        assert_eq!(count(&["--scenario", "connect"]), 100);
        assert_eq!(count(&["--scenario", "devices"]), 4);
        assert_eq!(count(&["--scenario", "devices", "--subscribers", "8"]), 8);
        assert_eq!(count(&["--scenario", "resume", "--subscribers", "8"]), 1);
        assert_eq!(count(&["--scenario", "coldwake"]), 1);
        assert_eq!(count(&["--scenario", "users"]), 1000);
        assert!(Args::try_parse_from(["loadgen", "--target", "ws", "--subscribers", "0"]).is_err());
    }

    #[test]
    fn users_run_only_where_each_user_has_a_room() {
        let check = |target: &str| {
            Args::try_parse_from(["loadgen", "--target", target, "--scenario", "users"])
                .unwrap()
                .check()
        };
        for target in ["herald", "jsdo-inbox", "socketio", "django"] {
            assert_eq!(check(target), Ok(()), "{target}");
        }
        for target in ["ws", "jsdo"] {
            assert!(check(target).is_err(), "{target}");
        }
    }

    #[test]
    fn devices_resume_and_coldwake_options() {
        let args = Args::try_parse_from([
            "loadgen",
            "--target",
            "herald",
            "--scenario",
            "resume",
            "--user",
            "reader",
            "--items",
            "500",
            "--repeats",
            "5",
        ])
        .unwrap();
        assert_eq!(args.scenario, Scenario::Resume);
        assert_eq!(
            (args.user.as_str(), args.items, args.repeats),
            ("reader", 500, 5)
        );

        let args = Args::try_parse_from([
            "loadgen",
            "--target=jsdo",
            "--scenario=coldwake",
            "--idle-seconds=12",
        ])
        .unwrap();
        assert_eq!(
            (args.scenario, args.idle_seconds, args.repeats),
            (Scenario::Coldwake, 12, 3)
        );

        let args =
            Args::try_parse_from(["loadgen", "--target", "ws", "--scenario", "devices"]).unwrap();
        assert_eq!((args.user.as_str(), args.items), ("bench-user", 10_000));
        assert_eq!((args.idle_seconds, args.hold_seconds), (15, 0));

        let args = Args::try_parse_from([
            "loadgen",
            "--target=ws",
            "--scenario=connect",
            "--hold-seconds=2",
        ])
        .unwrap();
        assert_eq!(args.hold_seconds, 2);

        for bad in [
            ["--items", "0"],
            ["--repeats", "0"],
            ["--idle-seconds", "0"],
        ] {
            let mut argv = vec!["loadgen", "--target", "herald"];
            argv.extend_from_slice(&bad);
            assert!(Args::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scenarios_a_target_cannot_run_are_refused() {
        let check = |target: &str, scenario: &str| {
            Args::try_parse_from(["loadgen", "--target", target, "--scenario", scenario])
                .unwrap()
                .check()
        };
        assert!(check("herald", "resume").is_ok());
        assert!(check("jsdo", "resume").is_err());
        assert!(check("herald", "coldwake").is_ok());
        assert!(check("jsdo", "coldwake").is_ok());
        assert!(check("socketio", "coldwake").is_err());
        assert!(check("ws", "coldwake").is_err());
        for target in ["herald", "jsdo", "socketio", "ws"] {
            assert!(check(target, "devices").is_ok());
        }
    }

    #[test]
    fn bad_rates_and_targets_are_refused() {
        assert!(
            Args::try_parse_from(["loadgen", "--target", "herald", "--rates", "10,x"]).is_err()
        );
        assert!(Args::try_parse_from(["loadgen", "--target", "herald", "--rates", "0"]).is_err());
        assert!(Args::try_parse_from(["loadgen", "--target", "nats"]).is_err());
        assert!(
            Args::try_parse_from(["loadgen", "--target", "herald", "--scenario", "x"]).is_err()
        );
    }
}
