//! fabric-bus owns Fabric's message bus: the `Bus` trait (publish with emergency lanes and
//! backpressure, consumer groups, acknowledgement, reclaim of idle entries, dead letters,
//! trimming, metrics) and its two backends, `InProcBus` (in this process) and `RedisBus`
//! (Redis Streams). The semantics are RUNBOOK-MAP.md §C; the config keys are issue 14 §7.

mod config;
mod error;
mod inproc;
mod lazy;
mod metrics;
mod redis_bus;
mod redis_counters;
mod redis_reply;
mod signing;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

pub use config::{resolve_secret, validate};
pub use error::BusError;
pub use fabric_core::config::{BusBackend, BusConfig, Secret, SigningConfig, StreamNames};
pub use inproc::InProcBus;
pub use lazy::{open_lazy, LazyBus};
pub use metrics::MetricsSnapshot;
pub use redis_bus::RedisBus;
pub use signing::{Rejection, SignedBus, Signer, MAX_AGE_MS, SECRET_ENV};

/// One of the bus's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// Ordinary traffic, subject to the thresholds.
    Normal,
    /// Emergency-flagged and rerouted traffic; read first.
    Emergency,
    /// Telemetry samples.
    Telemetry,
    /// Policy decisions.
    Policy,
    /// Entries delivered too often.
    DeadLetter,
}

impl Lane {
    /// The lane's name, as the CLI, JSON and dead-letter entries spell it (`dead_letter`).
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Normal => "normal",
            Lane::Emergency => "emergency",
            Lane::Telemetry => "telemetry",
            Lane::Policy => "policy",
            Lane::DeadLetter => "dead_letter",
        }
    }

    /// The lane named `name` (see [`Lane::as_str`]).
    pub fn named(name: &str) -> Option<Lane> {
        Lane::ALL.into_iter().find(|l| l.as_str() == name)
    }

    /// Every lane, in a fixed order.
    pub const ALL: [Lane; 5] = [
        Lane::Normal,
        Lane::Emergency,
        Lane::Telemetry,
        Lane::Policy,
        Lane::DeadLetter,
    ];
}

/// A message for `publish`: the bus chooses its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The payload (JSON text by convention; the bus does not look inside).
    pub payload: String,
    /// Goes to the emergency stream with no depth check.
    pub emergency: bool,
}

impl Message {
    /// An ordinary message.
    pub fn normal(payload: impl Into<String>) -> Self {
        Self {
            payload: payload.into(),
            emergency: false,
        }
    }

    /// An emergency-flagged message.
    pub fn emergency(payload: impl Into<String>) -> Self {
        Self {
            payload: payload.into(),
            emergency: true,
        }
    }
}

/// Where `publish` put a message (RUNBOOK-MAP.md §C, in this order of decision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Appended to normal, with this id.
    Normal(String),
    /// Flagged emergency: appended to emergency, with this id.
    Emergency(String),
    /// Normal was at or above `emergency_threshold`: appended to emergency, with this id.
    Rerouted(String),
    /// Normal was at or above `backpressure_drop_threshold`: not stored anywhere.
    Dropped,
}

impl PublishOutcome {
    /// `normal`, `emergency`, `rerouted` or `dropped`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Normal(_) => "normal",
            Self::Emergency(_) => "emergency",
            Self::Rerouted(_) => "rerouted",
            Self::Dropped => "dropped",
        }
    }

    /// The stream the message was stored on, unless dropped.
    pub fn lane(&self) -> Option<Lane> {
        match self {
            Self::Normal(_) => Some(Lane::Normal),
            Self::Emergency(_) | Self::Rerouted(_) => Some(Lane::Emergency),
            Self::Dropped => None,
        }
    }

    /// The id the message was stored under, unless dropped.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Normal(id) | Self::Emergency(id) | Self::Rerouted(id) => Some(id),
            Self::Dropped => None,
        }
    }
}

/// An entry handed to a consumer; acknowledge it with `ack(group, lane, [id])` once handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The stream it came from.
    pub lane: Lane,
    /// Its id in that stream.
    pub id: String,
    /// The payload as published.
    pub payload: String,
    /// How many times it has been delivered, this time included.
    pub deliveries: u64,
}

/// An entry of the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// Its id in the dead-letter stream.
    pub id: String,
    /// The stream it was published to (`stream` in JSON, as `bus tail` names it).
    #[serde(rename = "stream")]
    pub lane: Lane,
    /// Its original id in that stream.
    pub original_id: String,
    /// The group that failed to handle it.
    pub group: String,
    /// How many times it had been delivered.
    pub deliveries: u64,
    /// The payload as published (in JSON: parsed when it is JSON, else the text).
    #[serde(serialize_with = "payload_as_json")]
    pub payload: String,
}

/// A payload in JSON output: the JSON it holds, or the text when it is not JSON.
pub fn payload_as_json<S: serde::Serializer>(payload: &str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(v) => serde::Serialize::serialize(&v, s),
        Err(_) => s.serialize_str(payload),
    }
}

/// What one `reclaim` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Entries idle past `retry_idle_ms`, now delivered again to the reclaiming consumer.
    pub redelivered: Vec<Delivery>,
    /// Entries moved to the dead-letter stream (delivered `retry_max_attempts` times).
    pub dead_lettered: u64,
    /// Pending ids whose entries had been trimmed away (XAUTOCLAIM's deleted ids).
    pub lost: u64,
}

/// One consumer group on one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    /// Entries delivered and not yet acknowledged.
    pub pending: u64,
    /// Entries not yet delivered to the group.
    pub lag: u64,
    /// The id of the last entry delivered to the group (`0-0`: none yet).
    pub last_delivered: String,
}

/// One stream, as `streams()` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamInfo {
    /// Which stream.
    pub lane: Lane,
    /// Its configured name.
    pub name: String,
    /// Entries held now.
    pub length: u64,
    /// Its consumer groups by name.
    pub groups: BTreeMap<String, GroupInfo>,
}

/// The message bus. Every backend shows the same behaviour (tests/bus/conformance.rs).
#[async_trait]
pub trait Bus: Send + Sync {
    /// The configuration this bus runs with.
    fn config(&self) -> &BusConfig;

    /// Creates the consumer group `group` on every stream but dead-letter (idempotent; a new
    /// group starts at the beginning of each stream).
    async fn init(&self, group: &str) -> Result<(), BusError> {
        for lane in Lane::ALL.into_iter().filter(|l| *l != Lane::DeadLetter) {
            self.init_lane(lane, group).await?;
        }
        Ok(())
    }

    /// Creates the consumer group `group` on one stream only (idempotent), for a consumer
    /// that reads that stream alone: a group that nobody reads holds back the stream's
    /// trimming and, on normal, counts as backlog.
    async fn init_lane(&self, lane: Lane, group: &str) -> Result<(), BusError>;

    /// Publishes to normal or emergency: emergency-flagged → emergency without depth check;
    /// else normal's depth before the add (what its slowest group has yet to acknowledge;
    /// its length without groups) ≥ `backpressure_drop_threshold` → dropped; else
    /// ≥ `emergency_threshold` → rerouted to emergency; else normal.
    async fn publish(&self, message: Message) -> Result<PublishOutcome, BusError>;

    /// Publishes `messages` in order, each decided as [`Bus::publish`] decides (a message
    /// sees the normal length its predecessors left); the outcomes are in the same order.
    /// Backends may send them in one round trip (Redis: one script call).
    async fn publish_many(&self, messages: Vec<Message>) -> Result<Vec<PublishOutcome>, BusError> {
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            out.push(self.publish(m).await?);
        }
        Ok(out)
    }

    /// Appends to one stream with no threshold (telemetry, policy); returns the id.
    async fn publish_to(&self, lane: Lane, payload: &str) -> Result<String, BusError>;

    /// Up to `count` new entries for `consumer` of `group`, emergency before normal; waits up
    /// to `block` when both are empty (zero: do not wait).
    async fn read(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError>;

    /// Up to `count` new entries of one stream (telemetry, policy, …).
    async fn read_lane(
        &self,
        lane: Lane,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError>;

    /// Acknowledges handled entries of `lane`; returns how many were pending.
    async fn ack(&self, group: &str, lane: Lane, ids: &[String]) -> Result<u64, BusError>;

    /// Takes over up to `count` entries of `lane` idle past `retry_idle_ms` for `consumer`;
    /// those already delivered `retry_max_attempts` times go to dead-letter instead.
    async fn reclaim(
        &self,
        lane: Lane,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Reclaimed, BusError>;

    /// Dead-letter entries, oldest first, at most `limit`.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError>;

    /// Counters and depths (keys of RUNBOOK-MAP.md §C plus consumed, acked, …).
    async fn metrics_snapshot(&self) -> Result<MetricsSnapshot, BusError>;

    /// Length, and pending and lag per group, of every stream.
    async fn streams(&self) -> Result<Vec<StreamInfo>, BusError>;

    /// Entries of `lane`, read without consuming them (`fabric bus tail`): with `after`, up
    /// to `count` entries whose id follows it; without, the newest `count`; oldest first.
    /// `deliveries` is 0: no group is involved.
    async fn entries(
        &self,
        lane: Lane,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError>;

    /// Deletes dead-letter entries by id; returns how many there were.
    async fn delete_dead_letters(&self, ids: &[String]) -> Result<u64, BusError>;
}

/// What replaying one dead letter did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replayed {
    /// Its id in the dead-letter stream (deleted there unless `outcome` is `dropped`).
    pub dead_letter_id: String,
    /// The stream it went back to.
    pub lane: Lane,
    /// `normal`, `emergency`, `rerouted`, `dropped` or `appended` (telemetry, policy).
    pub outcome: &'static str,
    /// Its new id, unless dropped.
    pub id: Option<String>,
}

/// Publishes each dead letter again to the stream it came from (normal through the
/// thresholds, like any publish) and deletes it from the dead-letter stream; a letter whose
/// publish is dropped stays there.
pub async fn replay_dead_letters(
    bus: &dyn Bus,
    letters: &[DeadLetter],
) -> Result<Vec<Replayed>, BusError> {
    let mut out = Vec::with_capacity(letters.len());
    for l in letters {
        let (outcome, id) = match l.lane {
            Lane::Normal | Lane::Emergency => {
                let m = Message {
                    payload: l.payload.clone(),
                    emergency: l.lane == Lane::Emergency,
                };
                let out = bus.publish(m).await?;
                (out.as_str(), out.id().map(str::to_string))
            }
            lane => ("appended", Some(bus.publish_to(lane, &l.payload).await?)),
        };
        if id.is_some() {
            bus.delete_dead_letters(std::slice::from_ref(&l.id)).await?;
        }
        out.push(Replayed {
            dead_letter_id: l.id.clone(),
            lane: l.lane,
            outcome,
            id,
        });
    }
    Ok(out)
}

/// Opens the configured backend after validating `config`; with `signing` set, wrapped in
/// a `SignedBus`.
pub async fn open(config: BusConfig) -> Result<Arc<dyn Bus>, BusError> {
    crate::config::validate(&config)?;
    let signer = config
        .signing
        .as_ref()
        .map(Signer::from_config)
        .transpose()?;
    let bus: Arc<dyn Bus> = match config.backend {
        BusBackend::Inproc => Arc::new(InProcBus::new(config)?),
        BusBackend::Redis => Arc::new(RedisBus::connect(config).await?),
    };
    Ok(match signer {
        Some(signer) => Arc::new(SignedBus::new(bus, signer)),
        None => bus,
    })
}
