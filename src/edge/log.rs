//! Structured log lines: one JSON object per line, so that `wrangler tail` and log
//! pipelines can filter them. Callers pass only what is safe to keep: never a token, a
//! publish key or a notification's content.

use serde_json::Value;

/// Writes `{"event": kind, ...fields}` as one line.
pub fn event(kind: &str, fields: Value) {
    let mut line = serde_json::Map::new();
    line.insert("event".into(), Value::from(kind));
    if let Value::Object(fields) = fields {
        line.extend(fields);
    }
    worker::console_log!("{}", Value::Object(line));
}
