//! The fleet's shared state in the store: the nodes and their heartbeats, named leases (the
//! maintenance leader's), the shards with their owner levers, and fleet-wide settings.

use async_trait::async_trait;
use fabric_core::Node;

use crate::{Lease, NodeChange, Result};

/// Nodes, leases, shards and settings, reached through [`crate::Store::fleet`].
#[async_trait]
pub trait FleetStore: Send + Sync {
    /// Registers a node, or refreshes the row of a node id seen before: shard, capacity,
    /// specialties, host, pid, version, load, heartbeat and start time are taken from `node`;
    /// an existing row keeps the health and drain flag an operator set.
    async fn register_node(&self, node: Node) -> Result<Node>;

    /// Records a node's heartbeat and load; `None` when the node is not registered.
    async fn node_heartbeat(&self, id: &str, load: u32, now: i64) -> Result<Option<Node>>;

    /// Every registered node, by id.
    async fn nodes(&self) -> Result<Vec<Node>>;

    /// Applies `change` to node `id` (`NotFound` when unknown).
    async fn update_node(&self, id: &str, change: NodeChange) -> Result<Node>;

    /// Takes or renews lease `name` for `holder` until `now + ttl_ms`: succeeds when the
    /// lease is free, lapsed, or already `holder`'s. Atomic across every daemon.
    async fn acquire_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool>;

    /// Gives lease `name` up if `holder` has it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;

    /// Every lease, lapsed or not.
    async fn leases(&self) -> Result<Vec<Lease>>;

    /// Every shard with its owner levers, by name.
    async fn shards(&self) -> Result<Vec<fabric_core::Shard>>;

    /// Adds a shard or replaces its levers.
    async fn put_shard(&self, shard: fabric_core::Shard) -> Result<()>;

    /// Removes a shard (`NotFound` when unknown); its jobs stay where they are.
    async fn remove_shard(&self, name: &str) -> Result<()>;

    /// A fleet-wide setting (`conservative`, `tick_interval_ms`, ...).
    async fn setting(&self, key: &str) -> Result<Option<String>>;

    /// Sets a fleet-wide setting.
    async fn put_setting(&self, key: &str, value: &str) -> Result<()>;

    /// Removes a setting (nothing when it is not set).
    async fn remove_setting(&self, key: &str) -> Result<()>;
}
