//! Conformance cases of the fleet's shared state ([`fabric_store::FleetStore`]): shards and
//! settings with the claim levers they set, nodes and their operator flags, and the leader
//! lease.

use std::sync::Arc;

use fabric_core::{NewJob, Node, NodeHealth, Priority};
use fabric_store::{NodeChange, Store, StoreError, LEADER_LEASE};

use super::{claim_req, T0};

fn node(id: &str, now: i64) -> Node {
    Node {
        id: id.into(),
        shard: "earth".into(),
        capacity: 6,
        specialties: vec!["gpu".into()],
        health: NodeHealth::Healthy,
        draining: false,
        load: 0,
        heartbeat_at: now,
        started_at: now,
        stopped_at: None,
        host: "host-a".into(),
        pid: 42,
        version: "test".into(),
    }
}

pub async fn shards_settings_and_claim_levers(s: &dyn Store) {
    let names: Vec<String> = s
        .fleet()
        .shards()
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.name)
        .collect();
    assert_eq!(names, ["earth", "edge", "helios", "luna", "mars"]);
    let mut luna = fabric_core::Shard::new("luna").unwrap();
    luna.paused = true;
    luna.spillover_limit = 3;
    s.fleet().put_shard(luna.clone()).await.unwrap();
    s.fleet()
        .put_shard(fabric_core::Shard::new("titan").unwrap())
        .await
        .unwrap();
    let all = s.fleet().shards().await.unwrap();
    assert_eq!(all.iter().find(|x| x.name == "luna").unwrap(), &luna);
    s.fleet().remove_shard("titan").await.unwrap();
    assert!(matches!(
        s.fleet().remove_shard("titan").await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert_eq!(s.fleet().setting("conservative").await.unwrap(), None);
    s.fleet().put_setting("conservative", "on").await.unwrap();
    s.fleet().put_setting("conservative", "off").await.unwrap();
    assert_eq!(
        s.fleet().setting("conservative").await.unwrap().as_deref(),
        Some("off")
    );

    // A paused shard's jobs and, in conservative mode, low-priority jobs are not claimed.
    let mk = |shard: &str, p: Priority| {
        let mut j = NewJob::new("noop");
        j.shard = shard.into();
        j.priority = p;
        j
    };
    s.submit(
        vec![
            mk("luna", Priority::HIGH),
            mk("earth", Priority::LOW),
            mk("earth", Priority::HIGH),
        ],
        T0,
    )
    .await
    .unwrap();
    let mut req = claim_req("w/1", 10, T0);
    req.exclude_shards = vec!["luna".into()];
    req.min_priority = Some(Priority::HIGH.0);
    let got = s.claim(req).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].shard.as_str(), got[0].priority),
        ("earth", Priority::HIGH)
    );
    let rest = s.claim(claim_req("w/1", 10, T0)).await.unwrap();
    assert_eq!(rest.len(), 2);
}

pub async fn nodes_register_heartbeat_and_keep_operator_flags(s: &dyn Store) {
    let n = s.fleet().register_node(node("n1", T0)).await.unwrap();
    assert_eq!(n.specialties, vec!["gpu".to_string()]);
    let hb = s
        .fleet()
        .node_heartbeat("n1", 3, T0 + 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((hb.load, hb.heartbeat_at), (3, T0 + 5));
    assert!(s
        .fleet()
        .node_heartbeat("ghost", 0, T0)
        .await
        .unwrap()
        .is_none());
    let change = NodeChange {
        health: Some(NodeHealth::Offline),
        draining: Some(true),
        stopped_at: None,
    };
    let off = s.fleet().update_node("n1", change).await.unwrap();
    assert_eq!((off.health, off.draining), (NodeHealth::Offline, true));
    // A restart of the daemon does not undo what the operator set.
    let mut again = node("n1", T0 + 10);
    again.capacity = 8;
    let back = s.fleet().register_node(again).await.unwrap();
    assert_eq!(
        (back.health, back.draining, back.capacity),
        (NodeHealth::Offline, true, 8)
    );
    let stop = NodeChange {
        stopped_at: Some(T0 + 20),
        ..NodeChange::default()
    };
    let stopped = s.fleet().update_node("n1", stop).await.unwrap();
    assert_eq!((stopped.stopped_at, stopped.load), (Some(T0 + 20), 0));
    assert_eq!(
        stopped.effective_health(T0 + 21, 30_000),
        NodeHealth::Offline
    );
    s.fleet().register_node(node("n0", T0)).await.unwrap();
    let ids: Vec<String> = s
        .fleet()
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(ids, ["n0", "n1"]);
    let err = s
        .fleet()
        .update_node("ghost", NodeChange::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

pub async fn leader_lease_is_exclusive_until_it_lapses(s: &dyn Store) {
    assert!(s
        .fleet()
        .acquire_lease(LEADER_LEASE, "a", T0, 1_000)
        .await
        .unwrap());
    assert!(!s
        .fleet()
        .acquire_lease(LEADER_LEASE, "b", T0 + 500, 1_000)
        .await
        .unwrap());
    // Renewal keeps the first acquisition time.
    assert!(s
        .fleet()
        .acquire_lease(LEADER_LEASE, "a", T0 + 900, 1_000)
        .await
        .unwrap());
    assert!(!s
        .fleet()
        .acquire_lease(LEADER_LEASE, "b", T0 + 1_800, 1_000)
        .await
        .unwrap());
    let l = &s.fleet().leases().await.unwrap()[0];
    assert_eq!(
        (l.holder.as_str(), l.acquired_at, l.expires_at),
        ("a", T0, T0 + 1_900)
    );
    // Lapsed: another takes it, and the old holder cannot renew.
    assert!(s
        .fleet()
        .acquire_lease(LEADER_LEASE, "b", T0 + 1_901, 1_000)
        .await
        .unwrap());
    assert!(!s
        .fleet()
        .acquire_lease(LEADER_LEASE, "a", T0 + 1_902, 1_000)
        .await
        .unwrap());
    // Only the holder can release.
    s.fleet().release_lease(LEADER_LEASE, "a").await.unwrap();
    assert_eq!(s.fleet().leases().await.unwrap()[0].holder, "b");
    s.fleet().release_lease(LEADER_LEASE, "b").await.unwrap();
    assert!(s.fleet().leases().await.unwrap().is_empty());
    assert!(s
        .fleet()
        .acquire_lease(LEADER_LEASE, "a", T0 + 1_903, 1_000)
        .await
        .unwrap());
}

pub async fn concurrent_lease_takers_get_one_winner(s: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.fleet()
                    .acquire_lease(LEADER_LEASE, &format!("n{i}"), T0, 10_000)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += t.await.unwrap() as u32;
    }
    assert_eq!(winners, 1);
    s.ping().await.unwrap();
}
