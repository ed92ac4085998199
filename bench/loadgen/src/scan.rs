//! Finds the send timestamps in a received frame without parsing the JSON: every frame on
//! the hot path is scanned once, and a full parse per frame per subscriber would make the
//! load generator, not the server, the bottleneck.

/// The unsigned integer values of every `"t"` key in `text`, in order: each `"t"` string
/// followed (after optional whitespace) by `:` and a number. Occurrences that are not keys
/// (`"t"` as a value, an escaped `\"t\"` inside a string) and keys whose value is not an
/// unsigned integer are skipped.
///
/// A notification carries one stamp; a Herald `batch` carries one per item, each in the
/// item's `data`, so iterating them yields one delivery per item.
pub fn stamps(text: &str) -> Stamps<'_> {
    Stamps { text, from: 0 }
}

/// The iterator of [`stamps`].
pub struct Stamps<'a> {
    text: &'a str,
    /// Where the search for the next `"t"` resumes.
    from: usize,
}

impl Iterator for Stamps<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let bytes = self.text.as_bytes();
        while let Some(pos) = self.text[self.from..].find("\"t\"") {
            let start = self.from + pos;
            self.from = start + 3;
            // `\"t\"` inside a string is not a key.
            if start > 0 && bytes[start - 1] == b'\\' {
                continue;
            }
            let i = skip_ws(bytes, self.from);
            if bytes.get(i) != Some(&b':') {
                continue;
            }
            if let Some(t) = parse_digits(&bytes[skip_ws(bytes, i + 1)..]) {
                return Some(t);
            }
        }
        self.from = self.text.len();
        None
    }
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

/// Whether a Herald frame carries live deliveries: a `notification`, or a `batch` of them
/// (the server coalesces a hot room's notifications into `burst` batches; a user's batch
/// window and the end of focus send batches too). A `replay` batch is the past resent on
/// a resume, not a delivery of anything just published, and does not count; `welcome`,
/// `presence`, `unread_count`, `synced` and `pong` carry nothing. Herald serialises `type`
/// first, but a substring test keeps this independent of field order at a cost of a few
/// ns per frame.
pub fn is_herald_delivery(text: &str) -> bool {
    text.contains("\"type\":\"notification\"")
        || (text.contains("\"type\":\"batch\"") && !text.contains("\"reason\":\"replay\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<u64> {
        stamps(text).collect()
    }

    #[test]
    fn herald_notification_frames() {
        let frame = r#"{"type":"notification","id":"ntf_01J","seq":7,"event":"bench.tick","data":{"n":3,"t":1763971200123456},"priority":"normal","room":"bench:room","created_at":1763971200130}"#;
        assert!(is_herald_delivery(frame));
        assert_eq!(all(frame), vec![1763971200123456]);
        assert!(!is_herald_delivery(
            r#"{"type":"presence","action":"joined","user":"u1"}"#
        ));
        assert!(!is_herald_delivery(
            r#"{"type":"unread_count","unread_count":4}"#
        ));
        assert!(!is_herald_delivery(r#"{"type":"synced","seq":9}"#));
        assert!(!is_herald_delivery("pong"));
    }

    #[test]
    fn a_burst_batch_is_one_delivery_per_item() {
        let frame = r#"{"type":"batch","reason":"burst","items":[{"id":"ntf_1","seq":8,"event":"bench.tick","data":{"t":1763971200000001,"n":4},"priority":"normal","room":"bench:room","created_at":1763971200002},{"id":"ntf_2","seq":9,"event":"bench.tick","data":{"t":1763971200000501,"n":5},"priority":"normal","room":"bench:room","created_at":1763971200002},{"id":"ntf_3","seq":10,"event":"bench.tick","data":{"t":1763971200001001,"n":6},"priority":"normal","room":"bench:room","created_at":1763971200003}]}"#;
        assert!(is_herald_delivery(frame));
        assert_eq!(
            all(frame),
            vec![1763971200000001, 1763971200000501, 1763971200001001]
        );
        // A user's window batch counts too; an empty batch delivers nothing.
        assert!(is_herald_delivery(
            r#"{"type":"batch","reason":"window","items":[{"data":{"t":5}}]}"#
        ));
        let empty = r#"{"type":"batch","reason":"burst","items":[]}"#;
        assert!(is_herald_delivery(empty));
        assert_eq!(all(empty), Vec::<u64>::new());
    }

    #[test]
    fn replay_batches_are_not_deliveries() {
        let frame = r#"{"type":"batch","reason":"replay","items":[{"id":"ntf_1","seq":1,"event":"bench.tick","data":{"t":1,"n":0},"read":false,"created_at":1}]}"#;
        assert!(!is_herald_delivery(frame));
    }

    #[test]
    fn raw_payloads() {
        assert_eq!(
            all(r#"{"t":1763971200000001,"n":0}"#),
            vec![1763971200000001]
        );
        assert_eq!(all(r#"{ "n" : 4 , "t" : 42 }"#), vec![42]);
        assert_eq!(all(r#"{"t":5}"#), vec![5]);
    }

    #[test]
    fn socketio_event_frames() {
        let frame = r#"42["notification",{"t":1763971200999999,"n":12}]"#;
        assert_eq!(all(frame), vec![1763971200999999]);
    }

    #[test]
    fn only_keys_count() {
        // "t" as a value, an escaped "t" inside a string and a longer key come first.
        let frame = r#"{"event":"t","title":"say \"t\": 9","type":"x","data":{"t":77}}"#;
        assert_eq!(all(frame), vec![77]);
        // Nested or not, in order of appearance.
        assert_eq!(all(r#"{"a":{"t":1},"t":2}"#), vec![1, 2]);
    }

    #[test]
    fn malformed_values_are_skipped_not_fatal() {
        assert_eq!(all(""), Vec::<u64>::new());
        assert_eq!(all("pong"), Vec::<u64>::new());
        assert_eq!(all(r#"{"type":"welcome","seq":3}"#), Vec::<u64>::new());
        assert_eq!(all(r#"{"t":"soon"}"#), Vec::<u64>::new());
        assert_eq!(all(r#"{"t":-5}"#), Vec::<u64>::new());
        assert_eq!(all(r#"{"t":99999999999999999999999}"#), Vec::<u64>::new());
        assert_eq!(all(r#"{"t":"#), Vec::<u64>::new());
        // A bad stamp does not hide the good ones after it.
        assert_eq!(all(r#"[{"t":"x"},{"t":3}]"#), vec![3]);
        // Exhausted stays exhausted.
        let mut it = stamps(r#"{"t":1}"#);
        assert_eq!((it.next(), it.next(), it.next()), (Some(1), None, None));
    }
}
