//! The Console's fleet levers: nodes (health, draining), shards (pause, resume, spillover
//! limit, latency budget) and conservative mode, each validated, applied and audited.

use fabric_core::{Job, JobState};

use crate::console::{NodeAction, NodeView, Result, Workers};
use crate::{Console, EngineError};

impl Console {
    /// Every node with its effective health and whether it leads.
    pub async fn nodes(&self) -> Result<Vec<NodeView>> {
        let now = self.now();
        let timeout = self.config().node.timeout_ms as i64;
        let leader = self
            .store()
            .fleet()
            .leases()
            .await?
            .into_iter()
            .find(|l| l.name == fabric_store::LEADER_LEASE && l.expires_at >= now)
            .map(|l| l.holder);
        let mut nodes = self.store().fleet().nodes().await?;
        // An external worker reports its load only when it claims: count the jobs its
        // leases hold now instead, so a worker that finished them shows idle.
        let external = |n: &fabric_core::Node| {
            n.id.strip_prefix(crate::external::NODE_PREFIX)
                .filter(|_| n.shard == "external")
                .map(|w| format!("ext/{w}/"))
        };
        if nodes.iter().any(|n| external(n).is_some()) {
            let running = self.running().await?;
            for n in &mut nodes {
                if let Some(prefix) = external(n) {
                    n.load = held_by(&running, &prefix).count() as u32;
                }
            }
        }
        Ok(nodes
            .into_iter()
            .map(|node| NodeView {
                effective_health: node.effective_health(now, timeout),
                heartbeat_age_ms: now - node.heartbeat_at,
                leader: leader.as_deref() == Some(node.id.as_str()),
                node,
            })
            .collect())
    }

    /// The jobs this host's daemon runs now (its node, `node.id` of the config, holds their
    /// leases), oldest attempt first; claimed-ahead jobs waiting for a slot included.
    pub async fn running_here(&self) -> Result<Vec<Job>> {
        let prefix = format!("{}/", self.config().node.id);
        let running = self.running().await?;
        let mut jobs: Vec<Job> = held_by(&running, &prefix).cloned().collect();
        jobs.sort_by_key(|j| (j.started_at, j.id));
        Ok(jobs)
    }

    /// Every running job of the store (claimed-ahead ones included).
    async fn running(&self) -> Result<Vec<Job>> {
        Ok(self
            .store()
            .jobs(fabric_store::JobFilter {
                state: Some(JobState::Running),
                limit: 100_000,
                ..Default::default()
            })
            .await?)
    }

    /// This host's daemon's worker slots: the jobs its node holds in the store now (see
    /// [`Console::running_here`]), not those other daemons of the fleet run. The caller says
    /// whether the daemon runs at all.
    pub async fn workers(&self, daemon_running: bool) -> Result<Workers> {
        let max = self.config().workers.max_workers;
        let claimed = if daemon_running {
            self.running_here().await?.len() as u64
        } else {
            0
        };
        let active = claimed.min(u64::from(max));
        Ok(Workers {
            active,
            claimed,
            max,
            utilization: if max == 0 {
                0.0
            } else {
                active as f64 / f64::from(max)
            },
        })
    }

    /// Takes a node offline (its running jobs are reassigned at once), brings it back, or
    /// drains it; persisted, audited, and honoured by a running daemon at its next heartbeat.
    pub async fn set_node(
        &self,
        id: &str,
        action: NodeAction,
        reason: Option<&str>,
    ) -> Result<fabric_core::Node> {
        use fabric_core::NodeHealth;
        let change = match action {
            NodeAction::Offline => fabric_store::NodeChange {
                health: Some(NodeHealth::Offline),
                ..Default::default()
            },
            NodeAction::Online => fabric_store::NodeChange {
                health: Some(NodeHealth::Healthy),
                draining: Some(false),
                ..Default::default()
            },
            NodeAction::Drain => fabric_store::NodeChange {
                draining: Some(true),
                ..Default::default()
            },
        };
        let node = self.store().fleet().update_node(id, change).await?;
        let verb = match action {
            NodeAction::Offline => "offline",
            NodeAction::Online => "online",
            NodeAction::Drain => "drain",
        };
        if action == NodeAction::Offline {
            self.store()
                .rescue(self.now(), Some(&format!("{id}/")))
                .await?;
        }
        self.audit(
            &format!("nodes.{verb}"),
            format!("node {id}"),
            reason.map(String::from),
        )
        .await?;
        Ok(node)
    }

    /// Every shard with its owner levers.
    pub async fn shards(&self) -> Result<Vec<fabric_core::Shard>> {
        Ok(self.store().fleet().shards().await?)
    }

    async fn shard(&self, name: &str) -> Result<fabric_core::Shard> {
        fabric_core::job::validate_name("shard", name)?;
        self.store()
            .fleet()
            .shards()
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| EngineError::NotFound {
                what: "shard",
                id: name.to_string(),
            })
    }

    /// Applies `change` to shard `name`, persists and audits it as `action`.
    async fn change_shard(
        &self,
        name: &str,
        action: &str,
        reason: Option<&str>,
        change: impl FnOnce(&mut fabric_core::Shard),
    ) -> Result<fabric_core::Shard> {
        let mut shard = self.shard(name).await?;
        change(&mut shard);
        shard.validate()?;
        self.store().fleet().put_shard(shard.clone()).await?;
        self.audit(action, format!("shard {name}"), reason.map(String::from))
            .await?;
        self.levers_changed().await;
        Ok(shard)
    }

    /// Adds a shard with default levers (a conflict if it exists).
    pub async fn add_shard(&self, name: &str, reason: Option<&str>) -> Result<fabric_core::Shard> {
        let shard = fabric_core::Shard::new(name)?;
        if self
            .store()
            .fleet()
            .shards()
            .await?
            .iter()
            .any(|s| s.name == name)
        {
            return Err(EngineError::Conflict(format!(
                "shard {name} already exists"
            )));
        }
        self.store().fleet().put_shard(shard.clone()).await?;
        self.audit(
            "shards.add",
            format!("shard {name}"),
            reason.map(String::from),
        )
        .await?;
        Ok(shard)
    }

    /// Removes a shard; its queued jobs stay and run again if it is added back.
    pub async fn remove_shard(&self, name: &str, reason: Option<&str>) -> Result<()> {
        self.shard(name).await?;
        self.store().fleet().remove_shard(name).await?;
        self.audit(
            "shards.remove",
            format!("shard {name}"),
            reason.map(String::from),
        )
        .await
    }

    /// Pauses a shard: nothing of it is dispatched until it is resumed.
    pub async fn pause_shard(
        &self,
        name: &str,
        reason: Option<&str>,
    ) -> Result<fabric_core::Shard> {
        self.change_shard(name, "shards.pause", reason, |s| s.paused = true)
            .await
    }

    /// Resumes a paused shard.
    pub async fn resume_shard(
        &self,
        name: &str,
        reason: Option<&str>,
    ) -> Result<fabric_core::Shard> {
        self.change_shard(name, "shards.resume", reason, |s| s.paused = false)
            .await
    }

    /// Pauses every shard.
    pub async fn pause_all(&self, reason: Option<&str>) -> Result<Vec<fabric_core::Shard>> {
        self.set_all_paused(true, "shards.pause-all", reason).await
    }

    /// Resumes every shard.
    pub async fn resume_all(&self, reason: Option<&str>) -> Result<Vec<fabric_core::Shard>> {
        self.set_all_paused(false, "shards.resume-all", reason)
            .await
    }

    async fn set_all_paused(
        &self,
        paused: bool,
        action: &str,
        reason: Option<&str>,
    ) -> Result<Vec<fabric_core::Shard>> {
        let mut out = Vec::new();
        for mut s in self.store().fleet().shards().await? {
            s.paused = paused;
            self.store().fleet().put_shard(s.clone()).await?;
            out.push(s);
        }
        self.audit(action, "all shards".into(), reason.map(String::from))
            .await?;
        self.levers_changed().await;
        Ok(out)
    }

    /// Sets the queue depth above which a shard without a free node spills to others.
    pub async fn update_spillover_limit(
        &self,
        name: &str,
        limit: u32,
        reason: Option<&str>,
    ) -> Result<fabric_core::Shard> {
        self.change_shard(name, "shards.set-spillover", reason, |s| {
            s.spillover_limit = limit
        })
        .await
    }

    /// Sets the latency budget (ms) a shard's spilled work must fit.
    pub async fn update_latency_budget(
        &self,
        name: &str,
        ms: u64,
        reason: Option<&str>,
    ) -> Result<fabric_core::Shard> {
        if ms == 0 {
            return Err(EngineError::invalid(
                "latency budget",
                "0 ms must be at least 1",
            ));
        }
        self.change_shard(name, "shards.set-latency-budget", reason, |s| {
            s.latency_budget_ms = ms
        })
        .await
    }

    /// Conservative mode: only high-priority work is dispatched, on every shard.
    pub async fn set_conservative(&self, on: bool, reason: Option<&str>) -> Result<()> {
        let value = if on { "on" } else { "off" };
        self.store()
            .fleet()
            .put_setting(crate::fleet::CONSERVATIVE_SETTING, value)
            .await?;
        self.audit(
            &format!("conservative.{value}"),
            "all shards".into(),
            reason.map(String::from),
        )
        .await?;
        self.levers_changed().await;
        Ok(())
    }

    /// Whether conservative mode is on.
    pub async fn conservative(&self) -> Result<bool> {
        Ok(self
            .store()
            .fleet()
            .setting(crate::fleet::CONSERVATIVE_SETTING)
            .await?
            .as_deref()
            == Some("on"))
    }
}

/// The jobs of `running` whose lease an owner starting with `prefix` holds (`node/…` for a
/// daemon's node, `ext/worker/…` for an external worker).
fn held_by<'a>(running: &'a [Job], prefix: &'a str) -> impl Iterator<Item = &'a Job> {
    running.iter().filter(move |j| {
        j.lease_owner
            .as_deref()
            .is_some_and(|o| o.starts_with(prefix))
    })
}
