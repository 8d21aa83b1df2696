//! How SQLite stores a message's lifecycle events: compactly, because the bytes a write adds
//! are what events cost (each goes through the WAL and the checkpoint, and comes out again
//! when the message is deleted): about 25 bytes an event instead of the 70–100 of the
//! published JSON. Reading a message to send it turns it into the published form
//! ([`expand`]), on a read connection, off the writer.
//!
//! Stored body: `{"k": [[kind, shard], …], "e": [[job_id, attempt, ms_before, code, x, y],
//! …]}` where `ms_before` is the event's time before the message's `at`, `code` one letter
//! (`s` submitted, `o` succeeded, `f` failed, `q` quarantined, `c` cancelled, `r`
//! requeued, `w` waiting, `b` blocked), and `x`, `y`: for `s` the index of its kind and
//! shard in `k`; for `f` and `q` null and the error; for `c` the state before and the
//! reason; for `r`, `w` and `b` the state before.

use std::collections::HashMap;
use std::io::Write as _;

use fabric_core::{JobId, JobState};
use serde::Deserialize;

use crate::outbox::{self, JobEventRef, OutboxLane};
use crate::{Result, StoreError};

/// One event as the write knows it.
struct Ev<'a> {
    id: JobId,
    attempt: u32,
    at: i64,
    code: u8,
    /// `s`: the kind index; else the state before (`c`, `r`) and the detail.
    kind: Option<usize>,
    from: Option<&'static str>,
    detail: Option<&'a str>,
}

/// The events of one lane of one write.
#[derive(Default)]
pub(super) struct Lane<'a> {
    kinds: Vec<(&'a str, &'a str)>,
    index: HashMap<(&'a str, &'a str), usize>,
    events: Vec<Ev<'a>>,
}

fn code_of(to: JobState) -> u8 {
    match to {
        JobState::Pending => b'r',
        JobState::Running => b'?',
        JobState::Succeeded => b'o',
        JobState::Failed => b'f',
        JobState::Quarantined => b'q',
        JobState::Cancelled => b'c',
        JobState::Waiting => b'w',
        JobState::Blocked => b'b',
    }
}

impl<'a> Lane<'a> {
    pub(super) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub(super) fn submitted(&mut self, id: JobId, kind: &'a str, shard: &'a str, at: i64) {
        let next = self.kinds.len();
        let k = *self.index.entry((kind, shard)).or_insert(next);
        if k == next {
            self.kinds.push((kind, shard));
        }
        self.events.push(Ev {
            id,
            attempt: 0,
            at,
            code: b's',
            kind: Some(k),
            from: None,
            detail: None,
        });
    }

    /// A change from `from` to `to` (not to `running`).
    pub(super) fn changed(
        &mut self,
        id: JobId,
        attempt: u32,
        at: i64,
        from: JobState,
        to: JobState,
        detail: Option<&'a str>,
    ) {
        let code = code_of(to);
        self.events.push(Ev {
            id,
            attempt,
            at,
            code,
            kind: None,
            from: matches!(code, b'c' | b'r' | b'w' | b'b').then(|| from.as_str()),
            detail: detail.map(outbox::cut),
        });
    }

    /// The stored bodies of these events, at most [`outbox::MAX_EVENTS_PER_MESSAGE`] each,
    /// with their event count and time.
    pub(super) fn encode(&self) -> Result<Vec<(String, usize, i64)>> {
        let mut out = Vec::new();
        for chunk in self.events.chunks(outbox::MAX_EVENTS_PER_MESSAGE) {
            let at = chunk.iter().map(|e| e.at).max().unwrap_or(0);
            let mut b: Vec<u8> = Vec::with_capacity(32 + 28 * chunk.len());
            b.extend_from_slice(b"{\"k\":");
            json(&mut b, &self.kinds)?;
            b.extend_from_slice(b",\"e\":[");
            for (i, e) in chunk.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                let before = at.saturating_sub(e.at);
                write!(
                    b,
                    "[{},{},{},\"{}\",",
                    e.id, e.attempt, before, e.code as char
                )
                .map_err(io)?;
                match (e.kind, e.from) {
                    (Some(k), _) => write!(b, "{k}").map_err(io)?,
                    (None, Some(f)) => json(&mut b, &f)?,
                    (None, None) => b.extend_from_slice(b"null"),
                }
                b.push(b',');
                json(&mut b, &e.detail)?;
                b.push(b']');
            }
            b.extend_from_slice(b"]}");
            let body = String::from_utf8(b).map_err(|e| StoreError::Backend(e.to_string()))?;
            out.push((body, chunk.len(), at));
        }
        Ok(out)
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn json(b: &mut Vec<u8>, v: &impl serde::Serialize) -> Result<()> {
    serde_json::to_writer(b, v).map_err(|e| StoreError::Backend(e.to_string()))
}

/// The events of one write, per lane.
#[derive(Default)]
pub(super) struct Messages<'a> {
    pub normal: Lane<'a>,
    pub emergency: Lane<'a>,
}

impl<'a> Messages<'a> {
    pub(super) fn lane(&mut self, lane: OutboxLane) -> &mut Lane<'a> {
        if lane == OutboxLane::Emergency {
            &mut self.emergency
        } else {
            &mut self.normal
        }
    }
}

/// The fifth element: a kind index, a state, or nothing.
#[derive(Deserialize)]
#[serde(untagged)]
enum X {
    Kind(usize),
    From(String),
}

/// One stored event: `[job_id, attempt, ms_before, code, x, y]`.
type StoredEvent = (JobId, u32, i64, String, Option<X>, Option<String>);

#[derive(Deserialize)]
struct Stored {
    k: Vec<(String, String)>,
    e: Vec<StoredEvent>,
}

/// The published form (a JSON array of [`outbox::JobEvent`]) of a stored body written at
/// `at`.
pub(super) fn expand(body: &str, at: i64) -> Result<String> {
    let bad = |e: &dyn std::fmt::Display| StoreError::Backend(format!("outbox message: {e}"));
    let stored: Stored = serde_json::from_str(body).map_err(|e| bad(&e))?;
    let mut out: Vec<u8> = Vec::with_capacity(96 * stored.e.len() + 2);
    out.push(b'[');
    for (i, (job_id, attempt, before, code, x, detail)) in stored.e.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let (event, from) = match code.as_str() {
            "s" => ("job.submitted", None),
            "o" => ("job.succeeded", Some("running")),
            "f" => ("job.failed", Some("running")),
            "q" => ("job.quarantined", Some("running")),
            "c" => ("job.cancelled", None),
            "r" => ("job.requeued", None),
            "w" => ("job.waiting", None),
            "b" => ("job.blocked", None),
            other => return Err(bad(&format!("event code {other:?}"))),
        };
        let (kind, shard, from) = match x {
            Some(X::Kind(k)) => {
                let (kind, shard) = stored.k.get(*k).ok_or_else(|| bad(&"kind index"))?;
                (Some(kind.as_str()), Some(shard.as_str()), from)
            }
            Some(X::From(f)) => (None, None, Some(f.as_str())),
            None => (None, None, from),
        };
        let e = JobEventRef {
            event,
            job_id: *job_id,
            kind,
            shard,
            attempt: *attempt,
            from,
            detail: detail.as_deref(),
            at: at.saturating_sub(*before),
        };
        json(&mut out, &e)?;
    }
    out.push(b']');
    String::from_utf8(out).map_err(|e| bad(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::JobEvent;

    #[test]
    fn stored_events_expand_to_the_published_form() {
        let mut m = Messages::default();
        m.normal.submitted(1, "noop", "default", 100);
        m.normal.submitted(2, "mail \"x\"", "luna", 100);
        m.normal.submitted(3, "noop", "default", 100);
        let l = m.lane(OutboxLane::Normal);
        l.changed(1, 1, 95, JobState::Running, JobState::Succeeded, None);
        l.changed(
            2,
            1,
            99,
            JobState::Running,
            JobState::Failed,
            Some("bad \"quote\"\n"),
        );
        l.changed(3, 2, 99, JobState::Quarantined, JobState::Pending, None);
        l.changed(
            3,
            2,
            100,
            JobState::Pending,
            JobState::Cancelled,
            Some("why"),
        );
        let bodies = m.normal.encode().unwrap();
        assert_eq!(bodies.len(), 1);
        let (body, n, at) = &bodies[0];
        assert_eq!((*n, *at), (7, 100));
        assert!(body.len() < 7 * 40, "{} bytes: {body}", body.len());
        let events: Vec<JobEvent> = serde_json::from_str(&expand(body, *at).unwrap()).unwrap();
        type Brief<'a> = (i64, &'a str, Option<&'a str>, Option<&'a str>, i64);
        let brief: Vec<Brief<'_>> = events
            .iter()
            .map(|e| {
                let from = e.from.as_deref();
                (e.job_id, e.event.as_str(), from, e.detail.as_deref(), e.at)
            })
            .collect();
        assert_eq!(
            brief,
            [
                (1, "job.submitted", None, None, 100),
                (2, "job.submitted", None, None, 100),
                (3, "job.submitted", None, None, 100),
                (1, "job.succeeded", Some("running"), None, 95),
                (
                    2,
                    "job.failed",
                    Some("running"),
                    Some("bad \"quote\"\n"),
                    99
                ),
                (3, "job.requeued", Some("quarantined"), None, 99),
                (3, "job.cancelled", Some("pending"), Some("why"), 100),
            ]
        );
        assert_eq!(events[1].kind.as_deref(), Some("mail \"x\""));
        assert_eq!(events[1].shard.as_deref(), Some("luna"));
        assert_eq!(events[2].kind.as_deref(), Some("noop"));
        assert_eq!((events[3].kind.as_deref(), events[3].attempt), (None, 1));
        assert!(expand("{\"k\":[],\"e\":[[1,0,0,\"z\",null,null]]}", 0).is_err());
    }
}
