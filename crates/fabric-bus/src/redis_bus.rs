//! `RedisBus`: the bus on Redis Streams. A `ConnectionManager` carries commands (it
//! reconnects on its own); each blocking reader gets a dedicated connection whose response
//! timeout is longer than its BLOCK (the redis crate's default of 500 ms would cut a longer
//! BLOCK short). Publish decides atomically in one Lua script. Keys are `<prefix>:<name>`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamClaimReply, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Client, Value};
use tokio::sync::Mutex;

use crate::metrics::{add, Counters};
use crate::redis_counters::SharedCounters;
use crate::redis_reply::{array, field, fields, int, text};
use crate::{
    Bus, BusConfig, BusError, DeadLetter, Delivery, GroupInfo, Lane, Message, MetricsSnapshot,
    PublishOutcome, Reclaimed, StreamInfo,
};

/// A Lua function `depth(key)`: the backlog the thresholds weigh, for the scripts below.
macro_rules! depth_lua {
    () => {
        r"
-- The backlog the thresholds weigh: what the slowest group has yet to acknowledge (pending
-- plus lag); the whole length when there is no group or Redis cannot tell a lag.
local function depth(key)
  local len = redis.call('XLEN', key)
  if len == 0 then return 0 end
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', key)
  if not ok or #groups == 0 then return len end
  local worst = 0
  for _, g in ipairs(groups) do
    local pending, lag = 0, false
    for j = 1, #g, 2 do
      if g[j] == 'pending' then pending = g[j + 1] elseif g[j] == 'lag' then lag = g[j + 1] end
    end
    if not lag then return len end
    if pending + lag > worst then worst = pending + lag end
  end
  return worst
end
    "
    };
}

/// The depth of one stream (KEYS[1]), as the thresholds weigh it.
const DEPTH: &str = concat!(depth_lua!(), "return depth(KEYS[1])\n");

/// Publishes messages in order (KEYS: normal, emergency; ARGV: drop threshold, emergency
/// threshold, then a flag and a payload per message), each decided on the depth of normal its
/// predecessors left; returns outcome, id and the depth before, per message, then normal's
/// and emergency's lengths. A single publish is a batch of one.
const PUBLISH_MANY: &str = concat!(
    depth_lua!(),
    r"
local drop, emerg = tonumber(ARGV[1]), tonumber(ARGV[2])
local nlen = depth(KEYS[1])
local out = {}
for i = 3, #ARGV, 2 do
  local before, target, outcome = nlen, nil, nil
  if ARGV[i] == '1' then target, outcome = KEYS[2], 'emergency'
  elseif before >= drop then outcome = 'dropped'
  elseif before >= emerg then target, outcome = KEYS[2], 'rerouted'
  else target, outcome = KEYS[1], 'normal' end
  local id = ''
  if target then
    id = redis.call('XADD', target, '*', 'p', ARGV[i + 1])
    if target == KEYS[1] then nlen = nlen + 1 end
  end
  out[#out + 1] = outcome
  out[#out + 1] = id
  out[#out + 1] = before
end
out[#out + 1] = redis.call('XLEN', KEYS[1])
out[#out + 1] = redis.call('XLEN', KEYS[2])
return out
"
);

/// Below this `max_stream_length`, trims are exact: `MAXLEN ~` removes whole radix-tree
/// nodes (100 entries by default), so a small limit would never trim at all.
const APPROXIMATE_TRIM_FROM: u64 = 10_000;

/// The Redis Streams bus.
pub struct RedisBus {
    config: BusConfig,
    client: Client,
    conn: ConnectionManager,
    publish_many: redis::Script,
    depth: redis::Script,
    readers: Mutex<HashMap<String, MultiplexedConnection>>,
    counters: Counters,
    shared: SharedCounters,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("prefix", &self.config.prefix)
            .finish_non_exhaustive()
    }
}

/// One group on a stream.
struct GroupRow {
    name: String,
    pending: u64,
    /// None when Redis cannot tell.
    lag: Option<u64>,
    last_delivered: String,
}

impl RedisBus {
    /// Connects to `config.url`; fails on an invalid config or an unreachable server.
    pub async fn connect(config: BusConfig) -> Result<Self, BusError> {
        crate::config::validate(&config)?;
        let client = Client::open(config.url.as_str())?;
        // The crate's defaults retry a refused connection 6 times with exponential backoff
        // (over a minute before `connect` fails); the manager reconnects on its own on the
        // next command anyway, so give up quickly here.
        let manager = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let conn = client.get_connection_manager_with_config(manager).await?;
        Ok(Self {
            shared: SharedCounters::new(&config.prefix),
            config,
            client,
            conn,
            publish_many: redis::Script::new(PUBLISH_MANY),
            depth: redis::Script::new(DEPTH),
            readers: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        })
    }

    /// Deletes every stream of this bus (its groups and entries with it) and its shared
    /// counters: for throw-away buses (benchmarks, tests).
    pub async fn delete_streams(&self) -> Result<(), BusError> {
        let mut keys: Vec<String> = Lane::ALL.into_iter().map(|l| self.key(l)).collect();
        keys.push(self.shared.key().to_string());
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The key of `lane`: `<prefix>:<stream name>`.
    pub fn key(&self, lane: Lane) -> String {
        format!(
            "{}:{}",
            self.config.prefix,
            crate::config::stream_name(&self.config.streams, lane)
        )
    }

    fn lane_of_key(&self, key: &str) -> Option<Lane> {
        Lane::ALL.into_iter().find(|l| self.key(*l) == key)
    }

    async fn groups(&self, lane: Lane) -> Result<Vec<GroupRow>, BusError> {
        let reply: Result<Value, _> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(self.key(lane))
            .query_async(&mut self.conn.clone())
            .await;
        let reply = match reply {
            Ok(v) => v,
            // No such key: a stream nobody wrote to and no group created.
            Err(e)
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) =>
            {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e.into()),
        };
        Ok(array(&reply)
            .iter()
            .map(|g| {
                let f = fields(g);
                let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
                GroupRow {
                    name: get("name").and_then(text).unwrap_or_default(),
                    pending: get("pending").and_then(int).unwrap_or(0),
                    lag: get("lag").and_then(int),
                    last_delivered: get("last-delivered-id")
                        .and_then(text)
                        .unwrap_or_else(|| "0-0".into()),
                }
            })
            .collect())
    }

    /// Trims `lane` to `max_stream_length`, keeping every entry some group has yet to be
    /// delivered (its lag); when Redis cannot tell a group's lag, trims nothing.
    async fn trim(&self, lane: Lane) -> Result<(), BusError> {
        let mut keep = self.config.max_stream_length;
        for g in self.groups(lane).await? {
            match g.lag {
                Some(lag) => keep = keep.max(lag),
                None => return Ok(()),
            }
        }
        let approx = self.config.max_stream_length >= APPROXIMATE_TRIM_FROM;
        let _: u64 = redis::cmd("XTRIM")
            .arg(self.key(lane))
            .arg("MAXLEN")
            .arg(if approx { "~" } else { "=" })
            .arg(keep)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Trims `lane` once it is over the limit, with approximate trimming only once a whole
    /// node's worth (1 % of the limit) is over, so a full stream costs no extra round trips
    /// on most publishes.
    async fn after_append(&self, lane: Lane, length: u64) -> Result<(), BusError> {
        let max = self.config.max_stream_length;
        let slack = if max >= APPROXIMATE_TRIM_FROM {
            max / 100
        } else {
            0
        };
        if length > max + slack {
            self.trim(lane).await?;
        }
        self.shared.maybe_flush(&self.conn, &self.counters).await;
        Ok(())
    }

    fn deliveries(&self, reply: StreamReadReply) -> Vec<Delivery> {
        let mut out = Vec::new();
        for key in reply.keys {
            let Some(lane) = self.lane_of_key(&key.key) else {
                continue;
            };
            for e in key.ids {
                out.push(Delivery {
                    lane,
                    payload: field(&e, "p").unwrap_or_default(),
                    id: e.id,
                    deliveries: 1,
                });
            }
        }
        out
    }

    async fn read_lanes(
        &self,
        lanes: &[Lane],
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let mut out = Vec::new();
        for &lane in lanes {
            if out.len() >= count {
                break;
            }
            let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(group)
                .arg(consumer)
                .arg("COUNT")
                .arg(count - out.len())
                .arg("STREAMS")
                .arg(self.key(lane))
                .arg(">")
                .query_async(&mut self.conn.clone())
                .await?;
            out.extend(reply.map(|r| self.deliveries(r)).unwrap_or_default());
        }
        if out.is_empty() && !block.is_zero() && count > 0 {
            let mut reader = self.reader(consumer).await?;
            reader.set_response_timeout(block + Duration::from_secs(2));
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(group)
                .arg(consumer)
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1))
                .arg("STREAMS");
            for &lane in lanes {
                cmd.arg(self.key(lane));
            }
            for _ in lanes {
                cmd.arg(">");
            }
            let reply: Option<StreamReadReply> = match cmd.query_async(&mut reader).await {
                Ok(r) => r,
                Err(e) => {
                    // A broken connection is not reused: the next blocking read opens another.
                    self.readers.lock().await.remove(consumer);
                    return Err(e.into());
                }
            };
            let mut got = reply.map(|r| self.deliveries(r)).unwrap_or_default();
            // Emergency before normal: order by the caller's lane order.
            got.sort_by_key(|d| lanes.iter().position(|l| *l == d.lane));
            got.truncate(count);
            out = got;
        }
        add(&self.counters.consumed, out.len() as u64);
        Ok(out)
    }

    /// The dedicated connection of a blocking reader (one per consumer name).
    async fn reader(&self, consumer: &str) -> Result<MultiplexedConnection, BusError> {
        let mut readers = self.readers.lock().await;
        if let Some(c) = readers.get(consumer) {
            return Ok(c.clone());
        }
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&AsyncConnectionConfig::new())
            .await?;
        readers.insert(consumer.to_string(), c.clone());
        Ok(c)
    }

    /// What the slowest group of `lane` has yet to acknowledge (the length without groups).
    async fn depth(&self, lane: Lane) -> Result<u64, BusError> {
        Ok(self
            .depth
            .key(self.key(lane))
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    async fn xlen(&self, lane: Lane) -> Result<u64, BusError> {
        Ok(redis::cmd("XLEN")
            .arg(self.key(lane))
            .query_async(&mut self.conn.clone())
            .await?)
    }
}

#[async_trait]
impl Bus for RedisBus {
    fn config(&self) -> &BusConfig {
        &self.config
    }

    async fn init_lane(&self, lane: Lane, group: &str) -> Result<(), BusError> {
        let r: Result<(), _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.key(lane))
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn.clone())
            .await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn publish(&self, message: Message) -> Result<PublishOutcome, BusError> {
        let mut out = self.publish_many(vec![message]).await?;
        out.pop().ok_or_else(|| BusError::Reply {
            command: "publish script",
            detail: "no outcome".into(),
        })
    }

    async fn publish_many(&self, messages: Vec<Message>) -> Result<Vec<PublishOutcome>, BusError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let n = messages.len();
        add(&self.counters.publish_total, n as u64);
        let mut call = self.publish_many.prepare_invoke();
        call.key(self.key(Lane::Normal))
            .key(self.key(Lane::Emergency))
            .arg(self.config.backpressure_drop_threshold)
            .arg(self.config.emergency_threshold);
        for m in &messages {
            call.arg(if m.emergency { "1" } else { "0" })
                .arg(m.payload.as_str());
        }
        let reply: Vec<Value> = call.invoke_async(&mut self.conn.clone()).await?;
        let bad = |detail: String| BusError::Reply {
            command: "publish script",
            detail,
        };
        if reply.len() != 3 * n + 2 {
            return Err(bad(format!("{} values for {n} messages", reply.len())));
        }
        let num = |v: &Value| match v {
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        };
        let mut out = Vec::with_capacity(n);
        let (mut normal, mut emergency) = (false, false);
        for part in reply[..3 * n].chunks(3) {
            let outcome = text(&part[0]).unwrap_or_default();
            let id = text(&part[1]).unwrap_or_default();
            let before = num(&part[2]).ok_or_else(|| bad("no length".into()))?;
            self.counters.saw_depth(before);
            out.push(match outcome.as_str() {
                "dropped" => {
                    add(&self.counters.publish_dropped, 1);
                    PublishOutcome::Dropped
                }
                "rerouted" => {
                    add(&self.counters.publish_rerouted, 1);
                    emergency = true;
                    PublishOutcome::Rerouted(id)
                }
                "emergency" => {
                    emergency = true;
                    PublishOutcome::Emergency(id)
                }
                "normal" => {
                    normal = true;
                    self.counters.saw_depth(before + 1);
                    PublishOutcome::Normal(id)
                }
                other => return Err(bad(format!("outcome {other:?}"))),
            });
        }
        let nlen = num(&reply[3 * n]).ok_or_else(|| bad("no normal length".into()))?;
        let elen = num(&reply[3 * n + 1]).ok_or_else(|| bad("no emergency length".into()))?;
        if normal {
            self.after_append(Lane::Normal, nlen).await?;
        }
        if emergency {
            self.after_append(Lane::Emergency, elen).await?;
        }
        if !normal && !emergency {
            self.shared.maybe_flush(&self.conn, &self.counters).await;
        }
        Ok(out)
    }

    async fn publish_to(&self, lane: Lane, payload: &str) -> Result<String, BusError> {
        add(&self.counters.publish_total, 1);
        let (id, length): (String, u64) = redis::pipe()
            .cmd("XADD")
            .arg(self.key(lane))
            .arg("*")
            .arg("p")
            .arg(payload)
            .cmd("XLEN")
            .arg(self.key(lane))
            .query_async(&mut self.conn.clone())
            .await?;
        self.after_append(lane, length).await?;
        Ok(id)
    }

    async fn read(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let got = self
            .read_lanes(
                &[Lane::Emergency, Lane::Normal],
                group,
                consumer,
                count,
                block,
            )
            .await;
        // A reader is often the only part of a process that works: its counts (and a
        // reclaim's) reach the shared hash from here too.
        self.shared.maybe_flush(&self.conn, &self.counters).await;
        got
    }

    async fn read_lane(
        &self,
        lane: Lane,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let got = self
            .read_lanes(&[lane], group, consumer, count, block)
            .await;
        self.shared.maybe_flush(&self.conn, &self.counters).await;
        got
    }

    async fn ack(&self, group: &str, lane: Lane, ids: &[String]) -> Result<u64, BusError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let n: u64 = redis::cmd("XACK")
            .arg(self.key(lane))
            .arg(group)
            .arg(ids)
            .query_async(&mut self.conn.clone())
            .await?;
        add(&self.counters.acked, n);
        self.shared.maybe_flush(&self.conn, &self.counters).await;
        Ok(n)
    }

    async fn reclaim(
        &self,
        lane: Lane,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Reclaimed, BusError> {
        let key = self.key(lane);
        let mut conn = self.conn.clone();
        let mut out = Reclaimed::default();
        if count == 0 {
            return Ok(out);
        }
        // 1. Take over idle entries without counting a delivery (JUSTID).
        let mut claimed: Vec<String> = Vec::new();
        let mut cursor = "0-0".to_string();
        loop {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&key)
                .arg(group)
                .arg(consumer)
                .arg(self.config.retry_idle_ms)
                .arg(&cursor)
                .arg("COUNT")
                .arg(count - claimed.len())
                .arg("JUSTID")
                .query_async(&mut conn)
                .await?;
            let parts = array(&reply);
            let bad = || BusError::Reply {
                command: "XAUTOCLAIM",
                detail: format!("{reply:?}"),
            };
            cursor = parts.first().and_then(text).ok_or_else(bad)?;
            claimed.extend(array(parts.get(1).ok_or_else(bad)?).iter().filter_map(text));
            // Pending ids whose entries were trimmed: Redis drops them from the PEL.
            out.lost += parts.get(2).map_or(0, |d| array(d).len()) as u64;
            if cursor == "0-0" || claimed.len() >= count {
                break;
            }
        }
        if !claimed.is_empty() {
            // 2. How often each was delivered.
            let mut pipe = redis::pipe();
            for id in &claimed {
                pipe.cmd("XPENDING")
                    .arg(&key)
                    .arg(group)
                    .arg(id)
                    .arg(id)
                    .arg(1);
            }
            let pending: Vec<Value> = pipe.query_async(&mut conn).await?;
            let mut retry = Vec::new();
            let mut dead = Vec::new();
            for (id, p) in claimed.iter().zip(&pending) {
                let n = array(p).first().and_then(|e| array(e).get(3)).and_then(int);
                match n {
                    Some(n) if n >= self.config.retry_max_attempts => dead.push((id.clone(), n)),
                    Some(n) => retry.push((id.clone(), n)),
                    None => {} // acknowledged meanwhile
                }
            }
            // 3. Deliver the others again (XCLAIM counts the delivery).
            if !retry.is_empty() {
                let reply: StreamClaimReply = redis::cmd("XCLAIM")
                    .arg(&key)
                    .arg(group)
                    .arg(consumer)
                    .arg(0)
                    .arg(retry.iter().map(|(id, _)| id).collect::<Vec<_>>())
                    .query_async(&mut conn)
                    .await?;
                let before: HashMap<&str, u64> =
                    retry.iter().map(|(id, n)| (id.as_str(), *n)).collect();
                for e in reply.ids {
                    let n = before.get(e.id.as_str()).copied().unwrap_or(0) + 1;
                    out.redelivered.push(Delivery {
                        lane,
                        payload: field(&e, "p").unwrap_or_default(),
                        id: e.id,
                        deliveries: n,
                    });
                }
            }
            // 4. Dead-letter those delivered retry_max_attempts times.
            for (id, n) in dead {
                let range: StreamRangeReply = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(&id)
                    .arg(&id)
                    .query_async(&mut conn)
                    .await?;
                let mut pipe = redis::pipe();
                pipe.atomic();
                match range.ids.first() {
                    Some(e) => {
                        // Nobody reads dead-letter through a group: trim it on the add.
                        let max = self.config.max_stream_length;
                        pipe.cmd("XADD")
                            .arg(self.key(Lane::DeadLetter))
                            .arg("MAXLEN")
                            .arg(if max >= APPROXIMATE_TRIM_FROM {
                                "~"
                            } else {
                                "="
                            })
                            .arg(max)
                            .arg("*")
                            .arg("p")
                            .arg(field(e, "p").unwrap_or_default())
                            .arg("lane")
                            .arg(lane.as_str())
                            .arg("id")
                            .arg(&id)
                            .arg("group")
                            .arg(group)
                            .arg("deliveries")
                            .arg(n)
                            .ignore();
                        out.dead_lettered += 1;
                    }
                    None => out.lost += 1,
                }
                pipe.cmd("XACK").arg(&key).arg(group).arg(&id).ignore();
                let () = pipe.query_async(&mut conn).await?;
            }
        }
        add(&self.counters.reclaimed, out.redelivered.len() as u64);
        add(&self.counters.dead_lettered, out.dead_lettered);
        add(&self.counters.lost, out.lost);
        self.shared.maybe_flush(&self.conn, &self.counters).await;
        Ok(out)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        let range: StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.key(Lane::DeadLetter))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(range
            .ids
            .iter()
            .map(|e| DeadLetter {
                id: e.id.clone(),
                lane: Lane::named(&field(e, "lane").unwrap_or_default()).unwrap_or(Lane::Normal),
                original_id: field(e, "id").unwrap_or_default(),
                group: field(e, "group").unwrap_or_default(),
                deliveries: field(e, "deliveries")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                payload: field(e, "p").unwrap_or_default(),
            })
            .collect())
    }

    async fn metrics_snapshot(&self) -> Result<MetricsSnapshot, BusError> {
        let normal = self.depth(Lane::Normal).await?;
        let emergency = self.depth(Lane::Emergency).await?;
        let hash = self.shared.flush(&self.conn, &self.counters).await?;
        Ok(SharedCounters::snapshot(
            hash,
            &self.counters,
            normal,
            emergency,
        ))
    }

    async fn streams(&self) -> Result<Vec<StreamInfo>, BusError> {
        let mut out = Vec::new();
        for lane in Lane::ALL {
            let length = self.xlen(lane).await?;
            let groups: BTreeMap<String, GroupInfo> = self
                .groups(lane)
                .await?
                .into_iter()
                .map(|g| {
                    let info = GroupInfo {
                        pending: g.pending,
                        // Unknown lag (entries deleted mid-stream): report the upper bound.
                        lag: g.lag.unwrap_or(length),
                        last_delivered: g.last_delivered,
                    };
                    (g.name, info)
                })
                .collect();
            out.push(StreamInfo {
                lane,
                name: crate::config::stream_name(&self.config.streams, lane).to_string(),
                length,
                groups,
            });
        }
        Ok(out)
    }

    async fn entries(
        &self,
        lane: Lane,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let mut conn = self.conn.clone();
        let range: StreamRangeReply = match after {
            Some(id) => {
                redis::cmd("XRANGE")
                    .arg(self.key(lane))
                    .arg(format!("({id}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut conn)
                    .await?
            }
            None => {
                let mut r: StreamRangeReply = redis::cmd("XREVRANGE")
                    .arg(self.key(lane))
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut conn)
                    .await?;
                r.ids.reverse();
                r
            }
        };
        Ok(range
            .ids
            .iter()
            .map(|e| Delivery {
                lane,
                id: e.id.clone(),
                payload: field(e, "p").unwrap_or_default(),
                deliveries: 0,
            })
            .collect())
    }

    async fn delete_dead_letters(&self, ids: &[String]) -> Result<u64, BusError> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(redis::cmd("XDEL")
            .arg(self.key(Lane::DeadLetter))
            .arg(ids)
            .query_async(&mut self.conn.clone())
            .await?)
    }
}
