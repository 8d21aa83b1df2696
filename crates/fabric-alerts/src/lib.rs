//! Fabric's alerting: telemetry [`Sample`]s evaluated against the rules of `alerts:` (each
//! fires once after `for_count` consecutive breaching samples and clears on the first sample
//! that does not breach), silences and inhibition, grouping, and delivery to real receivers
//! (Slack incoming webhooks, PagerDuty Events API v2, signed JSON webhooks, SMTP, the log)
//! with retries, `Retry-After` and per-receiver rate limits.
//!
//! All state is in the store ([`fabric_store::AlertStore`]): the evaluator ([`AlertEngine`],
//! run by the leader) saves each alert's state together with the notifications it owes, in
//! one transaction, and the delivery worker ([`Deliverer`]) drains that durable queue. So an
//! alert notified as firing gets exactly one resolved notification, also when it was
//! silenced or inhibited meanwhile and across a restart of the daemon.

mod collector;
mod deliver;
pub mod drill;
mod engine;
mod error;
mod eval;
mod matcher;
mod message;
mod ratelimit;
pub mod routes;
mod runtime;
mod sample;
mod service;

pub use collector::Collector;
pub use deliver::{Deliverer, DeliveryOptions, Sent};
pub use engine::{active_summary, ActiveAlert, AlertEngine, Transition, TransitionKind};
pub use error::AlertsError;
pub use matcher::Matcher;
pub use message::AlertInfo;
pub use runtime::{AlertsRuntime, IsLeader};
pub use sample::{alert_labels, fingerprint, Sample};
pub use service::{AlertView, AlertsConsole, RuleView, TestOutcome};

/// Result of this crate.
pub type Result<T, E = AlertsError> = std::result::Result<T, E>;
