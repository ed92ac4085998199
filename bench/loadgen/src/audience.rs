//! Whom a Herald publish reaches, which decides where each subscriber connects, whose
//! token it carries and what a publish's `to` says. Peers have a single room and no use
//! for it.

use crate::cli::{Args, Scenario};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every subscriber is a user of its own (`u0`, `u1`, …) with a socket in this room,
    /// and publishes go to the room.
    Room(String),
    /// Every subscriber is a device (`d1`, `d2`, …) of this one user on a user socket, and
    /// publishes go to the user's inbox.
    User(String),
}

impl Audience {
    /// The audience a scenario measures: a room for `fanout` and `connect`, the user for
    /// the others (`coldwake` uses the user inbox because it is the common path).
    pub fn of(args: &Args) -> Self {
        match args.scenario {
            Scenario::Fanout | Scenario::Connect => Audience::Room(args.room.clone()),
            Scenario::Devices | Scenario::Resume | Scenario::Coldwake => {
                Audience::User(args.user.clone())
            }
        }
    }

    /// The token subject of subscriber `i`.
    pub fn subject(&self, i: usize) -> String {
        match self {
            Audience::Room(_) => format!("u{i}"),
            Audience::User(user) => user.clone(),
        }
    }

    /// The path and query subscriber `i` connects to; `since` asks for a replay of
    /// everything stored after that seq.
    pub fn path(&self, i: usize, since: Option<u64>) -> String {
        let since = since.map(|seq| format!("since={seq}"));
        match self {
            Audience::Room(room) => match since {
                Some(since) => format!("/v1/rooms/{room}/connect?{since}"),
                None => format!("/v1/rooms/{room}/connect"),
            },
            Audience::User(_) => {
                let device = format!("device=d{}", i + 1);
                match since {
                    Some(since) => format!("/v1/connect?{device}&{since}"),
                    None => format!("/v1/connect?{device}"),
                }
            }
        }
    }

    /// A publish's `to` object, as JSON.
    pub fn to_json(&self) -> String {
        let quote = |s: &str| serde_json::to_string(s).expect("a string serialises");
        match self {
            Audience::Room(room) => format!(r#"{{"room":{}}}"#, quote(room)),
            Audience::User(user) => format!(r#"{{"users":[{}]}}"#, quote(user)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn scenarios_pick_their_audience() {
        let of = |scenario: &str| {
            Audience::of(
                &Args::try_parse_from([
                    "loadgen",
                    "--target",
                    "herald",
                    "--scenario",
                    scenario,
                    "--room",
                    "bench:r",
                    "--user",
                    "ann",
                ])
                .unwrap(),
            )
        };
        assert_eq!(of("fanout"), Audience::Room("bench:r".into()));
        assert_eq!(of("connect"), Audience::Room("bench:r".into()));
        for scenario in ["devices", "resume", "coldwake"] {
            assert_eq!(of(scenario), Audience::User("ann".into()));
        }
    }

    #[test]
    fn a_room_has_one_user_per_socket() {
        let room = Audience::Room("bench:room".into());
        assert_eq!(
            (room.subject(0), room.subject(7)),
            ("u0".into(), "u7".into())
        );
        assert_eq!(room.path(3, None), "/v1/rooms/bench:room/connect");
        assert_eq!(
            room.path(3, Some(0)),
            "/v1/rooms/bench:room/connect?since=0"
        );
        assert_eq!(room.to_json(), r#"{"room":"bench:room"}"#);
    }

    #[test]
    fn a_user_has_one_device_per_socket() {
        let user = Audience::User("bench-user".into());
        assert_eq!(
            (user.subject(0), user.subject(3)),
            ("bench-user".into(), "bench-user".into())
        );
        assert_eq!(user.path(0, None), "/v1/connect?device=d1");
        assert_eq!(user.path(3, None), "/v1/connect?device=d4");
        assert_eq!(user.path(0, Some(0)), "/v1/connect?device=d1&since=0");
        assert_eq!(user.to_json(), r#"{"users":["bench-user"]}"#);
        // Whatever the user id, `to` stays valid JSON.
        let odd = Audience::User(r#"a"b"#.into()).to_json();
        let parsed: serde_json::Value = serde_json::from_str(&odd).unwrap();
        assert_eq!(parsed["users"][0], r#"a"b"#);
    }
}
