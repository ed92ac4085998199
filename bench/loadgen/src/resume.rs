//! `resume` (Herald only): stores `--items` notifications for one user through
//! `POST /v1/publish`, [`PER_REQUEST`] per request, then reconnects with `?since=0`
//! `--repeats` times and times each replay from the upgrade request until `synced`,
//! counting the items of the `replay` batches. A replay is a few hundred frames once per
//! reconnect, not a stream per subscriber, so frames are parsed in full here; the fan-out
//! scenarios only scan theirs.

use crate::audience::Audience;
use crate::cli::{Args, Scenario, Target};
use crate::schedule::unix_us;
use crate::stats::{median, ms};
use crate::{http, publish, subscriber};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Messages per publish request: the API's maximum.
const PER_REQUEST: u64 = 100;
/// A replay not finished by then is reported as a failure rather than waited for.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Serialize)]
struct ResumeResult {
    scenario: Scenario,
    target: Target,
    user: String,
    items: u64,
    /// Time to store every item, all requests one after another.
    store_ms: f64,
    repeats: Vec<Measured>,
    median_ms: Option<f64>,
    median_items_per_s: Option<f64>,
}

#[derive(Serialize)]
struct Measured {
    /// Items replayed before `synced`; a complete replay has `--items`.
    items: u64,
    /// From the upgrade request until `synced` arrived.
    ms: f64,
    items_per_s: f64,
}

pub async fn run(args: &Args) -> Result<(), String> {
    // A user of its own per run, so that a second run against the same server does not
    // find the first one's items (and a `reset` once the inbox overflows).
    let user = format!("{}-{}", args.user, unix_us() / 1000);
    let audience = Audience::User(user.clone());

    let started = Instant::now();
    let mut client = http::Client::new(&args.addr);
    for first in (0..args.items).step_by(PER_REQUEST as usize) {
        let count = PER_REQUEST.min(args.items - first);
        let body = store_body(&audience, first, count);
        publish::post(
            &mut client,
            &publish::path(Target::Herald, None),
            &args.publish_key,
            &body,
        )
        .await
        .map_err(|e| format!("storing items {first}..{}: {e}", first + count))?;
    }
    let store_ms = ms(started.elapsed());

    let mut repeats = Vec::new();
    for _ in 0..args.repeats {
        let started = Instant::now();
        let mut ws = subscriber::open(args, &audience, 0, Some(0)).await?;
        let mut replay = Replay::default();
        let items = tokio::time::timeout(REPLAY_TIMEOUT, async {
            loop {
                let text = subscriber::next_text(&mut ws).await?;
                if let Some(items) = replay.on_frame(&text)? {
                    return Ok::<_, String>(items);
                }
            }
        })
        .await
        .map_err(|_| format!("no synced within {} s", REPLAY_TIMEOUT.as_secs()))??;
        let took = started.elapsed();
        subscriber::close(ws).await;
        repeats.push(Measured {
            items,
            ms: ms(took),
            items_per_s: (items as f64 / took.as_secs_f64()).round(),
        });
    }

    let incomplete = repeats
        .iter()
        .find(|m| m.items != args.items)
        .map(|m| m.items);
    let result = ResumeResult {
        scenario: args.scenario,
        target: args.target,
        user,
        items: args.items,
        store_ms,
        median_ms: median(&repeats.iter().map(|m| m.ms).collect::<Vec<_>>()),
        median_items_per_s: median(&repeats.iter().map(|m| m.items_per_s).collect::<Vec<_>>()),
        repeats,
    };
    println!(
        "{}",
        serde_json::to_string(&result).expect("result serialises")
    );
    match incomplete {
        Some(items) => Err(format!("replayed {items} of {} items", args.items)),
        None => Ok(()),
    }
}

/// Items `first..first + count` as one publish: sized like a real notification (title,
/// body, a little data), as bench/replay.mjs stores them.
fn store_body(audience: &Audience, first: u64, count: u64) -> String {
    let to: serde_json::Value =
        serde_json::from_str(&audience.to_json(0)).expect("to is valid JSON");
    let messages: Vec<_> = (first..first + count)
        .map(|i| {
            serde_json::json!({
                "to": to,
                "event": "task.updated",
                "title": format!("Task {i} moved to Done"),
                "body": "Carol moved the task from In progress to Done.",
                "data": {"task": i, "project": 42, "column": "done"},
                "actor": "carol",
            })
        })
        .collect();
    serde_json::json!({ "messages": messages }).to_string()
}

/// Counts a replay's items, frame by frame, until `synced`.
#[derive(Debug, Default)]
struct Replay {
    items: u64,
}

/// The fields of a Herald frame that a replay needs; the items are counted, not read.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    items: Vec<IgnoredAny>,
}

impl Replay {
    /// `Some(items replayed)` once `synced` arrives. A `reset` means nothing is replayed
    /// because the inbox keeps fewer items than were stored.
    fn on_frame(&mut self, text: &str) -> Result<Option<u64>, String> {
        let frame: Frame = serde_json::from_str(text)
            .map_err(|e| format!("unexpected frame during replay ({e}): {text:.200}"))?;
        match (frame.kind.as_str(), frame.reason.as_deref()) {
            ("batch", Some("replay")) => self.items += frame.items.len() as u64,
            ("synced", _) => return Ok(Some(self.items)),
            ("reset", _) => {
                return Err(format!(
                    "the server answered reset ({text}): it keeps fewer items than were \
                     stored; raise its INBOX_MAX_ITEMS to at least --items"
                ))
            }
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_counts_items_until_synced() {
        let mut replay = Replay::default();
        let batch = |n: usize| {
            let items: Vec<_> = (0..n)
                .map(|i| format!(r#"{{"id":"ntf_{i}","seq":{i},"event":"task.updated","data":{{"task":{i}}},"read":false,"created_at":1}}"#))
                .collect();
            format!(
                r#"{{"type":"batch","reason":"replay","items":[{}]}}"#,
                items.join(",")
            )
        };
        assert_eq!(replay.on_frame(&batch(100)), Ok(None));
        assert_eq!(
            replay.on_frame(r#"{"type":"unread_count","unread_count":150}"#),
            Ok(None)
        );
        // Only replay batches are the past; a live item is not counted.
        let live = r#"{"type":"batch","reason":"window","items":[{"seq":151}]}"#;
        assert_eq!(replay.on_frame(live), Ok(None));
        assert_eq!(replay.on_frame(&batch(50)), Ok(None));
        assert_eq!(
            replay.on_frame(r#"{"type":"synced","seq":150}"#),
            Ok(Some(150))
        );
    }

    #[test]
    fn a_reset_or_a_stranger_frame_is_an_error() {
        let mut replay = Replay::default();
        let reset = replay
            .on_frame(r#"{"type":"reset","oldest_seq":9001,"latest_seq":10000}"#)
            .unwrap_err();
        assert!(reset.contains("INBOX_MAX_ITEMS"), "{reset}");
        assert!(replay.on_frame("pong").is_err());
    }

    #[test]
    fn items_are_stored_100_per_request() {
        let audience = Audience::User("reader".into());
        let body: serde_json::Value =
            serde_json::from_str(&store_body(&audience, 200, 100)).unwrap();
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 100);
        assert_eq!(messages[0]["to"], serde_json::json!({"users": ["reader"]}));
        assert_eq!(messages[0]["data"]["task"], 200);
        assert_eq!(messages[99]["title"], "Task 299 moved to Done");
        // Well under the API's 256 KiB per request.
        assert!(store_body(&audience, 0, PER_REQUEST).len() < 64 * 1024);
        // The last request carries what is left.
        let body: serde_json::Value = serde_json::from_str(&store_body(&audience, 10, 5)).unwrap();
        assert_eq!(body["messages"].as_array().unwrap().len(), 5);
    }
}
