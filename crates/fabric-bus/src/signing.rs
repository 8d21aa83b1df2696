//! Optional HMAC-SHA256 signing: `Signer` seals payloads into a signed envelope and opens
//! them again; `SignedBus` wraps any `Bus` so publishers seal and readers verify. Unsigned,
//! badly signed, unknown-key and stale (older than `MAX_AGE_MS`) messages are rejected:
//! acknowledged so they are not redelivered, counted as `rejected`, never handed out.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::metrics::add;
use crate::{
    Bus, BusConfig, BusError, DeadLetter, Delivery, Lane, Message, MetricsSnapshot, PublishOutcome,
    Reclaimed, StreamInfo,
};
use fabric_core::config::SigningConfig;

/// Messages older than this (or this far in the future) are taken as replays.
pub const MAX_AGE_MS: i64 = 5 * 60 * 1000;

const MAGIC: &str = "fabric-sig1";

/// The environment variable that holds the signing secret (overrides the config).
pub const SECRET_ENV: &str = "FABRIC__BUS__SIGNING__SECRET";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Why a message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No envelope at all.
    Unsigned,
    /// A key id this signer does not hold.
    UnknownKey,
    /// The MAC does not match.
    BadSignature,
    /// Older than `MAX_AGE_MS` (or too far ahead).
    Stale,
}

/// Seals with the current key; opens with the current or a retired key.
#[derive(Clone)]
pub struct Signer {
    key_id: String,
    keys: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Signer {
    /// A signer sealing with `key_id`/`secret`.
    pub fn new(key_id: &str, secret: &[u8]) -> Self {
        Self {
            key_id: key_id.to_string(),
            keys: BTreeMap::from([(key_id.to_string(), secret.to_vec())]),
        }
    }

    /// Also accepts messages sealed with a retired key (rotation).
    pub fn accepting(mut self, key_id: &str, secret: &[u8]) -> Self {
        self.keys.insert(key_id.to_string(), secret.to_vec());
        self
    }

    /// The signer of `config` (secret from `FABRIC__BUS__SIGNING__SECRET`, else `secret`, else
    /// `secret_file`); errors name the field.
    pub fn from_config(config: &SigningConfig) -> Result<Self, BusError> {
        let env = std::env::var(SECRET_ENV).ok().filter(|s| !s.is_empty());
        let secret = crate::config::resolve_secret(config, env)?;
        let mut signer = Self::new(&config.key_id, secret.as_bytes());
        for (kid, file) in &config.retired {
            let s = std::fs::read_to_string(file).map_err(|e| BusError::Config {
                field: "bus.signing.retired".into(),
                reason: format!("key {kid:?}: reading {}: {e}", file.display()),
            })?;
            signer = signer.accepting(kid, s.trim_end().as_bytes());
        }
        Ok(signer)
    }

    fn mac(&self, key: &[u8], kid: &str, ts: i64, payload: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(format!("{kid}:{ts}:").as_bytes());
        mac.update(payload.as_bytes());
        mac
    }

    /// `payload` sealed now.
    pub fn seal(&self, payload: &str) -> String {
        self.seal_at(payload, now_ms())
    }

    /// `payload` sealed as of `ts_ms` (Unix milliseconds).
    pub fn seal_at(&self, payload: &str, ts_ms: i64) -> String {
        let key = &self.keys[&self.key_id];
        let tag = self
            .mac(key, &self.key_id, ts_ms, payload)
            .finalize()
            .into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        format!("{MAGIC}:{}:{ts_ms}:{hex}:{payload}", self.key_id)
    }

    /// The payload inside a sealed message, if it verifies as of `now_ms`.
    pub fn open_at(&self, sealed: &str, now_ms: i64) -> Result<String, Rejection> {
        let mut parts = sealed.splitn(5, ':');
        let (Some(MAGIC), Some(kid), Some(ts), Some(hex), Some(payload)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(Rejection::Unsigned);
        };
        let ts: i64 = ts.parse().map_err(|_| Rejection::Unsigned)?;
        let key = self.keys.get(kid).ok_or(Rejection::UnknownKey)?;
        let tag = decode_hex(hex).ok_or(Rejection::BadSignature)?;
        self.mac(key, kid, ts, payload)
            .verify_slice(&tag)
            .map_err(|_| Rejection::BadSignature)?;
        if (now_ms - ts).abs() > MAX_AGE_MS {
            return Err(Rejection::Stale);
        }
        Ok(payload.to_string())
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Any bus, with payloads sealed on publish and verified on read.
pub struct SignedBus {
    inner: Arc<dyn Bus>,
    signer: Signer,
    rejected: AtomicU64,
}

impl SignedBus {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Bus>, signer: Signer) -> Self {
        Self {
            inner,
            signer,
            rejected: AtomicU64::new(0),
        }
    }

    /// Replaces a sealed payload by its content if it verifies at its own timestamp (for
    /// reading old entries); anything else is left as stored.
    fn unseal_any_age(&self, payload: &mut String) {
        let ts = payload
            .split(':')
            .nth(2)
            .and_then(|t| t.parse::<i64>().ok());
        if let Some(p) = ts.and_then(|ts| self.signer.open_at(payload, ts).ok()) {
            *payload = p;
        }
    }

    /// Verifies deliveries; acknowledges and counts the rejected ones.
    async fn verify(&self, group: &str, got: Vec<Delivery>) -> Result<Vec<Delivery>, BusError> {
        let now = now_ms();
        let mut ok = Vec::with_capacity(got.len());
        let mut bad: BTreeMap<Lane, Vec<String>> = BTreeMap::new();
        for mut d in got {
            match self.signer.open_at(&d.payload, now) {
                Ok(p) => {
                    d.payload = p;
                    ok.push(d);
                }
                Err(why) => {
                    tracing::warn!(lane = ?d.lane, id = %d.id, ?why, "bus message rejected");
                    bad.entry(d.lane).or_default().push(d.id);
                }
            }
        }
        for (lane, ids) in bad {
            add(&self.rejected, ids.len() as u64);
            self.inner.ack(group, lane, &ids).await?;
        }
        Ok(ok)
    }
}

#[async_trait]
impl Bus for SignedBus {
    fn config(&self) -> &BusConfig {
        self.inner.config()
    }

    async fn init(&self, group: &str) -> Result<(), BusError> {
        self.inner.init(group).await
    }

    async fn init_lane(&self, lane: Lane, group: &str) -> Result<(), BusError> {
        self.inner.init_lane(lane, group).await
    }

    async fn publish(&self, message: Message) -> Result<PublishOutcome, BusError> {
        let payload = self.signer.seal(&message.payload);
        self.inner.publish(Message { payload, ..message }).await
    }

    async fn publish_to(&self, lane: Lane, payload: &str) -> Result<String, BusError> {
        self.inner
            .publish_to(lane, &self.signer.seal(payload))
            .await
    }

    async fn read(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let got = self.inner.read(group, consumer, count, block).await?;
        self.verify(group, got).await
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
            .inner
            .read_lane(lane, group, consumer, count, block)
            .await?;
        self.verify(group, got).await
    }

    async fn ack(&self, group: &str, lane: Lane, ids: &[String]) -> Result<u64, BusError> {
        self.inner.ack(group, lane, ids).await
    }

    async fn reclaim(
        &self,
        lane: Lane,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Reclaimed, BusError> {
        let mut r = self.inner.reclaim(lane, group, consumer, count).await?;
        r.redelivered = self
            .verify(group, std::mem::take(&mut r.redelivered))
            .await?;
        Ok(r)
    }

    /// Dead letters with their payloads unsealed where they verify (at any age).
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        let mut letters = self.inner.dead_letters(limit).await?;
        for l in &mut letters {
            self.unseal_any_age(&mut l.payload);
        }
        Ok(letters)
    }

    /// Entries with their payloads unsealed where they verify (at any age).
    async fn entries(
        &self,
        lane: Lane,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let mut got = self.inner.entries(lane, after, count).await?;
        for d in &mut got {
            self.unseal_any_age(&mut d.payload);
        }
        Ok(got)
    }

    async fn delete_dead_letters(&self, ids: &[String]) -> Result<u64, BusError> {
        self.inner.delete_dead_letters(ids).await
    }

    async fn metrics_snapshot(&self) -> Result<MetricsSnapshot, BusError> {
        let mut m = self.inner.metrics_snapshot().await?;
        let rejected = self.rejected.load(std::sync::atomic::Ordering::Relaxed);
        *m.0.entry("rejected").or_default() += rejected;
        Ok(m)
    }

    async fn streams(&self) -> Result<Vec<StreamInfo>, BusError> {
        self.inner.streams().await
    }
}
