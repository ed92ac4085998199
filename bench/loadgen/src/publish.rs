//! The open-loop publisher of one rate step: this task wakes at each scheduled time and
//! queues the send; a small pool of keep-alive HTTP clients takes sends off the queue, so
//! one slow response does not hold back the next slot.

use crate::audience::Audience;
use crate::cli::Target;
use crate::http;
use crate::schedule::{self, Clock};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

/// Where and how to publish for one target.
pub struct Publisher {
    spec: Arc<Spec>,
    /// Kept across steps so their connections stay warm.
    clients: Vec<http::Client>,
    /// `n` of the next publish; runs on across steps so every payload is unique.
    next_n: u64,
}

struct Spec {
    target: Target,
    bearer: String,
    /// Whom each publish goes to (see [`Audience::to_json`]).
    audience: Audience,
}

/// What one step managed to send.
#[derive(Debug, Default)]
pub struct Sent {
    /// Publishes answered 2xx.
    pub published: u64,
    /// Publishes refused or failed; the first reason is kept.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Sends that left more than [`schedule::LATE_AFTER`] after their slot.
    pub late: u64,
}

impl Publisher {
    pub fn new(
        target: Target,
        addr: &str,
        bearer: &str,
        audience: &Audience,
        clients: usize,
    ) -> Self {
        let spec = Spec {
            target,
            bearer: bearer.to_string(),
            audience: audience.clone(),
        };
        let clients = (0..clients.max(1))
            .map(|_| http::Client::new(addr))
            .collect();
        Publisher {
            spec: Arc::new(spec),
            clients,
            next_n: 0,
        }
    }

    /// Publishes at `rate` per second for `seconds`, on the schedule starting at `clock`.
    pub async fn run(&mut self, clock: Clock, rate: u32, seconds: u64) -> Sent {
        let (queue, jobs) = mpsc::unbounded_channel::<(Duration, u64)>();
        // A shared receiver turns the channel into a work queue: whichever client is free
        // takes the next send.
        let jobs = Arc::new(Mutex::new(jobs));
        let workers: Vec<_> = self
            .clients
            .drain(..)
            .map(|client| tokio::spawn(work(client, jobs.clone(), self.spec.clone(), clock)))
            .collect();

        for offset in schedule::offsets(rate, seconds) {
            tokio::time::sleep_until((clock.start + offset).into()).await;
            // Never waits: if every client is busy the send queues and goes out late,
            // stamped with this slot, rather than the schedule slipping.
            queue
                .send((offset, self.next_n))
                .expect("workers outlive the queue");
            self.next_n += 1;
        }
        drop(queue);

        let mut sent = Sent::default();
        for worker in workers {
            let (client, part) = worker.await.expect("publisher task panicked");
            self.clients.push(client);
            sent.published += part.published;
            sent.errors += part.errors;
            sent.late += part.late;
            sent.first_error = sent.first_error.or(part.first_error);
        }
        sent
    }
}

async fn work(
    mut client: http::Client,
    jobs: Arc<Mutex<mpsc::UnboundedReceiver<(Duration, u64)>>>,
    spec: Arc<Spec>,
    clock: Clock,
) -> (http::Client, Sent) {
    let mut sent = Sent::default();
    loop {
        // The lock is held only while waiting for the next job, never during a request.
        let job = jobs.lock().await.recv().await;
        let Some((offset, n)) = job else { break };
        let stamp = clock.stamp(offset, Instant::now());
        sent.late += u64::from(stamp.late);
        let body = body(spec.target, &spec.audience, stamp.t_us, n);
        let path = path(spec.target, spec.audience.recipient(n).as_deref());
        match post(&mut client, &path, &spec.bearer, &body).await {
            Ok(()) => sent.published += 1,
            Err(e) => {
                sent.errors += 1;
                sent.first_error.get_or_insert(e);
            }
        }
    }
    (client, sent)
}

/// Where a target takes publishes; a peer is told the one user a publish is for.
pub fn path(target: Target, user: Option<&str>) -> String {
    match target {
        Target::Herald => "/v1/publish".to_string(),
        Target::Ws | Target::Jsdo | Target::JsdoInbox | Target::Django | Target::Socketio => {
            format!("/publish{}", Audience::peer_query(user))
        }
    }
}

/// One publish of `body` to `path`; anything but a 2xx answer is an error.
pub async fn post(
    client: &mut http::Client,
    path: &str,
    bearer: &str,
    body: &str,
) -> Result<(), String> {
    match client.post(path, bearer, body).await {
        Ok(status) if (200..300).contains(&status) => Ok(()),
        Ok(status) => Err(format!("publish answered HTTP {status}")),
        Err(e) => Err(format!("publish failed: {e}")),
    }
}

/// Publish `n`'s request body, to `audience` (Herald's `to`); the `{"t":…,"n":…}`
/// payload is what subscribers scan.
pub fn body(target: Target, audience: &Audience, t_us: u64, n: u64) -> String {
    let payload = format!(r#"{{"t":{t_us},"n":{n}}}"#);
    match target {
        Target::Herald => {
            let to = audience.to_json(n);
            format!(r#"{{"to":{to},"event":"bench.tick","data":{payload}}}"#)
        }
        Target::Ws | Target::Jsdo | Target::JsdoInbox | Target::Django | Target::Socketio => {
            payload
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::stamps;

    #[test]
    fn bodies() {
        let room = Audience::Room("bench:room".into());
        let herald = body(Target::Herald, &room, 1_763_971_200_000_000, 3);
        assert_eq!(
            herald,
            r#"{"to":{"room":"bench:room"},"event":"bench.tick","data":{"t":1763971200000000,"n":3}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&herald).unwrap();
        assert_eq!(parsed["data"]["t"], 1_763_971_200_000_000u64);

        let user = Audience::User("bench-user".into());
        assert_eq!(
            body(Target::Herald, &user, 7, 0),
            r#"{"to":{"users":["bench-user"]},"event":"bench.tick","data":{"t":7,"n":0}}"#
        );

        let raw = body(Target::Socketio, &room, 5, 0);
        assert_eq!(raw, r#"{"t":5,"n":0}"#);
        assert_eq!(stamps(&raw).collect::<Vec<_>>(), vec![5]);
        assert_eq!(path(Target::Herald, Some("u1")), "/v1/publish");
        assert_eq!(path(Target::Jsdo, None), "/publish");
        assert_eq!(path(Target::JsdoInbox, Some("u1")), "/publish?user=u1");
    }
}
