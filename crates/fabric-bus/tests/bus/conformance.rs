//! The bus conformance suite: behaviour every `Bus` backend must show. Each case gets an
//! `Opener` with a fresh key prefix; `conformance_tests!` turns them into one
//! `#[tokio::test]` per case. The first four are the original (Esper-Lite Oona) cases.

use std::time::Duration;

use fabric_bus::{Bus, BusConfig, Lane, Message, PublishOutcome};

use crate::Opener;

/// Defaults with these thresholds.
fn thresholds(emergency: u64, drop: u64) -> BusConfig {
    BusConfig {
        emergency_threshold: emergency,
        backpressure_drop_threshold: drop,
        ..BusConfig::default()
    }
}

const NO_WAIT: Duration = Duration::ZERO;

fn ids(v: &[fabric_bus::Delivery]) -> Vec<String> {
    v.iter().map(|d| d.id.clone()).collect()
}

pub async fn threshold_one_two_publishes_give_one_normal_and_one_emergency(o: &Opener) {
    let bus = o.open(thresholds(1, 100)).await;
    let first = bus.publish(Message::normal("a")).await.unwrap();
    let second = bus.publish(Message::normal("b")).await.unwrap();
    assert!(matches!(first, PublishOutcome::Normal(_)), "{first:?}");
    assert!(matches!(second, PublishOutcome::Rerouted(_)), "{second:?}");
    let m = bus.metrics_snapshot().await.unwrap();
    assert_eq!(m.get("queue_depth_normal"), 1);
    assert_eq!(m.get("queue_depth_emergency"), 1);
    assert_eq!(m.get("publish_rerouted"), 1);
    assert_eq!(m.get("publish_total"), 2);
}

pub async fn threshold_two_the_third_publish_is_rerouted(o: &Opener) {
    let bus = o.open(thresholds(2, 100)).await;
    let mut outcomes = Vec::new();
    for p in ["a", "b", "c"] {
        outcomes.push(bus.publish(Message::normal(p)).await.unwrap());
    }
    assert!(matches!(outcomes[0], PublishOutcome::Normal(_)));
    assert!(matches!(outcomes[1], PublishOutcome::Normal(_)));
    assert!(
        matches!(outcomes[2], PublishOutcome::Rerouted(_)),
        "{outcomes:?}"
    );
    assert_eq!(
        bus.metrics_snapshot()
            .await
            .unwrap()
            .get("publish_rerouted"),
        1
    );
}

/// A batch is decided message by message, in order, exactly as single publishes are, and its
/// entries are read in that order.
pub async fn a_published_batch_is_decided_in_order_like_single_publishes(o: &Opener) {
    let bus = o.open(thresholds(3, 6)).await;
    bus.init("g").await.unwrap();
    let mut batch: Vec<Message> = (0..4).map(|i| Message::normal(format!("n{i}"))).collect();
    batch.insert(1, Message::emergency("urgent"));
    let out = bus.publish_many(batch).await.unwrap();
    let kinds: Vec<&str> = out
        .iter()
        .map(|o| match o {
            PublishOutcome::Normal(_) => "normal",
            PublishOutcome::Emergency(_) => "emergency",
            PublishOutcome::Rerouted(_) => "rerouted",
            PublishOutcome::Dropped => "dropped",
        })
        .collect();
    assert_eq!(
        kinds,
        ["normal", "emergency", "normal", "normal", "rerouted"]
    );
    // Normal holds 3: fill it to the drop threshold, then a batch is dropped message by
    // message (an emergency-flagged one still goes through).
    for i in 0..3 {
        bus.publish_to(Lane::Normal, &format!("f{i}"))
            .await
            .unwrap();
    }
    let out = bus
        .publish_many(vec![Message::normal("x"), Message::emergency("y")])
        .await
        .unwrap();
    assert_eq!(out[0], PublishOutcome::Dropped);
    assert!(matches!(out[1], PublishOutcome::Emergency(_)), "{out:?}");
    assert!(bus.publish_many(vec![]).await.unwrap().is_empty());
    let m = bus.metrics_snapshot().await.unwrap();
    assert_eq!(
        (m.get("publish_rerouted"), m.get("publish_dropped")),
        (1, 1)
    );
    let got = bus.read("g", "c", 100, Duration::ZERO).await.unwrap();
    let payloads: Vec<&str> = got.iter().map(|d| d.payload.as_str()).collect();
    assert_eq!(
        payloads,
        ["urgent", "n3", "y", "n0", "n1", "n2", "f0", "f1", "f2"]
    );
}

/// Drop threshold 5 (the emergency threshold above it: dropping is decided first): five
/// publishes go to normal, and the sixth is dropped, counted and reported.
pub async fn drop_threshold_five_the_sixth_publish_is_dropped_and_reported(o: &Opener) {
    let bus = o.open(thresholds(4000, 5)).await;
    for i in 0..5 {
        let r = bus.publish(Message::normal(format!("{i}"))).await.unwrap();
        assert!(matches!(r, PublishOutcome::Normal(_)), "{i}: {r:?}");
    }
    let sixth = bus.publish(Message::normal("6")).await.unwrap();
    assert_eq!(sixth, PublishOutcome::Dropped);
    assert_eq!(sixth.id(), None);
    // An emergency-flagged message is never dropped: no depth check.
    let urgent = bus.publish(Message::emergency("!")).await.unwrap();
    assert!(matches!(urgent, PublishOutcome::Emergency(_)), "{urgent:?}");
    let m = bus.metrics_snapshot().await.unwrap();
    assert_eq!(m.get("publish_dropped"), 1);
    assert_eq!(m.get("publish_rerouted"), 0);
    assert_eq!(m.get("queue_depth_normal"), 5);
    assert_eq!(m.get("queue_depth_emergency"), 1);
    assert_eq!(m.get("queue_depth_max"), 5);
}

pub async fn maxlen_five_after_ten_publishes_leaves_at_most_five(o: &Opener) {
    let bus = o
        .open(BusConfig {
            max_stream_length: 5,
            ..BusConfig::default()
        })
        .await;
    for i in 0..10 {
        bus.publish(Message::normal(format!("{i}"))).await.unwrap();
        bus.publish_to(Lane::Telemetry, &format!("{i}"))
            .await
            .unwrap();
    }
    for s in bus.streams().await.unwrap() {
        assert!(s.length <= 5, "{s:?}");
    }
    let normal = &bus.streams().await.unwrap()[0];
    assert_eq!((normal.lane, normal.length > 0), (Lane::Normal, true));
}

/// Trimming never removes an entry a group has not yet been delivered.
pub async fn trimming_never_passes_the_slowest_group(o: &Opener) {
    let bus = o
        .open(BusConfig {
            max_stream_length: 5,
            ..BusConfig::default()
        })
        .await;
    bus.init("slow").await.unwrap();
    for i in 0..10 {
        bus.publish(Message::normal(format!("{i}"))).await.unwrap();
    }
    let s = &bus.streams().await.unwrap()[0];
    assert_eq!(s.length, 10, "the group has read nothing: {s:?}");
    assert_eq!(s.groups["slow"].lag, 10);
    let got = bus.read("slow", "c", 10, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(got[0].payload, "0");
    bus.ack("slow", Lane::Normal, &ids(&got)).await.unwrap();
    bus.publish(Message::normal("10")).await.unwrap();
    let s = &bus.streams().await.unwrap()[0];
    assert!(s.length <= 5, "{s:?}");
    assert_eq!(s.groups["slow"].lag, 1);
}

pub async fn emergency_is_read_before_normal(o: &Opener) {
    let bus = o.open(BusConfig::default()).await;
    bus.init("g").await.unwrap();
    bus.publish(Message::normal("n1")).await.unwrap();
    bus.publish(Message::normal("n2")).await.unwrap();
    bus.publish(Message::emergency("e1")).await.unwrap();
    let first = bus.read("g", "c", 1, NO_WAIT).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].lane, first[0].payload.as_str()),
        (Lane::Emergency, "e1")
    );
    bus.publish(Message::emergency("e2")).await.unwrap();
    let rest = bus.read("g", "c", 10, NO_WAIT).await.unwrap();
    let got: Vec<_> = rest.iter().map(|d| d.payload.as_str()).collect();
    assert_eq!(got, ["e2", "n1", "n2"]);
    assert!(rest.iter().all(|d| d.deliveries == 1));
    assert!(bus.read("g", "c", 10, NO_WAIT).await.unwrap().is_empty());
}

pub async fn a_blocking_read_wakes_on_publish(o: &Opener) {
    let bus = o.open(BusConfig::default()).await;
    bus.init("g").await.unwrap();
    let reader = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.read("g", "c", 10, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.publish(Message::emergency("wake")).await.unwrap();
    let got = reader.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, "wake");
}

/// A BLOCK longer than the redis crate's default response timeout (500 ms) ends empty, not
/// with a timeout error.
pub async fn a_blocking_read_past_half_a_second_ends_empty(o: &Opener) {
    let bus = o.open(BusConfig::default()).await;
    bus.init("g").await.unwrap();
    let got = bus
        .read("g", "c", 10, Duration::from_millis(1200))
        .await
        .unwrap();
    assert!(got.is_empty());
}

pub async fn ack_removes_from_pending(o: &Opener) {
    let bus = o.open(BusConfig::default()).await;
    bus.init("g").await.unwrap();
    bus.publish(Message::normal("x")).await.unwrap();
    bus.publish(Message::normal("y")).await.unwrap();
    let got = bus.read("g", "c", 10, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 2);
    let s = &bus.streams().await.unwrap()[0];
    assert_eq!((s.groups["g"].pending, s.groups["g"].lag), (2, 0));
    assert_eq!(
        bus.ack("g", Lane::Normal, &ids(&got[..1])).await.unwrap(),
        1
    );
    let s = &bus.streams().await.unwrap()[0];
    assert_eq!(s.groups["g"].pending, 1);
    // Acknowledging again changes nothing.
    assert_eq!(
        bus.ack("g", Lane::Normal, &ids(&got[..1])).await.unwrap(),
        0
    );
    assert_eq!(
        bus.ack("g", Lane::Normal, &ids(&got[1..])).await.unwrap(),
        1
    );
    let s = &bus.streams().await.unwrap()[0];
    assert_eq!(s.groups["g"].pending, 0);
    assert_eq!(s.length, 2, "acknowledging does not delete");
    assert_eq!(bus.metrics_snapshot().await.unwrap().get("acked"), 2);
}

/// An unacknowledged entry idle past `retry_idle_ms` is delivered again; once delivered
/// `retry_max_attempts` times it moves to dead-letter with its original id, group and count.
pub async fn an_idle_entry_is_reclaimed_then_dead_lettered(o: &Opener) {
    let bus = o
        .open(BusConfig {
            retry_idle_ms: 50,
            retry_max_attempts: 2,
            ..BusConfig::default()
        })
        .await;
    bus.init("g").await.unwrap();
    let id = bus.publish(Message::normal("job")).await.unwrap();
    let id = id.id().unwrap().to_string();
    let first = bus.read("g", "crashed", 1, NO_WAIT).await.unwrap();
    assert_eq!(ids(&first), std::slice::from_ref(&id));
    let idle = Duration::from_millis(120);
    tokio::time::sleep(idle).await;
    let again = bus.reclaim(Lane::Normal, "g", "rescuer", 10).await.unwrap();
    assert_eq!(ids(&again.redelivered), std::slice::from_ref(&id));
    assert_eq!(again.redelivered[0].deliveries, 2);
    assert_eq!(again.redelivered[0].payload, "job");
    assert_eq!((again.dead_lettered, again.lost), (0, 0));
    tokio::time::sleep(idle).await;
    let dead = bus.reclaim(Lane::Normal, "g", "rescuer", 10).await.unwrap();
    assert!(dead.redelivered.is_empty(), "{dead:?}");
    assert_eq!(dead.dead_lettered, 1);
    let letters = bus.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let l = &letters[0];
    assert_eq!(
        (
            l.lane,
            l.original_id.as_str(),
            l.group.as_str(),
            l.deliveries,
            l.payload.as_str()
        ),
        (Lane::Normal, id.as_str(), "g", 2, "job")
    );
    let s = &bus.streams().await.unwrap()[0];
    assert_eq!(
        s.groups["g"].pending, 0,
        "dead-lettered entries leave the pending list"
    );
    let m = bus.metrics_snapshot().await.unwrap();
    assert_eq!((m.get("reclaimed"), m.get("dead_lettered")), (1, 1));
}

/// Pending entries trimmed away are reported as lost by reclaim, never silently skipped.
pub async fn trimmed_pending_entries_are_counted_as_lost(o: &Opener) {
    let bus = o
        .open(BusConfig {
            max_stream_length: 2,
            retry_idle_ms: 50,
            ..BusConfig::default()
        })
        .await;
    bus.init("g").await.unwrap();
    for i in 0..3 {
        bus.publish(Message::normal(format!("{i}"))).await.unwrap();
    }
    assert_eq!(bus.read("g", "crashed", 3, NO_WAIT).await.unwrap().len(), 3);
    for i in 3..6 {
        bus.publish(Message::normal(format!("{i}"))).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    let r = bus.reclaim(Lane::Normal, "g", "rescuer", 10).await.unwrap();
    assert_eq!((r.lost, r.redelivered.len(), r.dead_lettered), (3, 0, 0));
    assert_eq!(bus.metrics_snapshot().await.unwrap().get("lost"), 3);
    let rest = bus.read("g", "c", 10, NO_WAIT).await.unwrap();
    let got: Vec<_> = rest.iter().map(|d| d.payload.as_str()).collect();
    assert_eq!(got, ["3", "4", "5"], "undelivered entries survive the trim");
}

pub async fn groups_init_twice_is_fine_and_keeps_positions(o: &Opener) {
    let bus = o.open(BusConfig::default()).await;
    bus.publish(Message::normal("before")).await.unwrap();
    bus.init("g").await.unwrap();
    let got = bus.read("g", "c", 10, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 1, "a new group starts at the beginning");
    bus.init("g").await.unwrap();
    assert!(bus.read("g", "c", 10, NO_WAIT).await.unwrap().is_empty());
    let s = &bus.streams().await.unwrap()[0];
    assert_eq!(s.groups["g"].pending, 1);
}

pub async fn telemetry_and_policy_are_their_own_streams(o: &Opener) {
    let bus = o.open(thresholds(1, 2)).await;
    bus.init("g").await.unwrap();
    for i in 0..3 {
        bus.publish_to(Lane::Telemetry, &format!("t{i}"))
            .await
            .unwrap();
    }
    bus.publish_to(Lane::Policy, "p").await.unwrap();
    // The thresholds apply to normal only.
    let n = bus.publish(Message::normal("n")).await.unwrap();
    assert!(matches!(n, PublishOutcome::Normal(_)), "{n:?}");
    let t = bus
        .read_lane(Lane::Telemetry, "g", "c", 10, NO_WAIT)
        .await
        .unwrap();
    let got: Vec<_> = t.iter().map(|d| (d.lane, d.payload.as_str())).collect();
    assert_eq!(
        got,
        [
            (Lane::Telemetry, "t0"),
            (Lane::Telemetry, "t1"),
            (Lane::Telemetry, "t2")
        ]
    );
    let normal = bus.read("g", "c", 10, NO_WAIT).await.unwrap();
    assert_eq!(normal.len(), 1);
    let infos = bus.streams().await.unwrap();
    let names: Vec<_> = infos.iter().map(|s| (s.name.as_str(), s.length)).collect();
    assert_eq!(
        names,
        [
            ("fabric.normal", 1),
            ("fabric.emergency", 0),
            ("fabric.telemetry", 3),
            ("fabric.policy", 1),
            ("fabric.dead_letter", 0)
        ]
    );
    assert_eq!(infos[3].groups["g"].lag, 1);
}

pub async fn snapshot_counters_match(o: &Opener) {
    let bus = o.open(thresholds(2, 3)).await;
    bus.init("g").await.unwrap();
    let keys: Vec<_> = bus
        .metrics_snapshot()
        .await
        .unwrap()
        .0
        .into_keys()
        .collect();
    let mut want = vec![
        "publish_total",
        "publish_rerouted",
        "publish_dropped",
        "queue_depth_max",
        "queue_depth_normal",
        "queue_depth_emergency",
        "consumed",
        "acked",
        "reclaimed",
        "dead_lettered",
        "lost",
        "rejected",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    for p in ["a", "b", "c", "d"] {
        bus.publish(Message::normal(p)).await.unwrap(); // 2 normal, 2 rerouted
    }
    bus.publish(Message::emergency("e")).await.unwrap();
    bus.publish_to(Lane::Normal, "x").await.unwrap(); // normal at 3 = drop threshold
    assert_eq!(
        bus.publish(Message::normal("z")).await.unwrap(),
        PublishOutcome::Dropped
    );
    let got = bus.read("g", "c", 4, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 4);
    bus.ack("g", got[0].lane, &ids(&got[..1])).await.unwrap();
    let m = bus.metrics_snapshot().await.unwrap();
    let pairs = [
        ("publish_total", 7),
        ("publish_rerouted", 2),
        ("publish_dropped", 1),
        ("queue_depth_max", 3),
        ("queue_depth_normal", 3),
        // Three entries, one acknowledged: the depth is what is left to acknowledge.
        ("queue_depth_emergency", 2),
        ("consumed", 4),
        ("acked", 1),
        ("reclaimed", 0),
        ("dead_lettered", 0),
        ("lost", 0),
        ("rejected", 0),
    ];
    for (k, v) in pairs {
        assert_eq!((k, m.get(k)), (k, v));
    }
}

/// Concurrent publishers never push normal past the emergency threshold: the length check
/// and the add are one step.
pub async fn concurrent_publishes_respect_the_threshold_exactly(o: &Opener) {
    let bus = o.open(thresholds(10, 1000)).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..10 {
                out.push(
                    bus.publish(Message::normal(format!("{t}.{i}")))
                        .await
                        .unwrap(),
                );
            }
            out
        }));
    }
    let mut normal = 0;
    let mut rerouted = 0;
    for t in tasks {
        for r in t.await.unwrap() {
            match r {
                PublishOutcome::Normal(_) => normal += 1,
                PublishOutcome::Rerouted(_) => rerouted += 1,
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!((normal, rerouted), (10, 70));
    let m = bus.metrics_snapshot().await.unwrap();
    assert_eq!(m.get("queue_depth_normal"), 10);
    assert_eq!(m.get("queue_depth_emergency"), 70);
    assert_eq!(m.get("publish_rerouted"), 70);
}

/// With signing on, only messages sealed with a known key and younger than 5 minutes are
/// handed out; unsigned, forged, unknown-key and stale ones are rejected, counted and
/// acknowledged (not redelivered). A retired key is still accepted (rotation).
pub async fn signed_bus_rejects_unsigned_forged_and_stale_messages(o: &Opener) {
    use fabric_bus::{SignedBus, Signer, MAX_AGE_MS};
    let inner = o.open(BusConfig::default()).await;
    let old = Signer::new("k1", b"first secret");
    let current = Signer::new("k2", b"second secret").accepting("k1", b"first secret");
    let signed = SignedBus::new(inner.clone(), current.clone());
    signed.init("g").await.unwrap();
    signed.publish(Message::normal("good")).await.unwrap();
    inner.publish(Message::normal("unsigned")).await.unwrap();
    let forger = Signer::new("k2", b"guessed secret");
    inner
        .publish(Message::normal(forger.seal("forged")))
        .await
        .unwrap();
    let stranger = Signer::new("k9", b"second secret");
    inner
        .publish(Message::normal(stranger.seal("unknown key")))
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let stale = current.seal_at("replayed", now - MAX_AGE_MS - 1000);
    inner.publish(Message::normal(stale)).await.unwrap();
    inner
        .publish(Message::normal(old.seal("rotated")))
        .await
        .unwrap();
    let tampered = current.seal("amount=1").replace("amount=1", "amount=9");
    inner.publish(Message::normal(tampered)).await.unwrap();
    signed.publish(Message::emergency("urgent")).await.unwrap();

    let got = signed.read("g", "c", 100, NO_WAIT).await.unwrap();
    let payloads: Vec<_> = got.iter().map(|d| d.payload.as_str()).collect();
    assert_eq!(payloads, ["urgent", "good", "rotated"]);
    let m = signed.metrics_snapshot().await.unwrap();
    assert_eq!(m.get("rejected"), 5);
    let s = &signed.streams().await.unwrap()[0];
    assert_eq!(
        s.groups["g"].pending, 2,
        "rejected entries are acknowledged"
    );
    // What travels is sealed: the inner bus sees the envelope, not the bare payload.
    inner.init("raw").await.unwrap();
    let raw = inner
        .read_lane(Lane::Normal, "raw", "c", 1, NO_WAIT)
        .await
        .unwrap();
    assert!(raw[0].payload.starts_with("fabric-sig1:k2:"), "{raw:?}");
    assert!(raw[0].payload.ends_with(":good"), "{raw:?}");
}

/// A large limit trims approximately (whole Redis nodes), but never keeps more than the limit
/// plus 1 % and one node, nor fewer than the limit.
pub async fn a_large_limit_trims_within_one_percent(o: &Opener) {
    let bus = o
        .open(BusConfig {
            max_stream_length: 10_000,
            backpressure_drop_threshold: 1_000_000,
            emergency_threshold: 500_000,
            ..BusConfig::default()
        })
        .await;
    for i in 0..10_500 {
        bus.publish(Message::normal(format!("{i}"))).await.unwrap();
    }
    let length = bus.streams().await.unwrap()[0].length;
    assert!((10_000..=10_200).contains(&length), "{length}");
}

/// The thresholds weigh the backlog, not the history: once the consumers have acknowledged
/// what they read, normal takes publishes again although its length (kept up to
/// `max_stream_length`) is past the thresholds.
pub async fn thresholds_weigh_what_the_slowest_group_has_not_acknowledged(o: &Opener) {
    let bus = o.open(thresholds(2, 3)).await;
    bus.init("g").await.unwrap();
    let outcomes =
        |v: &[PublishOutcome]| -> Vec<&'static str> { v.iter().map(|p| p.as_str()).collect() };
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(bus.publish(Message::normal("a")).await.unwrap());
    }
    assert_eq!(outcomes(&first), ["normal", "normal", "rerouted"]);
    // Read but not acknowledged: still the backlog.
    let got = bus.read("g", "c", 10, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 3);
    let held = bus.publish(Message::normal("b")).await.unwrap();
    assert!(matches!(held, PublishOutcome::Rerouted(_)), "{held:?}");
    for lane in [Lane::Normal, Lane::Emergency] {
        let ids: Vec<String> = got
            .iter()
            .filter(|d| d.lane == lane)
            .map(|d| d.id.clone())
            .collect();
        bus.ack("g", lane, &ids).await.unwrap();
    }
    // The rerouted "b" is the only entry left to acknowledge, and it is on emergency.
    let s = &bus.streams().await.unwrap()[0];
    assert_eq!(s.length, 2, "normal keeps its history");
    assert_eq!(
        bus.metrics_snapshot()
            .await
            .unwrap()
            .get("queue_depth_normal"),
        0
    );
    let mut again = Vec::new();
    for _ in 0..3 {
        again.push(bus.publish(Message::normal("c")).await.unwrap());
    }
    assert_eq!(outcomes(&again), ["normal", "normal", "rerouted"]);
    let many = bus
        .publish_many(vec![Message::normal("d"), Message::normal("e")])
        .await
        .unwrap();
    assert_eq!(outcomes(&many), ["rerouted", "rerouted"]);
}

/// One `#[tokio::test]` per conformance case, on the backend `$backend`.
/// `fabric bus tail`: entries read without consuming them, the newest or those after an id.
pub async fn entries_are_read_without_consuming_them(o: &Opener) {
    let bus = o.open(BusConfig::default()).await;
    bus.init("g").await.unwrap();
    let mut published = Vec::new();
    for i in 0..5 {
        let id = bus.publish(Message::normal(format!("m{i}"))).await.unwrap();
        published.push(id.id().unwrap().to_string());
    }
    let newest = bus.entries(Lane::Normal, None, 2).await.unwrap();
    assert_eq!(ids(&newest), published[3..].to_vec());
    assert_eq!(newest[0].payload, "m3");
    let after = bus
        .entries(Lane::Normal, Some(&published[1]), 2)
        .await
        .unwrap();
    assert_eq!(ids(&after), published[2..4].to_vec());
    let s = &bus.streams().await.unwrap()[0];
    assert_eq!(
        (s.groups["g"].lag, s.groups["g"].pending),
        (5, 0),
        "nothing consumed"
    );
    let got = bus.read("g", "c", 2, NO_WAIT).await.unwrap();
    let s = &bus.streams().await.unwrap()[0];
    assert_eq!(s.groups["g"].last_delivered, got[1].id);
}

/// `fabric bus dead-letters replay|purge`.
pub async fn dead_letters_are_replayed_to_their_stream_and_purged(o: &Opener) {
    let bus = o
        .open(BusConfig {
            retry_idle_ms: 20,
            retry_max_attempts: 1,
            ..BusConfig::default()
        })
        .await;
    bus.init("g").await.unwrap();
    for p in ["a", "b"] {
        bus.publish(Message::normal(p)).await.unwrap();
    }
    let got = bus.read("g", "crashed", 2, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 2);
    tokio::time::sleep(Duration::from_millis(60)).await;
    let r = bus.reclaim(Lane::Normal, "g", "rescuer", 10).await.unwrap();
    assert_eq!(r.dead_lettered, 2);
    let letters = bus.dead_letters(10).await.unwrap();
    let replayed = fabric_bus::replay_dead_letters(bus.as_ref(), &letters[..1])
        .await
        .unwrap();
    assert_eq!(
        (replayed[0].lane, replayed[0].outcome),
        (Lane::Normal, "normal")
    );
    let again = bus.read("g", "c", 10, NO_WAIT).await.unwrap();
    assert_eq!(
        again.iter().map(|d| d.payload.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    let left = bus.dead_letters(10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].payload, "b");
    let purged = bus
        .delete_dead_letters(&[left[0].id.clone()])
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert!(bus.dead_letters(10).await.unwrap().is_empty());
}

macro_rules! conformance_tests {
    ($backend:expr) => {
        conformance_tests!(@cases $backend;
            threshold_one_two_publishes_give_one_normal_and_one_emergency,
            threshold_two_the_third_publish_is_rerouted,
            a_published_batch_is_decided_in_order_like_single_publishes,
            drop_threshold_five_the_sixth_publish_is_dropped_and_reported,
            maxlen_five_after_ten_publishes_leaves_at_most_five,
            trimming_never_passes_the_slowest_group,
            emergency_is_read_before_normal,
            a_blocking_read_wakes_on_publish,
            a_blocking_read_past_half_a_second_ends_empty,
            ack_removes_from_pending,
            an_idle_entry_is_reclaimed_then_dead_lettered,
            trimmed_pending_entries_are_counted_as_lost,
            groups_init_twice_is_fine_and_keeps_positions,
            telemetry_and_policy_are_their_own_streams,
            snapshot_counters_match,
            concurrent_publishes_respect_the_threshold_exactly,
            signed_bus_rejects_unsigned_forged_and_stale_messages,
            a_large_limit_trims_within_one_percent,
            entries_are_read_without_consuming_them,
            dead_letters_are_replayed_to_their_stream_and_purged,
            thresholds_weigh_what_the_slowest_group_has_not_acknowledged
        );
    };
    (@cases $backend:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let opener = $crate::Opener::new($backend);
                $crate::conformance::$case(&opener).await;
            }
        )*
    };
}
