//! `BusError`: the one error type of fabric-bus.

/// Everything that can go wrong on the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A configuration value is out of range; names the field (`bus.<field>`) and the value.
    #[error("invalid bus config: {field}: {reason}")]
    Config {
        /// The offending key, e.g. `bus.backpressure_drop_threshold`.
        field: String,
        /// Why the value is refused, naming the value.
        reason: String,
    },
    /// The Redis server could not be reached or answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered with a reply of an unexpected shape.
    #[error("redis: unexpected reply to {command}: {detail}")]
    Reply {
        /// The command whose reply was not understood.
        command: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// An id that this backend never issued (or cannot parse).
    #[error("bad message id {0:?}")]
    BadId(String),
    /// A consumer group that was never created with `init`.
    #[error("no consumer group {group:?} on stream {stream:?} (run `init` first)")]
    NoGroup {
        /// The group name.
        group: String,
        /// The stream name.
        stream: String,
    },
}
