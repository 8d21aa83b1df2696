//! Nodes, leases, shards and fleet settings on SQLite ([`crate::FleetStore`]).

use async_trait::async_trait;
use fabric_core::{Node, NodeHealth};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{conversion, SqliteStore};
use crate::{FleetStore, Lease, NodeChange, Result, StoreError, LEASE_UPSERT};

const NODE_COLS: &str = "id, shard, capacity, specialties, health, draining, load, heartbeat_at, \
     started_at, stopped_at, host, pid, version";

fn row_to_node(r: &Row<'_>) -> rusqlite::Result<Node> {
    let specialties: String = r.get(3)?;
    let health: String = r.get(4)?;
    Ok(Node {
        id: r.get(0)?,
        shard: r.get(1)?,
        capacity: r.get(2)?,
        specialties: serde_json::from_str(&specialties).map_err(|e| conversion(3, e))?,
        health: NodeHealth::parse(&health).map_err(|e| conversion(4, e))?,
        draining: r.get(5)?,
        load: r.get(6)?,
        heartbeat_at: r.get(7)?,
        started_at: r.get(8)?,
        stopped_at: r.get(9)?,
        host: r.get(10)?,
        pid: r.get(11)?,
        version: r.get(12)?,
    })
}

fn get_node(conn: &Connection, id: &str) -> Result<Node> {
    conn.prepare_cached(&format!("SELECT {NODE_COLS} FROM nodes WHERE id = ?1"))?
        .query_row([id], row_to_node)
        .optional()?
        .ok_or_else(|| StoreError::node_not_found(id))
}

#[async_trait]
impl FleetStore for SqliteStore {
    async fn register_node(&self, node: Node) -> Result<Node> {
        self.inner
            .writer
            .write(move |conn| {
                let specialties = serde_json::to_string(&node.specialties)
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                conn.prepare_cached(
                    "INSERT INTO nodes (id, shard, capacity, specialties, health, draining, load,
                         heartbeat_at, started_at, stopped_at, host, pid, version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10, ?11, ?12)
                     ON CONFLICT (id) DO UPDATE SET shard = excluded.shard,
                         capacity = excluded.capacity, specialties = excluded.specialties,
                         load = excluded.load, heartbeat_at = excluded.heartbeat_at,
                         started_at = excluded.started_at, stopped_at = NULL,
                         host = excluded.host, pid = excluded.pid, version = excluded.version",
                )?
                .execute(params![
                    node.id,
                    node.shard,
                    node.capacity,
                    specialties,
                    node.health.as_str(),
                    node.draining,
                    node.load,
                    node.heartbeat_at,
                    node.started_at,
                    node.host,
                    node.pid,
                    node.version
                ])?;
                get_node(conn, &node.id)
            })
            .await
    }

    async fn node_heartbeat(&self, id: &str, load: u32, now: i64) -> Result<Option<Node>> {
        let id = id.to_string();
        self.inner
            .writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached(&format!(
                        "UPDATE nodes SET load = ?2, heartbeat_at = ?3, stopped_at = NULL
                         WHERE id = ?1 RETURNING {NODE_COLS}"
                    ))?
                    .query_row(params![id, load, now], row_to_node)
                    .optional()?)
            })
            .await
    }

    async fn nodes(&self) -> Result<Vec<Node>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {NODE_COLS} FROM nodes ORDER BY id"))?
                .query_map([], row_to_node)?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn update_node(&self, id: &str, change: NodeChange) -> Result<Node> {
        let id = id.to_string();
        self.inner
            .writer
            .write(move |conn| {
                let n = conn.execute(
                    "UPDATE nodes SET health = coalesce(?2, health),
                         draining = coalesce(?3, draining),
                         stopped_at = coalesce(?4, stopped_at),
                         load = CASE WHEN ?4 IS NULL THEN load ELSE 0 END
                     WHERE id = ?1",
                    params![
                        id,
                        change.health.map(|h| h.as_str()),
                        change.draining,
                        change.stopped_at
                    ],
                )?;
                if n == 0 {
                    return Err(StoreError::node_not_found(&id));
                }
                get_node(conn, &id)
            })
            .await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.inner
            .writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached(LEASE_UPSERT)?
                    .query_row(params![name, holder, now, now + ttl_ms], |_| Ok(()))
                    .optional()?
                    .is_some())
            })
            .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.inner
            .writer
            .write(move |conn| {
                conn.execute(
                    "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                    params![name, holder],
                )?;
                Ok(())
            })
            .await
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT name, holder, acquired_at, expires_at FROM leases ORDER BY name",
                )?
                .query_map([], |r| {
                    Ok(Lease {
                        name: r.get(0)?,
                        holder: r.get(1)?,
                        acquired_at: r.get(2)?,
                        expires_at: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn shards(&self) -> Result<Vec<fabric_core::Shard>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT name, paused, spillover_limit, latency_budget_ms FROM shards
                     ORDER BY name",
                )?
                .query_map([], |r| {
                    Ok(fabric_core::Shard {
                        name: r.get(0)?,
                        paused: r.get(1)?,
                        spillover_limit: r.get(2)?,
                        latency_budget_ms: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn put_shard(&self, shard: fabric_core::Shard) -> Result<()> {
        self.inner
            .writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO shards (name, paused, spillover_limit, latency_budget_ms)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
                         spillover_limit = excluded.spillover_limit,
                         latency_budget_ms = excluded.latency_budget_ms",
                )?
                .execute(params![
                    shard.name,
                    shard.paused,
                    shard.spillover_limit,
                    shard.latency_budget_ms
                ])?;
                Ok(())
            })
            .await
    }

    async fn remove_shard(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.inner
            .writer
            .write(move |conn| {
                if conn.execute("DELETE FROM shards WHERE name = ?1", [&name])? == 0 {
                    return Err(StoreError::shard_not_found(&name));
                }
                Ok(())
            })
            .await
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.inner
            .writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![key, value])?;
                Ok(())
            })
            .await
    }

    async fn remove_setting(&self, key: &str) -> Result<()> {
        let key = key.to_string();
        self.inner
            .writer
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM settings WHERE key = ?1")?
                    .execute([key])?;
                Ok(())
            })
            .await
    }
}
