//! The fleet bus: Redis pub/sub (DESIGN §4.3).
//!
//! - Channel `news` is the Redis channel `<prefix>:c:news`; broadcasts use `<prefix>:b`.
//! - Payloads are the MessagePack [`Envelope`]; one that does not decode is counted in
//!   `pushfleet_messages_dropped_total{reason="bad_payload"}` and dropped.
//! - One pub/sub connection per gateway subscribes only to channels with local subscribers
//!   (plus the broadcast channel); a channel whose last subscriber left is unsubscribed
//!   after `--unsubscribe-linger-ms`, unless someone subscribed again meanwhile.
//! - When Redis goes away, the subscriber reconnects with full-jitter exponential backoff
//!   (capped at 3 s) for as long as it takes, resubscribes everything, and reports
//!   not-ready meanwhile. Shutdown cancels the backoff.
//! - Publishing uses a `deadpool-redis` pool and a pipeline; it fails within 2 s.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use deadpool_redis::redis::{self, AsyncCommands};
use deadpool_redis::{Pool, PoolConfig, Runtime, Timeouts};
use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{BusError, Outgoing, PUBLISH_TIMEOUT};
use crate::hub::{Channel, Hub};
use crate::merger::BusMessage;
use crate::metrics::Metrics;
use crate::wire::{now_unix_ms, validate_channel, Envelope, BROADCAST};

/// Channel-change notices queued for the subscriber. Policy when full: **coalesce** — set
/// a flag and let the subscriber reconcile every channel against the hub at once.
const CHANGES_QUEUE: usize = 16_384;
/// Backoff between reconnect attempts: full jitter in `[0, min(cap, base·2^n)]`.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(3);
/// Connect and health-check bounds for the subscriber connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const PING_EVERY: Duration = Duration::from_secs(5);
/// Channels per SUBSCRIBE command when resubscribing many at once.
const SUBSCRIBE_CHUNK: usize = 512;

/// Redis key names for channels.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// `<prefix>:c:<channel>`, or `<prefix>:b` for broadcast.
    pub fn key(&self, channel: &str) -> String {
        if channel == BROADCAST {
            format!("{}:b", self.prefix)
        } else {
            format!("{}:c:{channel}", self.prefix)
        }
    }

    /// The channel a Redis key stands for, if it is one of ours and valid.
    pub fn channel(&self, key: &str) -> Option<Channel> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix(':')?;
        if rest == "b" {
            return Some(Channel::from(BROADCAST));
        }
        let name = rest.strip_prefix("c:")?;
        validate_channel(name).ok()?;
        Some(Channel::from(name))
    }
}

/// Why the Redis bus could not be set up (a configuration problem: exit 64).
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL (flag --redis-url, env PUSHFLEET_REDIS_URL): {0}")]
pub struct SetupError(String);

struct Shared {
    pool: Pool,
    keys: Keys,
    ready: AtomicBool,
    changes: mpsc::Sender<Channel>,
    resync: AtomicBool,
    wake: Notify,
    metrics: Metrics,
}

/// Handle to the Redis bus; cheap to clone.
#[derive(Clone)]
pub struct RedisBus {
    shared: Arc<Shared>,
}

/// What the subscriber task needs besides the shared state.
pub struct SubscriberDeps {
    pub hub: Hub,
    pub merger: mpsc::Sender<BusMessage>,
    pub linger: Duration,
    pub stop: CancellationToken,
}

impl RedisBus {
    /// Validates the URL, builds the publish pool and spawns the subscriber. Does not wait
    /// for Redis: the gateway starts not-ready and becomes ready when it connects.
    pub fn start(
        url: &str,
        prefix: &str,
        metrics: Metrics,
        deps: SubscriberDeps,
    ) -> Result<RedisBus, SetupError> {
        let client = redis::Client::open(url).map_err(|e| SetupError(e.to_string()))?;
        let mut cfg = deadpool_redis::Config::from_url(url);
        cfg.pool = Some(PoolConfig {
            max_size: 16,
            timeouts: Timeouts {
                wait: Some(PUBLISH_TIMEOUT),
                create: Some(PUBLISH_TIMEOUT),
                recycle: Some(Duration::from_secs(1)),
            },
            ..PoolConfig::default()
        });
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| SetupError(e.to_string()))?;
        let (tx, rx) = mpsc::channel(CHANGES_QUEUE);
        let shared = Arc::new(Shared {
            pool,
            keys: Keys::new(prefix),
            ready: AtomicBool::new(false),
            changes: tx,
            resync: AtomicBool::new(false),
            wake: Notify::new(),
            metrics,
        });
        tokio::spawn(subscriber(client, shared.clone(), rx, deps));
        Ok(RedisBus { shared })
    }

    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// Publishes every message in one pipeline; 503-worthy errors within 2 s.
    pub async fn publish(&self, messages: Vec<Outgoing>) -> Result<usize, BusError> {
        let now = now_unix_ms();
        let n = messages.len();
        let work = async {
            let mut conn = self
                .shared
                .pool
                .get()
                .await
                .map_err(|_| BusError::Unavailable)?;
            let mut pipe = redis::pipe();
            for m in &messages {
                let payload = Envelope::new(&m.data, now).encode();
                pipe.publish(self.shared.keys.key(&m.channel), payload)
                    .ignore();
            }
            pipe.query_async::<()>(&mut *conn)
                .await
                .map_err(|_| BusError::Unavailable)?;
            Ok(n)
        };
        tokio::time::timeout(PUBLISH_TIMEOUT, work)
            .await
            .map_err(|_| BusError::Timeout(PUBLISH_TIMEOUT))?
    }

    /// A channel gained its first or lost its last local subscriber.
    pub fn channel_changed(&self, channel: Channel) {
        if self.shared.changes.try_send(channel).is_err() {
            self.shared.resync.store(true, Ordering::Release);
            self.shared.wake.notify_one();
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP);
    let ms = rand::rng().random_range(0..=ceiling.as_millis() as u64);
    Duration::from_millis(ms)
}

/// Connects, serves until the connection is lost, and starts over, until `stop`.
async fn subscriber(
    client: redis::Client,
    shared: Arc<Shared>,
    mut changes: mpsc::Receiver<Channel>,
    deps: SubscriberDeps,
) {
    let mut attempt = 0u32;
    loop {
        let mut session = Session {
            shared: &shared,
            deps: &deps,
            subscribed: HashSet::new(),
            lingering: HashMap::new(),
        };
        match session.serve(&client, &mut changes).await {
            Ok(Ended::Stopped) => return,
            Ok(Ended::Lost) => {
                attempt = 0;
                tracing::warn!("lost the Redis connection; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "Redis unavailable; retrying");
            }
        }
        shared.ready.store(false, Ordering::Release);
        shared.metrics.bus_up.set(0);
        shared.metrics.bus_subscribed_channels.set(0);
        let delay = backoff(attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = deps.stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        shared.metrics.bus_reconnects.inc();
    }
}

enum Ended {
    Stopped,
    Lost,
}

struct Session<'a> {
    shared: &'a Shared,
    deps: &'a SubscriberDeps,
    /// Channels Redis has us subscribed to (besides broadcast).
    subscribed: HashSet<Channel>,
    /// Channels without local subscribers, to unsubscribe at the deadline.
    lingering: HashMap<Channel, Instant>,
}

impl Session<'_> {
    async fn serve(
        &mut self,
        client: &redis::Client,
        changes: &mut mpsc::Receiver<Channel>,
    ) -> redis::RedisResult<Ended> {
        let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| timeout_error())??;
        let (mut sink, mut stream) = pubsub.split();
        // Everything queued so far is covered by the full resubscribe below.
        while changes.try_recv().is_ok() {}
        self.shared.resync.store(false, Ordering::Release);
        sink.subscribe(self.shared.keys.key(BROADCAST)).await?;
        self.reconcile_all(&mut sink).await?;
        self.shared.ready.store(true, Ordering::Release);
        self.shared.metrics.bus_up.set(1);
        tracing::info!(channels = self.subscribed.len(), "subscribed on Redis");

        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            let next_expiry = self.lingering.values().min().copied();
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                _ = self.deps.stop.cancelled() => return Ok(Ended::Stopped),
                msg = stream.next() => match msg {
                    Some(msg) => self.deliver(&msg),
                    None => return Ok(Ended::Lost),
                },
                Some(ch) = changes.recv() => self.reconcile(&mut sink, ch).await?,
                _ = self.shared.wake.notified() => {
                    if self.shared.resync.swap(false, Ordering::AcqRel) {
                        self.shared.metrics.bus_resyncs.inc();
                        self.reconcile_all(&mut sink).await?;
                    }
                }
                _ = tokio::time::sleep_until(next_expiry.unwrap_or(far)), if next_expiry.is_some() => {
                    self.expire(&mut sink).await?;
                }
                _ = ping.tick() => {
                    tokio::time::timeout(CONNECT_TIMEOUT, sink.ping::<redis::Value>())
                        .await
                        .map_err(|_| timeout_error())??;
                }
            }
        }
    }

    fn deliver(&self, msg: &redis::Msg) {
        let m = &self.shared.metrics;
        let Some(channel) = self.shared.keys.channel(msg.get_channel_name()) else {
            m.messages_dropped
                .get_or_create(&[("reason", "bad_channel")])
                .inc();
            return;
        };
        let env = match Envelope::decode(msg.get_payload_bytes()) {
            Ok(env) => env,
            Err(e) => {
                tracing::debug!(error = %e, channel = %channel, "dropping undecodable payload");
                m.messages_dropped
                    .get_or_create(&[("reason", "bad_payload")])
                    .inc();
                return;
            }
        };
        let bm = BusMessage {
            channel,
            data: Bytes::from(env.d),
            published_ms: env.t,
        };
        // Never wait here: waiting would only move the backlog into the Redis client's
        // own unbounded buffer. Policy when the merger is full: drop, counted.
        if self.deps.merger.try_send(bm).is_err() {
            m.messages_dropped
                .get_or_create(&[("reason", "merger_full")])
                .inc();
        }
    }

    /// Brings one channel's Redis subscription in line with the hub.
    async fn reconcile(
        &mut self,
        sink: &mut redis::aio::PubSubSink,
        ch: Channel,
    ) -> redis::RedisResult<()> {
        if self.deps.hub.has_subscribers(&ch) {
            self.lingering.remove(&ch);
            if !self.subscribed.contains(&ch) {
                sink.subscribe(self.shared.keys.key(&ch)).await?;
                self.subscribed.insert(ch);
            }
        } else if self.subscribed.contains(&ch) && !self.lingering.contains_key(&ch) {
            self.lingering.insert(ch, Instant::now() + self.deps.linger);
        }
        self.shared
            .metrics
            .bus_subscribed_channels
            .set(self.subscribed.len() as i64);
        Ok(())
    }

    /// Reconciles every channel: subscribes what the hub has, lingers the rest.
    async fn reconcile_all(&mut self, sink: &mut redis::aio::PubSubSink) -> redis::RedisResult<()> {
        let want: HashSet<Channel> = self.deps.hub.active_channels().into_iter().collect();
        let missing: Vec<Channel> = want
            .iter()
            .filter(|c| !self.subscribed.contains(*c))
            .cloned()
            .collect();
        for chunk in missing.chunks(SUBSCRIBE_CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|c| self.shared.keys.key(c)).collect();
            sink.subscribe(keys).await?;
            self.subscribed.extend(chunk.iter().cloned());
        }
        let deadline = Instant::now() + self.deps.linger;
        for ch in self.subscribed.iter().filter(|c| !want.contains(*c)) {
            self.lingering.entry(ch.clone()).or_insert(deadline);
        }
        self.lingering.retain(|c, _| !want.contains(c));
        self.shared
            .metrics
            .bus_subscribed_channels
            .set(self.subscribed.len() as i64);
        Ok(())
    }

    /// Unsubscribes lingering channels whose time is up and that nobody rejoined.
    async fn expire(&mut self, sink: &mut redis::aio::PubSubSink) -> redis::RedisResult<()> {
        let now = Instant::now();
        let due: Vec<Channel> = self
            .lingering
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(c, _)| c.clone())
            .collect();
        let mut gone = Vec::new();
        for ch in due {
            self.lingering.remove(&ch);
            if !self.deps.hub.has_subscribers(&ch) && self.subscribed.remove(&ch) {
                gone.push(self.shared.keys.key(&ch));
            }
        }
        if !gone.is_empty() {
            sink.unsubscribe(gone).await?;
        }
        self.shared
            .metrics
            .bus_subscribed_channels
            .set(self.subscribed.len() as i64);
        Ok(())
    }
}

fn timeout_error() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "Redis did not answer in time",
    ))
}

/// Publishes one envelope with any Redis connection (used by `pushctl`).
pub async fn publish_one<C: AsyncCommands + Send>(
    conn: &mut C,
    keys: &Keys,
    channel: &str,
    json: &[u8],
) -> redis::RedisResult<()> {
    let payload = Envelope::new(json, now_unix_ms()).encode();
    conn.publish::<_, _, ()>(keys.key(channel), payload).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let k = Keys::new("pf");
        assert_eq!(k.key("news"), "pf:c:news");
        assert_eq!(k.key("*"), "pf:b");
        assert_eq!(k.channel("pf:c:news").as_deref(), Some("news"));
        assert_eq!(k.channel("pf:b").as_deref(), Some("*"));
        assert_eq!(k.channel("pf:c:bad name"), None);
        assert_eq!(k.channel("other:c:news"), None);
        assert_eq!(k.channel("pfx:c:news"), None);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        for attempt in 0..40 {
            assert!(backoff(attempt) <= BACKOFF_CAP);
        }
        assert!(backoff(0) <= BACKOFF_BASE);
    }
}
