//! Finds the send timestamp in a received frame without parsing the JSON: every frame on
//! the hot path is scanned once, and a full parse per frame per subscriber would make the
//! load generator, not the server, the bottleneck.

/// The unsigned integer value of the first `"t"` key in `text`: the first `"t"` string
/// that is followed (after optional whitespace) by `:` and a number. Occurrences that are
/// not keys (`"t"` as a value, an escaped `\"t\"` inside a string) are skipped.
pub fn find_t(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(pos) = text[from..].find("\"t\"") {
        let start = from + pos;
        from = start + 3;
        // `\"t\"` inside a string is not a key.
        if start > 0 && bytes[start - 1] == b'\\' {
            continue;
        }
        let mut i = skip_ws(bytes, from);
        if bytes.get(i) != Some(&b':') {
            continue;
        }
        i = skip_ws(bytes, i + 1);
        return parse_digits(&bytes[i..]);
    }
    None
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// Leading ASCII digits as a number; `None` if there are none or they overflow.
fn parse_digits(bytes: &[u8]) -> Option<u64> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    bytes[..digits].iter().try_fold(0u64, |n, &b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Whether a Herald frame is a `notification` (the only frames that carry our publishes;
/// `welcome`, `presence` and `pong` are skipped). Herald serialises `type` first, but a
/// substring test keeps this independent of field order at a cost of a few ns per frame.
pub fn is_herald_notification(text: &str) -> bool {
    text.contains("\"type\":\"notification\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herald_notification_frames() {
        let frame = r#"{"type":"notification","id":"ntf_01J","seq":7,"event":"bench.tick","data":{"n":3,"t":1763971200123456},"priority":"normal","room":"bench:room","created_at":1763971200130}"#;
        assert!(is_herald_notification(frame));
        assert_eq!(find_t(frame), Some(1763971200123456));
        assert!(!is_herald_notification(
            r#"{"type":"presence","action":"joined","user":"u1"}"#
        ));
        assert!(!is_herald_notification("pong"));
    }

    #[test]
    fn raw_payloads() {
        assert_eq!(
            find_t(r#"{"t":1763971200000001,"n":0}"#),
            Some(1763971200000001)
        );
        assert_eq!(find_t(r#"{ "n" : 4 , "t" : 42 }"#), Some(42));
        assert_eq!(find_t(r#"{"t":5}"#), Some(5));
    }

    #[test]
    fn socketio_event_frames() {
        let frame = r#"42["notification",{"t":1763971200999999,"n":12}]"#;
        assert_eq!(find_t(frame), Some(1763971200999999));
    }

    #[test]
    fn only_keys_count() {
        // "t" as a value, an escaped "t" inside a string and a longer key come first.
        let frame = r#"{"event":"t","title":"say \"t\": 9","type":"x","data":{"t":77}}"#;
        assert_eq!(find_t(frame), Some(77));
        // The first key wins, even in a nested object.
        assert_eq!(find_t(r#"{"a":{"t":1},"t":2}"#), Some(1));
    }

    #[test]
    fn missing_or_malformed() {
        assert_eq!(find_t(""), None);
        assert_eq!(find_t("pong"), None);
        assert_eq!(find_t(r#"{"type":"welcome","seq":3}"#), None);
        assert_eq!(find_t(r#"{"t":"soon"}"#), None);
        assert_eq!(find_t(r#"{"t":-5}"#), None);
        assert_eq!(find_t(r#"{"t":99999999999999999999999}"#), None);
        assert_eq!(find_t(r#"{"t":"#), None);
    }
}
