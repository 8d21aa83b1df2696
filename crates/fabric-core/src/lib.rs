//! Fabric's domain model and pure policy: jobs and their legal transitions, retry and
//! quarantine rules, shards and routing, clocks, configuration, the documents of ingestion, SLO arithmetic. No
//! I/O and no async runtime live here.

pub mod batch;
pub mod bm25;
pub mod clock;
pub mod config;
pub mod cron_schedule;
pub mod doc;
pub mod error;
pub mod job;
pub mod node;
pub mod quarantine;
pub mod retry;
pub mod routing;
pub mod shard;
pub mod slo;
pub mod source;
pub mod time;

pub use clock::{Clock, RealClock, VirtualClock};
pub use error::CoreError;
pub use job::{Job, JobId, JobState, NewJob, Priority};
pub use node::{Node, NodeHealth};
pub use routing::{
    choose_node, dispatch_order, may_dispatch, placement_order, spillover_targets, Liveness,
    QueuedJob,
};
pub use shard::{LatencyMatrix, Shard, DEFAULT_SHARDS};
