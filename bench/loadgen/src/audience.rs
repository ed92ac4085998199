//! Whom a publish reaches, which decides where each subscriber connects, whose token it
//! carries and what a publish's `to` says. Peers have a single room, except in the
//! `users` scenario, where each user is a room of its own there too (`?user=` on the
//! socket and on the publish).

use crate::cli::{Args, Scenario};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every subscriber is a user of its own (`u0`, `u1`, …) with a socket in this room,
    /// and publishes go to the room.
    Room(String),
    /// Every subscriber is a device (`d1`, `d2`, …) of this one user on a user socket, and
    /// publishes go to the user's inbox.
    User(String),
    /// Subscriber `i` is user `<prefix><i>` of `count`, with one socket of its own; each
    /// publish goes to one of them, picked at random (reproducibly, from the publish's
    /// number): Herald's common case, every publish a call into one user's object.
    Users { prefix: String, count: usize },
}

impl Audience {
    /// The audience a scenario measures: a room for `fanout` and `connect`, the user for
    /// the others (`coldwake` uses the user inbox because it is the common path).
    pub fn of(args: &Args) -> Self {
        match args.scenario {
            Scenario::Fanout | Scenario::Connect => Audience::Room(args.room.clone()),
            Scenario::Users => Audience::Users {
                prefix: format!("{}-", args.user),
                count: args.subscriber_count(),
            },
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
            Audience::Users { prefix, .. } => format!("{prefix}{i}"),
        }
    }

    /// The user publish `n` goes to, in the `users` scenario.
    pub fn recipient(&self, n: u64) -> Option<String> {
        match self {
            Audience::Users { count, .. } => {
                Some(self.subject((mix(n) % (*count).max(1) as u64) as usize))
            }
            _ => None,
        }
    }

    /// How many of `connected` sockets one publish reaches.
    pub fn reached(&self, connected: usize) -> u64 {
        match self {
            Audience::Users { .. } => 1,
            _ => connected as u64,
        }
    }

    /// The `?user=` a peer's socket or publish carries, in the `users` scenario.
    pub fn peer_query(user: Option<&str>) -> String {
        user.map(|u| format!("?user={u}")).unwrap_or_default()
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
            Audience::Users { .. } => match since {
                Some(since) => format!("/v1/connect?device=d1&{since}"),
                None => "/v1/connect?device=d1".to_string(),
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

    /// Publish `n`'s `to` object, as JSON.
    pub fn to_json(&self, n: u64) -> String {
        let quote = |s: &str| serde_json::to_string(s).expect("a string serialises");
        match self {
            Audience::Room(room) => format!(r#"{{"room":{}}}"#, quote(room)),
            Audience::User(user) => format!(r#"{{"users":[{}]}}"#, quote(user)),
            Audience::Users { .. } => {
                let user = self.recipient(n).expect("users have recipients");
                format!(r#"{{"users":[{}]}}"#, quote(&user))
            }
        }
    }
}

/// SplitMix64's finaliser: publish numbers spread evenly over the users, the same in
/// every run and for every target.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
        assert_eq!(room.to_json(0), r#"{"room":"bench:room"}"#);
        assert_eq!(room.reached(100), 100);
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
        assert_eq!(user.to_json(0), r#"{"users":["bench-user"]}"#);
        // Whatever the user id, `to` stays valid JSON.
        let odd = Audience::User(r#"a"b"#.into()).to_json(0);
        let parsed: serde_json::Value = serde_json::from_str(&odd).unwrap();
        assert_eq!(parsed["users"][0], r#"a"b"#);
    }

    #[test]
    fn users_each_have_a_socket_and_publishes_spread_over_them() {
        let users = Audience::Users {
            prefix: "bench-user-".into(),
            count: 10,
        };
        assert_eq!(users.subject(7), "bench-user-7");
        assert_eq!(users.path(7, None), "/v1/connect?device=d1");
        assert_eq!(users.reached(10), 1);
        let picked: std::collections::HashSet<String> =
            (0..200).filter_map(|n| users.recipient(n)).collect();
        assert_eq!(
            picked.len(),
            10,
            "200 publishes reach every one of 10 users"
        );
        assert_eq!(users.recipient(5), users.recipient(5), "reproducible");
        let to = users.to_json(5);
        assert_eq!(
            to,
            format!(r#"{{"users":["{}"]}}"#, users.recipient(5).unwrap())
        );
        assert_eq!(Audience::peer_query(Some("u1")), "?user=u1");
        assert_eq!(Audience::peer_query(None), "");
    }
}
