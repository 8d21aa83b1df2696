//! Nodes, leases, shards and fleet settings on PostgreSQL ([`crate::FleetStore`]).

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use fabric_core::{Node, NodeHealth};
use tokio_postgres::Row;

use super::{backend, PostgresStore};
use crate::{FleetStore, Lease, NodeChange, Result, StoreError, LEASE_UPSERT};

const NODE_COLS: &str = "id, shard, capacity, specialties, health, draining, load, heartbeat_at, \
     started_at, stopped_at, host, pid, version";

fn row_to_node(r: &Row) -> Result<Node> {
    let specialties: serde_json::Value = r.try_get(3)?;
    let health: String = r.try_get(4)?;
    Ok(Node {
        id: r.try_get(0)?,
        shard: r.try_get(1)?,
        capacity: r.try_get::<_, i32>(2)? as u32,
        specialties: serde_json::from_value(specialties).map_err(backend)?,
        health: NodeHealth::parse(&health)?,
        draining: r.try_get(5)?,
        load: r.try_get::<_, i32>(6)? as u32,
        heartbeat_at: r.try_get(7)?,
        started_at: r.try_get(8)?,
        stopped_at: r.try_get(9)?,
        host: r.try_get(10)?,
        pid: r.try_get::<_, i32>(11)? as u32,
        version: r.try_get(12)?,
    })
}

async fn get_node<C: GenericClient>(c: &C, id: &str) -> Result<Node> {
    let row = c
        .query_opt(
            &format!("SELECT {NODE_COLS} FROM nodes WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or_else(|| StoreError::node_not_found(id))?;
    row_to_node(&row)
}

#[async_trait]
impl FleetStore for PostgresStore {
    async fn register_node(&self, node: Node) -> Result<Node> {
        let client = self.pool.get().await?;
        let specialties = serde_json::to_value(&node.specialties).map_err(backend)?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO nodes (id, shard, capacity, specialties, health, draining, load,
                         heartbeat_at, started_at, stopped_at, host, pid, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11, $12)
                     ON CONFLICT (id) DO UPDATE SET shard = excluded.shard,
                         capacity = excluded.capacity, specialties = excluded.specialties,
                         load = excluded.load, heartbeat_at = excluded.heartbeat_at,
                         started_at = excluded.started_at, stopped_at = NULL,
                         host = excluded.host, pid = excluded.pid, version = excluded.version
                     RETURNING {NODE_COLS}"
                ),
                &[
                    &node.id,
                    &node.shard,
                    &(node.capacity as i32),
                    &specialties,
                    &node.health.as_str(),
                    &node.draining,
                    &(node.load as i32),
                    &node.heartbeat_at,
                    &node.started_at,
                    &node.host,
                    &(node.pid as i32),
                    &node.version,
                ],
            )
            .await?;
        row_to_node(&row)
    }

    async fn node_heartbeat(&self, id: &str, load: u32, now: i64) -> Result<Option<Node>> {
        let client = self.relaxed.get().await?;
        client
            .query_opt(
                &format!(
                    "UPDATE nodes SET load = $2, heartbeat_at = $3, stopped_at = NULL
                     WHERE id = $1 RETURNING {NODE_COLS}"
                ),
                &[&id, &(load as i32), &now],
            )
            .await?
            .as_ref()
            .map(row_to_node)
            .transpose()
    }

    async fn nodes(&self) -> Result<Vec<Node>> {
        let client = self.pool.get().await?;
        client
            .query(&format!("SELECT {NODE_COLS} FROM nodes ORDER BY id"), &[])
            .await?
            .iter()
            .map(row_to_node)
            .collect()
    }

    async fn update_node(&self, id: &str, change: NodeChange) -> Result<Node> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE nodes SET health = coalesce($2, health),
                     draining = coalesce($3, draining),
                     stopped_at = coalesce($4, stopped_at),
                     load = CASE WHEN $4::bigint IS NULL THEN load ELSE 0 END
                 WHERE id = $1",
                &[
                    &id,
                    &change.health.map(|h| h.as_str()),
                    &change.draining,
                    &change.stopped_at,
                ],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::node_not_found(id));
        }
        get_node(&client, id).await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool> {
        let client = self.relaxed.get().await?;
        Ok(client
            .query_opt(LEASE_UPSERT, &[&name, &holder, &now, &(now + ttl_ms)])
            .await?
            .is_some())
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await?;
        Ok(())
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        let client = self.pool.get().await?;
        client
            .query(
                "SELECT name, holder, acquired_at, expires_at FROM leases ORDER BY name",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(Lease {
                    name: r.try_get(0)?,
                    holder: r.try_get(1)?,
                    acquired_at: r.try_get(2)?,
                    expires_at: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn shards(&self) -> Result<Vec<fabric_core::Shard>> {
        let client = self.pool.get().await?;
        client
            .query(
                "SELECT name, paused, spillover_limit, latency_budget_ms FROM shards ORDER BY name",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(fabric_core::Shard {
                    name: r.try_get(0)?,
                    paused: r.try_get(1)?,
                    spillover_limit: r.try_get::<_, i32>(2)? as u32,
                    latency_budget_ms: r.try_get::<_, i64>(3)? as u64,
                })
            })
            .collect()
    }

    async fn put_shard(&self, shard: fabric_core::Shard) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO shards (name, paused, spillover_limit, latency_budget_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
                     spillover_limit = excluded.spillover_limit,
                     latency_budget_ms = excluded.latency_budget_ms",
                &[
                    &shard.name,
                    &shard.paused,
                    &(shard.spillover_limit as i32),
                    &(shard.latency_budget_ms as i64),
                ],
            )
            .await?;
        Ok(())
    }

    async fn remove_shard(&self, name: &str) -> Result<()> {
        let client = self.pool.get().await?;
        if client
            .execute("DELETE FROM shards WHERE name = $1", &[&name])
            .await?
            == 0
        {
            return Err(StoreError::shard_not_found(name));
        }
        Ok(())
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let client = self.pool.get().await?;
        client
            .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
            .await?
            .map(|r| r.try_get(0).map_err(StoreError::from))
            .transpose()
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await?;
        Ok(())
    }

    async fn remove_setting(&self, key: &str) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute("DELETE FROM settings WHERE key = $1", &[&key])
            .await?;
        Ok(())
    }
}
