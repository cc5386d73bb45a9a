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
//! - **Paced reads.** Waking a thread is most of what a message taken in one by one costs
//!   (on the project's VM, ~100–200 µs against ~7 µs per message in a burst; see
//!   docs/PERFORMANCE.md, "Taking messages in"). While messages keep coming and the merge
//!   window is at least 50 ms, the subscriber socket's `SO_RCVLOWAT` is raised to
//!   [`PACED_LOWAT`] after a message, so the kernel wakes nobody for the next small ones;
//!   a timer `window / 10` later (at most 100 ms) lowers it again, and whatever arrived
//!   meanwhile is read in one go. Before any command (SUBSCRIBE, PING, …) it is lowered
//!   first, so replies are never held back; with no message in a period the timer stops,
//!   and an idle gateway is woken by its next message as before. The wait never delays a
//!   batch: the merger opens a window at the message's publish time (see `merger`).

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
/// `SO_RCVLOWAT` of the subscriber socket between paced reads: a burst this large is read
/// at once, whatever the timer says, so the kernel's buffer never holds more.
pub const PACED_LOWAT: i32 = 64 * 1024;
/// Longest time between paced reads, and windows below 10 × [`MIN_PACE`] are not paced.
const MAX_PACE: Duration = Duration::from_millis(100);
const MIN_PACE: Duration = Duration::from_millis(5);

/// How long the subscriber lets messages gather between reads for a merge `window`
/// (`None`: read each at once).
pub fn pace_for(window: Duration) -> Option<Duration> {
    let p = (window / 10).min(MAX_PACE);
    (p >= MIN_PACE).then_some(p)
}

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
    /// Paced reads (see the module docs): the merge window's [`pace_for`].
    pub pace: Option<Duration>,
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
        let (pubsub, mut pacer) =
            tokio::time::timeout(CONNECT_TIMEOUT, connect(client, self.deps.pace))
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
            let next_read = pacer.next;
            tokio::select! {
                _ = self.deps.stop.cancelled() => return Ok(Ended::Stopped),
                msg = stream.next() => match msg {
                    Some(msg) => {
                        self.deliver(&msg);
                        pacer.after_message();
                    }
                    None => return Ok(Ended::Lost),
                },
                _ = tokio::time::sleep_until(next_read.unwrap_or(far)), if next_read.is_some() => {
                    pacer.read_now();
                    self.shared.metrics.bus_paced_reads.inc();
                }
                Some(ch) = changes.recv() => {
                    pacer.read_now();
                    self.reconcile(&mut sink, ch).await?;
                }
                _ = self.shared.wake.notified() => {
                    if self.shared.resync.swap(false, Ordering::AcqRel) {
                        pacer.read_now();
                        self.shared.metrics.bus_resyncs.inc();
                        self.reconcile_all(&mut sink).await?;
                    }
                }
                _ = tokio::time::sleep_until(next_expiry.unwrap_or(far)), if next_expiry.is_some() => {
                    pacer.read_now();
                    self.expire(&mut sink).await?;
                }
                _ = ping.tick() => {
                    pacer.read_now();
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

/// Opens the pub/sub connection: on a plain TCP address, over a socket of our own whose
/// `SO_RCVLOWAT` the [`Pacer`] may raise; otherwise (TLS, Unix socket) as the client does
/// it, unpaced.
async fn connect(
    client: &redis::Client,
    pace: Option<Duration>,
) -> redis::RedisResult<(redis::aio::PubSub, Pacer)> {
    let info = client.get_connection_info();
    match (info.addr(), pace) {
        (redis::ConnectionAddr::Tcp(host, port), Some(every)) => {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            tcp.set_nodelay(true)?;
            // Our own descriptor of the socket: the pacer never touches a descriptor the
            // connection has closed (and the system may have handed to someone else).
            let fd = std::os::fd::AsFd::as_fd(&tcp).try_clone_to_owned()?;
            let pubsub = redis::aio::PubSub::new(info.redis_settings(), tcp).await?;
            Ok((pubsub, Pacer::new(Some(fd), every)))
        }
        _ => Ok((client.get_async_pubsub().await?, Pacer::new(None, MAX_PACE))),
    }
}

/// Paced reads of the subscriber socket (see the module docs).
struct Pacer {
    /// A descriptor of the pub/sub connection's socket, of the pacer's own; `None`: not
    /// paced.
    fd: Option<std::os::fd::OwnedFd>,
    every: Duration,
    /// When the held-back messages are read; `Some` while the low-water mark is raised.
    next: Option<Instant>,
}

impl Pacer {
    fn new(fd: Option<std::os::fd::OwnedFd>, every: Duration) -> Self {
        Pacer {
            fd,
            every,
            next: None,
        }
    }

    /// A message was read: let the next ones gather until the timer.
    fn after_message(&mut self) {
        if let (Some(fd), None) = (&self.fd, self.next) {
            if set_rcvlowat(fd, PACED_LOWAT) {
                self.next = Some(Instant::now() + self.every);
            }
        }
    }

    /// Lowers the mark: whatever is waiting wakes the reader now (the kernel signals a
    /// socket that already holds data when its mark is lowered), and replies to commands
    /// are not held back.
    fn read_now(&mut self) {
        if let (Some(fd), Some(_)) = (&self.fd, self.next.take()) {
            if !set_rcvlowat(fd, 1) {
                // The mark could not be lowered: stop pacing this connection, so that no
                // message waits for a timer that no longer runs.
                self.fd = None;
            }
        }
    }
}

/// Sets `SO_RCVLOWAT`; `false` if the kernel refused.
#[allow(unsafe_code)]
fn set_rcvlowat(fd: &std::os::fd::OwnedFd, bytes: i32) -> bool {
    // SAFETY: `fd` is an open descriptor we own (it is closed only when dropped), and the
    // option value is an `int` that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "SO_RCVLOWAT not set; reading Redis unpaced");
    }
    rc == 0
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
    fn pacing_follows_the_window_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(pace_for(ms(0)), None, "window 0 reads each message at once");
        assert_eq!(pace_for(ms(40)), None, "below 50 ms not worth a timer");
        assert_eq!(pace_for(ms(50)), Some(ms(5)));
        assert_eq!(pace_for(ms(200)), Some(ms(20)));
        assert_eq!(pace_for(ms(1000)), Some(ms(100)));
        assert_eq!(pace_for(ms(60_000)), Some(ms(100)), "capped");
    }

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
