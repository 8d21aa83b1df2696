//! `LazyBus`: a bus whose backend could not be reached when it was opened (Redis down at
//! the daemon's start). Every call tries to open it again, at most once per
//! [`RETRY_EVERY`], and fails with [`BusError::Unavailable`] until it is up; from then on
//! calls go straight to it (the Redis backend reconnects on its own after that).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::OnceCell;

use crate::{
    Bus, BusConfig, BusError, DeadLetter, Delivery, Lane, Message, MetricsSnapshot, PublishOutcome,
    Reclaimed, StreamInfo,
};

/// Least time between two attempts to open the backend.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// A bus opened on first use; see the module docs.
pub struct LazyBus {
    config: BusConfig,
    bus: OnceCell<Arc<dyn Bus>>,
    /// When the last attempt failed, and why.
    failed: Mutex<(Instant, String)>,
}

impl LazyBus {
    /// A bus for `config` (already validated) whose first attempt to open failed with
    /// `why`.
    pub fn new(config: BusConfig, why: String) -> Self {
        Self {
            config,
            bus: OnceCell::new(),
            failed: Mutex::new((Instant::now(), why)),
        }
    }

    async fn bus(&self) -> Result<&Arc<dyn Bus>, BusError> {
        self.bus
            .get_or_try_init(|| async {
                {
                    let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                    if failed.0.elapsed() < RETRY_EVERY {
                        return Err(BusError::Unavailable(failed.1.clone()));
                    }
                }
                match crate::open(self.config.clone()).await {
                    Ok(bus) => {
                        tracing::info!("bus reachable: connected");
                        Ok(bus)
                    }
                    Err(e) => {
                        let why = e.to_string();
                        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) =
                            (Instant::now(), why.clone());
                        Err(BusError::Unavailable(why))
                    }
                }
            })
            .await
    }
}

/// Opens the configured bus as [`crate::open`] does, except that a Redis server it cannot
/// reach now gives a [`LazyBus`] that keeps trying, instead of an error: the daemon runs
/// jobs without the bus (their events wait in the outbox). A bad configuration is still an
/// error.
pub async fn open_lazy(config: BusConfig) -> Result<Arc<dyn Bus>, BusError> {
    match crate::open(config.clone()).await {
        Ok(bus) => Ok(bus),
        Err(BusError::Redis(e)) => {
            tracing::warn!(error = %e, "bus unreachable; retrying in the background");
            Ok(Arc::new(LazyBus::new(config, e.to_string())))
        }
        Err(e) => Err(e),
    }
}

#[async_trait]
impl Bus for LazyBus {
    fn config(&self) -> &BusConfig {
        &self.config
    }

    async fn init(&self, group: &str) -> Result<(), BusError> {
        self.bus().await?.init(group).await
    }

    async fn init_lane(&self, lane: Lane, group: &str) -> Result<(), BusError> {
        self.bus().await?.init_lane(lane, group).await
    }

    async fn publish(&self, message: Message) -> Result<PublishOutcome, BusError> {
        self.bus().await?.publish(message).await
    }

    async fn publish_many(&self, messages: Vec<Message>) -> Result<Vec<PublishOutcome>, BusError> {
        self.bus().await?.publish_many(messages).await
    }

    async fn publish_to(&self, lane: Lane, payload: &str) -> Result<String, BusError> {
        self.bus().await?.publish_to(lane, payload).await
    }

    async fn read(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        self.bus().await?.read(group, consumer, count, block).await
    }

    async fn read_lane(
        &self,
        lane: Lane,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        self.bus()
            .await?
            .read_lane(lane, group, consumer, count, block)
            .await
    }

    async fn ack(&self, group: &str, lane: Lane, ids: &[String]) -> Result<u64, BusError> {
        self.bus().await?.ack(group, lane, ids).await
    }

    async fn reclaim(
        &self,
        lane: Lane,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Reclaimed, BusError> {
        self.bus()
            .await?
            .reclaim(lane, group, consumer, count)
            .await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        self.bus().await?.dead_letters(limit).await
    }

    async fn metrics_snapshot(&self) -> Result<MetricsSnapshot, BusError> {
        self.bus().await?.metrics_snapshot().await
    }

    async fn streams(&self) -> Result<Vec<StreamInfo>, BusError> {
        self.bus().await?.streams().await
    }

    async fn entries(
        &self,
        lane: Lane,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        self.bus().await?.entries(lane, after, count).await
    }

    async fn delete_dead_letters(&self, ids: &[String]) -> Result<u64, BusError> {
        self.bus().await?.delete_dead_letters(ids).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_redis_gives_a_bus_that_fails_until_it_is_up() {
        // A port nothing listens on: bind one, note it, free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = BusConfig {
            backend: crate::BusBackend::Redis,
            url: format!("redis://127.0.0.1:{port}"),
            ..BusConfig::default()
        };
        let bus = open_lazy(config).await.unwrap();
        let err = bus.publish(Message::normal("x")).await.unwrap_err();
        assert!(matches!(err, BusError::Unavailable(_)), "{err}");
        let bad = BusConfig {
            prefix: String::new(),
            ..BusConfig::default()
        };
        assert!(open_lazy(bad).await.is_err(), "a bad config is an error");
    }
}
