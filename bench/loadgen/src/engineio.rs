//! The few Engine.IO v4 / Socket.IO 4 packets a subscriber meets over a raw WebSocket:
//! one WebSocket text frame is one Engine.IO packet, whose first character is its type;
//! Socket.IO packets ride inside Engine.IO `message` (4) packets with a type of their own.

/// What the client sends after the open packet: Socket.IO CONNECT to the main namespace.
pub const CONNECT: &str = "40";
/// The answer to an Engine.IO ping (v4: the server pings, the client pongs).
pub const PONG: &str = "3";

#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0{"sid":…,"pingInterval":…}`: the handshake, JSON attached.
    Open(&'a str),
    /// `1`: the server is closing.
    Close,
    /// `2` (optionally with a probe payload): answer with [`PONG`].
    Ping,
    /// `40{"sid":…}`: Socket.IO connected to the main namespace.
    Connected(&'a str),
    /// `44{…}`: the namespace refused us.
    ConnectError(&'a str),
    /// `42["name",args…]` (possibly with an ack id before the `[`): an event; `args` is
    /// the text from the `[`, handed to the `"t":` scanner as is.
    Event { name: &'a str, args: &'a str },
    /// Anything else (pong, noop, upgrade, acks, other namespaces): ignored.
    Other,
}

pub fn parse(frame: &str) -> Packet<'_> {
    let mut chars = frame.chars();
    match (chars.next(), chars.next()) {
        (Some('0'), _) => Packet::Open(&frame[1..]),
        (Some('1'), _) => Packet::Close,
        (Some('2'), _) => Packet::Ping,
        (Some('4'), Some('0')) => Packet::Connected(&frame[2..]),
        (Some('4'), Some('4')) => Packet::ConnectError(&frame[2..]),
        (Some('4'), Some('2')) => parse_event(&frame[2..]),
        _ => Packet::Other,
    }
}

/// `["name",…]` after an optional numeric ack id. Events in other namespaces (`/ns,[…]`)
/// are not ours and fall through to `Other`.
fn parse_event(rest: &str) -> Packet<'_> {
    let args = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(quoted) = args.strip_prefix("[\"") else {
        return Packet::Other;
    };
    // Event names are plain identifiers; no escape handling needed for ours.
    match quoted.find('"') {
        Some(end) => Packet::Event {
            name: &quoted[..end],
            args,
        },
        None => Packet::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_packet() {
        let open = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        match parse(open) {
            Packet::Open(json) => assert!(json.starts_with("{\"sid\"") && json.ends_with('}')),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ping_close_and_connect() {
        assert_eq!(parse("2"), Packet::Ping);
        assert_eq!(parse("2probe"), Packet::Ping);
        assert_eq!(parse("1"), Packet::Close);
        assert_eq!(parse("3"), Packet::Other);
        assert_eq!(
            parse(r#"40{"sid":"wZX3oN0bSVIhsaknAAAI"}"#),
            Packet::Connected(r#"{"sid":"wZX3oN0bSVIhsaknAAAI"}"#)
        );
        assert_eq!(
            parse(r#"44{"message":"Not authorized"}"#),
            Packet::ConnectError(r#"{"message":"Not authorized"}"#)
        );
        assert_eq!(parse(""), Packet::Other);
    }

    #[test]
    fn event_packets() {
        let frame = r#"42["notification",{"t":1763971200000000,"n":1}]"#;
        assert_eq!(
            parse(frame),
            Packet::Event {
                name: "notification",
                args: r#"["notification",{"t":1763971200000000,"n":1}]"#
            }
        );
        // With an ack id.
        assert_eq!(
            parse(r#"4213["notification",{}]"#),
            Packet::Event {
                name: "notification",
                args: r#"["notification",{}]"#
            }
        );
        // Another namespace, or a malformed event, is not ours.
        assert_eq!(parse(r#"42/admin,["notification",{}]"#), Packet::Other);
        assert_eq!(parse("42[notification]"), Packet::Other);
        assert_eq!(parse("42[\"unterminated"), Packet::Other);
    }
}
