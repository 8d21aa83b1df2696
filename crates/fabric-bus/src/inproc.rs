//! `InProcBus`: the bus inside this process (the default backend). Streams are deques behind
//! one mutex; blocking reads wait on a `tokio::sync::Notify`. Bounded: normal by the drop
//! threshold, every stream by `max_stream_length` (exact trim, never past an entry some group
//! has not yet been delivered).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::{add, Counters};
use crate::{
    Bus, BusConfig, BusError, DeadLetter, Delivery, GroupInfo, Lane, Message, MetricsSnapshot,
    PublishOutcome, Reclaimed, StreamInfo,
};

/// Where a dead-letter entry came from.
#[derive(Debug, Clone)]
struct Origin {
    lane: Lane,
    id: String,
    group: String,
    deliveries: u64,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    payload: String,
    origin: Option<Origin>,
}

#[derive(Debug)]
struct Pending {
    consumer: String,
    since: Instant,
    deliveries: u64,
}

#[derive(Debug, Default)]
struct Group {
    /// The sequence number of the next entry to deliver.
    next: u64,
    pending: BTreeMap<u64, Pending>,
}

#[derive(Debug)]
struct Stream {
    entries: VecDeque<Entry>,
    next_seq: u64,
    groups: BTreeMap<String, Group>,
}

impl Stream {
    fn new() -> Self {
        Self {
            entries: VecDeque::new(),
            next_seq: 1,
            groups: BTreeMap::new(),
        }
    }

    fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The backlog the thresholds weigh: what the slowest group has yet to acknowledge (its
    /// pending entries and those not yet delivered to it); the whole length without groups.
    fn depth(&self) -> u64 {
        let Some(last) = self.entries.back().map(|e| e.seq) else {
            return 0;
        };
        let first = self.entries.front().map_or(last, |e| e.seq);
        self.groups
            .values()
            .map(|g| {
                let undelivered = (last + 1).saturating_sub(g.next.max(first));
                undelivered + g.pending.len() as u64
            })
            .max()
            .unwrap_or(self.len())
    }

    fn append(&mut self, payload: String, origin: Option<Origin>, max_len: u64) -> String {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push_back(Entry {
            seq,
            payload,
            origin,
        });
        // Trim to max_len, but never an entry the slowest group has yet to be delivered.
        let slowest = self
            .groups
            .values()
            .map(|g| g.next)
            .min()
            .unwrap_or(u64::MAX);
        while self.len() > max_len && self.entries.front().is_some_and(|e| e.seq < slowest) {
            self.entries.pop_front();
        }
        id_of(seq)
    }

    fn get(&self, seq: u64) -> Option<&Entry> {
        let first = self.entries.front()?.seq;
        let entry = self
            .entries
            .get(usize::try_from(seq.checked_sub(first)?).ok()?)?;
        (entry.seq == seq).then_some(entry)
    }

    /// Entries from `seq` on.
    fn entries_from(&self, seq: u64) -> impl Iterator<Item = &Entry> {
        let first = self.entries.front().map_or(0, |e| e.seq);
        let skip = usize::try_from(seq.saturating_sub(first)).unwrap_or(usize::MAX);
        self.entries.iter().skip(skip)
    }
}

fn id_of(seq: u64) -> String {
    format!("0-{seq}")
}

fn seq_of(id: &str) -> Result<u64, BusError> {
    id.strip_prefix("0-")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| BusError::BadId(id.to_string()))
}

#[derive(Debug)]
struct State {
    streams: BTreeMap<Lane, Stream>,
}

/// The in-process bus.
#[derive(Debug)]
pub struct InProcBus {
    config: BusConfig,
    state: Mutex<State>,
    published: Notify,
    counters: Counters,
}

impl InProcBus {
    /// A bus with empty streams; fails on an invalid `config`.
    pub fn new(config: BusConfig) -> Result<Self, BusError> {
        crate::config::validate(&config)?;
        Ok(Self {
            config,
            state: Mutex::new(State {
                streams: Lane::ALL.iter().map(|l| (*l, Stream::new())).collect(),
            }),
            published: Notify::new(),
            counters: Counters::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (no multi-step invariants
        // span an await), so a poisoned lock is taken over.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(
        &self,
        st: &mut State,
        lane: Lane,
        payload: String,
        origin: Option<Origin>,
    ) -> String {
        let max = self.config.max_stream_length;
        let id = stream(st, lane).append(payload, origin, max);
        if lane == Lane::Normal {
            self.counters.saw_depth(stream(st, lane).depth());
        }
        id
    }

    fn take(
        &self,
        lanes: &[Lane],
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let mut st = self.lock();
        let mut out = Vec::new();
        for &lane in lanes {
            let name = crate::config::stream_name(&self.config.streams, lane).to_string();
            let s = stream(&mut st, lane);
            let Some(g) = s.groups.get(group) else {
                return Err(BusError::NoGroup {
                    group: group.into(),
                    stream: name,
                });
            };
            let fresh: Vec<(u64, String)> = s
                .entries_from(g.next)
                .take(count - out.len())
                .map(|e| (e.seq, e.payload.clone()))
                .collect();
            let g = s.groups.get_mut(group).expect("checked above");
            let now = Instant::now();
            for (seq, payload) in fresh {
                g.next = seq + 1;
                g.pending.insert(
                    seq,
                    Pending {
                        consumer: consumer.into(),
                        since: now,
                        deliveries: 1,
                    },
                );
                out.push(Delivery {
                    lane,
                    id: id_of(seq),
                    payload,
                    deliveries: 1,
                });
            }
            if out.len() >= count {
                break;
            }
        }
        add(&self.counters.consumed, out.len() as u64);
        Ok(out)
    }

    async fn read_lanes(
        &self,
        lanes: &[Lane],
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + block;
        loop {
            let notified = self.published.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.take(lanes, group, consumer, count)?;
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let _ = tokio::time::timeout(deadline - now, notified).await;
        }
    }
}

fn stream(st: &mut State, lane: Lane) -> &mut Stream {
    st.streams.entry(lane).or_insert_with(Stream::new)
}

#[async_trait]
impl Bus for InProcBus {
    fn config(&self) -> &BusConfig {
        &self.config
    }

    async fn init_lane(&self, lane: Lane, group: &str) -> Result<(), BusError> {
        let mut st = self.lock();
        let s = stream(&mut st, lane);
        let first = s.entries.front().map_or(s.next_seq, |e| e.seq);
        s.groups.entry(group.to_string()).or_insert_with(|| Group {
            next: first,
            pending: BTreeMap::new(),
        });
        Ok(())
    }

    async fn publish(&self, message: Message) -> Result<PublishOutcome, BusError> {
        add(&self.counters.publish_total, 1);
        let outcome = {
            let mut st = self.lock();
            let before = stream(&mut st, Lane::Normal).depth();
            self.counters.saw_depth(before);
            if message.emergency {
                PublishOutcome::Emergency(self.append(
                    &mut st,
                    Lane::Emergency,
                    message.payload,
                    None,
                ))
            } else if before >= self.config.backpressure_drop_threshold {
                add(&self.counters.publish_dropped, 1);
                PublishOutcome::Dropped
            } else if before >= self.config.emergency_threshold {
                add(&self.counters.publish_rerouted, 1);
                PublishOutcome::Rerouted(self.append(
                    &mut st,
                    Lane::Emergency,
                    message.payload,
                    None,
                ))
            } else {
                PublishOutcome::Normal(self.append(&mut st, Lane::Normal, message.payload, None))
            }
        };
        if outcome != PublishOutcome::Dropped {
            self.published.notify_waiters();
        }
        Ok(outcome)
    }

    async fn publish_to(&self, lane: Lane, payload: &str) -> Result<String, BusError> {
        add(&self.counters.publish_total, 1);
        let id = self.append(&mut self.lock(), lane, payload.to_string(), None);
        self.published.notify_waiters();
        Ok(id)
    }

    async fn read(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        self.read_lanes(
            &[Lane::Emergency, Lane::Normal],
            group,
            consumer,
            count,
            block,
        )
        .await
    }

    async fn read_lane(
        &self,
        lane: Lane,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        self.read_lanes(&[lane], group, consumer, count, block)
            .await
    }

    async fn ack(&self, group: &str, lane: Lane, ids: &[String]) -> Result<u64, BusError> {
        let seqs = ids
            .iter()
            .map(|id| seq_of(id))
            .collect::<Result<Vec<_>, _>>()?;
        let mut st = self.lock();
        let Some(g) = stream(&mut st, lane).groups.get_mut(group) else {
            return Ok(0);
        };
        let n = seqs
            .iter()
            .filter(|s| g.pending.remove(s).is_some())
            .count() as u64;
        add(&self.counters.acked, n);
        Ok(n)
    }

    async fn reclaim(
        &self,
        lane: Lane,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Reclaimed, BusError> {
        let idle = Duration::from_millis(self.config.retry_idle_ms);
        let max = self.config.retry_max_attempts;
        let mut out = Reclaimed::default();
        let mut st = self.lock();
        let now = Instant::now();
        let s = stream(&mut st, lane);
        let Some(g) = s.groups.get(group) else {
            return Ok(out);
        };
        let due: Vec<u64> = g
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) >= idle)
            .map(|(seq, _)| *seq)
            .take(count)
            .collect();
        let mut dead = Vec::new();
        for seq in due {
            let payload = s.get(seq).map(|e| e.payload.clone());
            let g = s.groups.get_mut(group).expect("checked above");
            let Some(payload) = payload else {
                g.pending.remove(&seq);
                out.lost += 1;
                continue;
            };
            let p = g.pending.get_mut(&seq).expect("due entries are pending");
            if p.deliveries >= max {
                let deliveries = p.deliveries;
                g.pending.remove(&seq);
                dead.push((seq, deliveries, payload));
            } else {
                p.deliveries += 1;
                p.consumer = consumer.to_string();
                p.since = now;
                out.redelivered.push(Delivery {
                    lane,
                    id: id_of(seq),
                    payload,
                    deliveries: p.deliveries,
                });
            }
        }
        out.dead_lettered = dead.len() as u64;
        for (seq, deliveries, payload) in dead {
            let origin = Origin {
                lane,
                id: id_of(seq),
                group: group.to_string(),
                deliveries,
            };
            self.append(&mut st, Lane::DeadLetter, payload, Some(origin));
        }
        add(&self.counters.reclaimed, out.redelivered.len() as u64);
        add(&self.counters.dead_lettered, out.dead_lettered);
        add(&self.counters.lost, out.lost);
        Ok(out)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        let mut st = self.lock();
        Ok(stream(&mut st, Lane::DeadLetter)
            .entries
            .iter()
            .filter_map(|e| {
                let o = e.origin.clone()?;
                Some(DeadLetter {
                    id: id_of(e.seq),
                    lane: o.lane,
                    original_id: o.id,
                    group: o.group,
                    deliveries: o.deliveries,
                    payload: e.payload.clone(),
                })
            })
            .take(limit)
            .collect())
    }

    async fn metrics_snapshot(&self) -> Result<MetricsSnapshot, BusError> {
        let mut st = self.lock();
        let normal = stream(&mut st, Lane::Normal).depth();
        let emergency = stream(&mut st, Lane::Emergency).depth();
        Ok(self.counters.snapshot(normal, emergency))
    }

    async fn streams(&self) -> Result<Vec<StreamInfo>, BusError> {
        let mut st = self.lock();
        Ok(Lane::ALL
            .into_iter()
            .map(|lane| {
                let s = stream(&mut st, lane);
                let groups = s
                    .groups
                    .iter()
                    .map(|(name, g)| {
                        let lag = s.entries_from(g.next).count() as u64;
                        let info = GroupInfo {
                            pending: g.pending.len() as u64,
                            lag,
                            last_delivered: id_of(g.next.saturating_sub(1)),
                        };
                        (name.clone(), info)
                    })
                    .collect();
                StreamInfo {
                    lane,
                    name: crate::config::stream_name(&self.config.streams, lane).to_string(),
                    length: s.len(),
                    groups,
                }
            })
            .collect())
    }

    async fn entries(
        &self,
        lane: Lane,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let after = after.map(seq_of).transpose()?;
        let mut st = self.lock();
        let s = stream(&mut st, lane);
        let delivery = |e: &Entry| Delivery {
            lane,
            id: id_of(e.seq),
            payload: e.payload.clone(),
            deliveries: 0,
        };
        // By sequence number, not position: dead letters can be deleted from the middle.
        Ok(match after {
            Some(a) => s
                .entries
                .iter()
                .filter(|e| e.seq > a)
                .take(count)
                .map(delivery)
                .collect(),
            None => {
                let skip = s.entries.len().saturating_sub(count);
                s.entries.iter().skip(skip).map(delivery).collect()
            }
        })
    }

    async fn delete_dead_letters(&self, ids: &[String]) -> Result<u64, BusError> {
        let seqs = ids
            .iter()
            .map(|id| seq_of(id))
            .collect::<Result<std::collections::BTreeSet<u64>, _>>()?;
        let mut st = self.lock();
        let s = stream(&mut st, Lane::DeadLetter);
        let before = s.entries.len();
        s.entries.retain(|e| !seqs.contains(&e.seq));
        Ok((before - s.entries.len()) as u64)
    }
}
