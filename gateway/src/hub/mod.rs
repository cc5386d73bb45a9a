//! The hub: every local connection lives in one of N shards, each with its own lock and
//! its own channel → subscribers index, and its own fan-out task. A flush hands the same
//! refcounted frames at once to the task of every shard that has subscribers of the
//! channel; shards deliver in parallel and no lock is shared between them while they
//! write. A shard walks its subscribers in connection-id order (accept order), in chunks
//! of [`DELIVER_CHUNK`], yielding between chunks so that publishes arriving during a large
//! fan-out are taken in without waiting for its end.
//!
//! Per-connection outbound queues are bounded (`--queue-frames`). Overflow policy:
//! **disconnect** — a connection whose queue is full is closed with 1013 and counted in
//! `pushfleet_connections_closed_total{reason="slow_consumer"}`; other connections on the
//! same channel are not slowed down.

mod refs;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, watch, Notify};

use crate::ws::io::{Full, Outbox, Sent};

use crate::metrics::Metrics;
use crate::wire::BROADCAST;
use refs::ChannelRefs;

/// A channel name, shared between indexes without copying.
pub type Channel = Arc<str>;

/// Frame encoding negotiated per connection (WebSocket subprotocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Json,
    Msgpack,
}

impl Encoding {
    pub const ALL: [Encoding; 2] = [Encoding::Json, Encoding::Msgpack];

    fn index(self) -> usize {
        match self {
            Encoding::Json => 0,
            Encoding::Msgpack => 1,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Msgpack => "msgpack",
        }
    }
}

/// The frames of one batch: one complete WebSocket frame per encoding in use, built once.
/// Connections get refcounted clones; none copies, re-encodes or re-frames the batch.
#[derive(Debug, Default)]
pub struct Frames {
    pub json: Option<Bytes>,
    pub msgpack: Option<Bytes>,
}

impl Frames {
    fn get(&self, enc: Encoding) -> Option<&Bytes> {
        match enc {
            Encoding::Json => self.json.as_ref(),
            Encoding::Msgpack => self.msgpack.as_ref(),
        }
    }
}

/// WebSocket close codes the server uses (DESIGN §4.1).
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const DRAINING: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const TRY_AGAIN: u16 = 1013;
    /// The reason sent with [`TRY_AGAIN`] to a connection that fell `--queue-frames` behind.
    pub const SLOW_CONSUMER: &str = "slow consumer";
}

/// Close request shared by a connection's session and the hub.
#[derive(Debug, Default)]
pub struct ConnControl {
    code: AtomicU16,
    reason: Mutex<&'static str>,
    notify: Notify,
}

impl ConnControl {
    /// Asks the connection to close with `code`. The first request wins; returns whether
    /// this call was it.
    pub fn close(&self, code: u16, reason: &'static str) -> bool {
        let first = self
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            *lock(&self.reason) = reason;
            self.notify.notify_waiters();
        }
        first
    }

    /// The close code requested, if any.
    pub fn code(&self) -> Option<(u16, &'static str)> {
        match self.code.load(Ordering::Acquire) {
            0 => None,
            c => Some((c, *lock(&self.reason))),
        }
    }

    /// Completes when a close has been requested.
    pub async fn closed(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a close in between is not missed.
            notified.as_mut().enable();
            if self.code.load(Ordering::Acquire) != 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A registered connection, as seen by its session. Not `Clone`: [`Hub::unregister`]
/// takes it, so a connection is counted out once.
#[derive(Debug)]
pub struct ConnHandle {
    pub id: u64,
    pub control: Arc<ConnControl>,
    encoding: Encoding,
}

/// Subscribing would exceed the per-connection limit.
#[derive(Debug, thiserror::Error)]
#[error("at most {max} subscriptions per connection")]
pub struct TooManySubscriptions {
    pub max: usize,
}

/// What the fan-out needs of a subscriber, kept in the channel index itself so that a
/// delivery walks one table and touches nothing else before the write.
#[derive(Clone)]
struct Sub {
    out: Arc<Outbox>,
    encoding: Encoding,
    control: Arc<ConnControl>,
}

struct ConnEntry {
    sub: Sub,
    channels: HashSet<Channel>,
}

/// Both maps are ordered by connection id, which follows accept order: a fan-out then
/// writes to sockets in the order the kernel allocated them (file table, socket structs),
/// which measured ~7 % less CPU per frame at 15k connections than hash order.
#[derive(Default)]
struct ShardState {
    conns: BTreeMap<u64, ConnEntry>,
    index: HashMap<Channel, BTreeMap<u64, Sub>>,
}

struct Shard {
    state: Arc<Mutex<ShardState>>,
    deliveries: mpsc::Sender<ShardMsg>,
}

/// What a shard's fan-out task receives.
enum ShardMsg {
    Deliver(Arc<Delivery>),
    /// Answered once everything queued before it is delivered.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

struct Delivery {
    channel: Channel,
    frames: Arc<Frames>,
    handed_off: Instant,
}

struct HubShared {
    shards: Box<[Shard]>,
    next_id: AtomicU64,
    refs: ChannelRefs,
    encodings: [AtomicUsize; 2],
    count: watch::Sender<usize>,
    metrics: Metrics,
}

/// Handle to the hub; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<HubShared>,
}

/// Locks a std mutex, ignoring poisoning: every critical section here leaves the data
/// consistent, so a panic elsewhere must not take the hub down with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Deliveries queued per shard before the merger waits (policy: backpressure).
const SHARD_QUEUE: usize = 1024;

/// Connections go to shards in runs of this many consecutive ids (ids follow accept order,
/// and so do the kernel's file table and socket structures): a shard's fan-out then walks
/// neighbouring sockets, ~9 % less CPU per frame at 15k connections than id % shards
/// (`bench/ab.sh`, fanout-15k-small, five rounds each: median 6.73 vs 7.37 µs).
const SHARD_RUN: u64 = 32;

impl Hub {
    /// Builds `shards` shards and spawns their fan-out tasks, which end when the last
    /// `Hub` handle is dropped.
    pub fn new(shards: usize, metrics: Metrics) -> Hub {
        let shards: Box<[Shard]> = (0..shards.max(1))
            .map(|_| {
                let state = Arc::new(Mutex::new(ShardState::default()));
                let (tx, rx) = mpsc::channel(SHARD_QUEUE);
                tokio::spawn(shard_worker(state.clone(), rx, metrics.clone()));
                Shard {
                    state,
                    deliveries: tx,
                }
            })
            .collect();
        Hub {
            shared: Arc::new(HubShared {
                refs: ChannelRefs::new(shards.len().max(16)),
                shards,
                next_id: AtomicU64::new(1),
                encodings: Default::default(),
                count: watch::channel(0).0,
                metrics,
            }),
        }
    }

    fn shard_index(&self, id: u64) -> usize {
        ((id / SHARD_RUN) % self.shared.shards.len() as u64) as usize
    }

    fn shard(&self, id: u64) -> &Shard {
        &self.shared.shards[self.shard_index(id)]
    }

    /// Adds a connection that is written through `out`.
    pub fn register(&self, encoding: Encoding, out: Arc<Outbox>) -> ConnHandle {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let control = Arc::new(ConnControl::default());
        let entry = ConnEntry {
            sub: Sub {
                out,
                encoding,
                control: control.clone(),
            },
            channels: HashSet::new(),
        };
        lock(&self.shard(id).state).conns.insert(id, entry);
        self.shared.encodings[encoding.index()].fetch_add(1, Ordering::Relaxed);
        self.shared.count.send_modify(|n| *n += 1);
        self.shared.metrics.connections.inc();
        ConnHandle {
            id,
            control,
            encoding,
        }
    }

    /// Takes a closing connection out of the fan-out: out of the connection table (so
    /// broadcasts skip it) and out of every channel's index, its subscriptions dropped.
    /// It still counts as a connection (its socket is open, its close frame on the way)
    /// until [`Hub::unregister`]. A session calls this as it starts to close, so the
    /// batches published while its close frame goes out and it waits for the client's
    /// answer (up to 5 s) are not offered to it only to be dropped. Returns the channels
    /// that no longer have any local subscriber; a second call returns none.
    pub fn retire(&self, conn: &ConnHandle) -> Vec<Channel> {
        let entry = lock(&self.shard(conn.id).state).conns.remove(&conn.id);
        let Some(entry) = entry else {
            return Vec::new();
        };
        let channels: Vec<Channel> = entry.channels.into_iter().collect();
        self.remove_from_index(conn.id, &channels)
    }

    /// Removes a connection (retiring it first if its session did not) and counts it
    /// out. Returns the channels that no longer have any local subscriber.
    pub fn unregister(&self, conn: ConnHandle) -> Vec<Channel> {
        let gone = self.retire(&conn);
        self.shared.encodings[conn.encoding.index()].fetch_sub(1, Ordering::Relaxed);
        self.shared.count.send_modify(|n| *n = n.saturating_sub(1));
        self.shared.metrics.connections.dec();
        gone
    }

    /// Subscribes a connection. All or nothing: if the result would exceed `max`
    /// subscriptions nothing changes. Returns channels that just became active here.
    pub fn subscribe(
        &self,
        conn: &ConnHandle,
        channels: &[Channel],
        max: usize,
    ) -> Result<Vec<Channel>, TooManySubscriptions> {
        let mut newly_indexed = Vec::new();
        {
            let mut st = lock(&self.shard(conn.id).state);
            let Some(entry) = st.conns.get_mut(&conn.id) else {
                return Ok(Vec::new());
            };
            let fresh: HashSet<&Channel> = channels
                .iter()
                .filter(|c| !entry.channels.contains(*c))
                .collect();
            if entry.channels.len() + fresh.len() > max {
                return Err(TooManySubscriptions { max });
            }
            let fresh: Vec<Channel> = fresh.into_iter().cloned().collect();
            for ch in &fresh {
                entry.channels.insert(ch.clone());
            }
            let sub = entry.sub.clone();
            for ch in fresh {
                let subs = st.index.entry(ch.clone()).or_default();
                subs.insert(conn.id, sub.clone());
                if subs.len() == 1 {
                    newly_indexed.push(ch);
                }
                self.shared.metrics.subscriptions.inc();
            }
        }
        Ok(self.activate(self.shard_index(conn.id), newly_indexed))
    }

    /// Unsubscribes a connection. Returns channels that no longer have local subscribers.
    pub fn unsubscribe(&self, conn: &ConnHandle, channels: &[Channel]) -> Vec<Channel> {
        let removed: Vec<Channel> = {
            let mut st = lock(&self.shard(conn.id).state);
            match st.conns.get_mut(&conn.id) {
                Some(entry) => channels
                    .iter()
                    .filter(|c| entry.channels.remove(*c))
                    .cloned()
                    .collect(),
                None => Vec::new(),
            }
        };
        self.remove_from_index(conn.id, &removed)
    }

    fn remove_from_index(&self, id: u64, channels: &[Channel]) -> Vec<Channel> {
        let mut emptied = Vec::new();
        {
            let mut st = lock(&self.shard(id).state);
            for ch in channels {
                if let Some(subs) = st.index.get_mut(ch) {
                    if subs.remove(&id).is_some() {
                        self.shared.metrics.subscriptions.dec();
                    }
                    if subs.is_empty() {
                        st.index.remove(ch);
                        emptied.push(ch.clone());
                    }
                }
            }
        }
        let shard = self.shard_index(id);
        emptied
            .into_iter()
            .filter(|ch| {
                let gone = self.shared.refs.decr(ch, shard);
                if gone {
                    self.shared.metrics.channels.dec();
                }
                gone
            })
            .collect()
    }

    fn activate(&self, shard: usize, newly_indexed: Vec<Channel>) -> Vec<Channel> {
        newly_indexed
            .into_iter()
            .filter(|ch| {
                let new = self.shared.refs.incr(ch, shard);
                if new {
                    self.shared.metrics.channels.inc();
                }
                new
            })
            .collect()
    }

    /// Whether a message on `channel` has anyone to go to on this node.
    pub fn has_subscribers(&self, channel: &str) -> bool {
        if channel == BROADCAST {
            self.connection_count() > 0
        } else {
            self.shared.refs.contains(channel)
        }
    }

    /// Channels with local subscribers (for resubscribing after a bus reconnect).
    pub fn active_channels(&self) -> Vec<Channel> {
        self.shared.refs.all()
    }

    /// Whether any connection uses `enc` (so the merger only encodes what is needed).
    pub fn encoding_in_use(&self, enc: Encoding) -> bool {
        self.shared.encodings[enc.index()].load(Ordering::Relaxed) > 0
    }

    pub fn connection_count(&self) -> usize {
        *self.shared.count.borrow()
    }

    /// Completes when no connection is left.
    pub async fn wait_empty(&self) {
        let mut rx = self.shared.count.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Hands one batch to every shard that has subscribers of its channel (every shard
    /// for a broadcast); each delivers to its subscribers in parallel. A channel with few
    /// subscribers, a personal one above all, wakes one shard instead of all of them. A
    /// subscription acknowledged before the flush is in the shard set by then.
    /// Waits only if a shard is more than [`SHARD_QUEUE`] deliveries behind.
    pub async fn fanout(&self, channel: Channel, frames: Arc<Frames>) {
        let shards = &self.shared.shards;
        let targets: Vec<usize> = if &*channel == BROADCAST {
            (0..shards.len()).collect()
        } else {
            self.shared.refs.shards_of(&channel)
        };
        let d = Arc::new(Delivery {
            channel,
            frames,
            handed_off: Instant::now(),
        });
        for i in targets {
            // A closed queue means the worker is gone (runtime shutting down).
            let _ = shards[i]
                .deliveries
                .send(ShardMsg::Deliver(d.clone()))
                .await;
        }
    }

    /// Completes when every shard has delivered everything handed to it before this call.
    pub async fn fanout_barrier(&self) {
        let mut waits = Vec::with_capacity(self.shared.shards.len());
        for shard in self.shared.shards.iter() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if shard.deliveries.send(ShardMsg::Barrier(tx)).await.is_ok() {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = w.await;
        }
    }

    /// Close controls of every connection (a snapshot), for draining.
    pub fn all_controls(&self) -> Vec<Arc<ConnControl>> {
        self.shared
            .shards
            .iter()
            .flat_map(|s| {
                lock(&s.state)
                    .conns
                    .values()
                    .map(|e| e.sub.control.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Connections a shard writes to before it lets the runtime run other tasks (well under a
/// millisecond of writes). A fan-out to thousands of sockets would otherwise hold its
/// worker thread for tens of milliseconds, and a publish arriving meanwhile (the first
/// message of the next batch) would wait that long before its window even opened. The
/// runtime polls its sockets only once every shard on a worker has had its turn (a yielded
/// task waits until the run queue is empty), so the wait is a round of chunks over all
/// busy shards: with 256 connections per chunk, 11–31 ms at 3,000 connections on the
/// project's machine; with 64, 1–7 ms (docs/PERFORMANCE.md, round 5).
pub const DELIVER_CHUNK: usize = 64;

async fn shard_worker(
    state: Arc<Mutex<ShardState>>,
    mut rx: mpsc::Receiver<ShardMsg>,
    metrics: Metrics,
) {
    while let Some(msg) = rx.recv().await {
        match msg {
            ShardMsg::Deliver(d) => {
                let mut progress = Progress::default();
                while deliver(&state, &d, &metrics, &mut progress) {
                    // Lets the runtime poll its sockets (tokio runs a yielded task again
                    // only after that), then resumes after the last connection written.
                    tokio::task::yield_now().await;
                }
            }
            ShardMsg::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// How far one delivery got: connections are walked in id order, so it resumes after
/// `after`. Connections that join the channel meanwhile with a higher id get the batch,
/// those that leave do not: the same race as a subscribe during a delivery.
#[derive(Default)]
struct Progress {
    after: Option<u64>,
    frames: u64,
}

/// Writes `d` to the next [`DELIVER_CHUNK`] subscribers; `true` while some are left.
fn deliver(state: &Mutex<ShardState>, d: &Delivery, metrics: &Metrics, p: &mut Progress) -> bool {
    use std::ops::Bound::{Excluded, Unbounded};
    let st = lock(state);
    let (mut frames, mut bytes, mut queued) = (0u64, 0u64, 0u64);
    let mut offer = |entry: Target<'_>| {
        let Some(frame) = d.frames.get(entry.encoding) else {
            return;
        };
        // Counted as sent: the frames the socket took or the outbox holds for it, not
        // those a full outbox refused or a failed socket dropped.
        let taken = match entry.out.send(frame) {
            Ok(Sent::Written) => true,
            Ok(Sent::Queued) => {
                queued += 1;
                true
            }
            Ok(Sent::Dropped) => false,
            Err(Full) => {
                if entry.control.close(close::TRY_AGAIN, close::SLOW_CONSUMER) {
                    metrics
                        .connections_closed
                        .get_or_create(&[("reason", "slow_consumer")])
                        .inc();
                }
                false
            }
        };
        if taken {
            frames += 1;
            bytes += frame.len() as u64;
        }
    };
    let range = (p.after.map_or(Unbounded, Excluded), Unbounded);
    let more = if &*d.channel == BROADCAST {
        offer_chunk(st.conns.range(range), |e| &e.sub, &mut offer)
    } else {
        let subs = st.index.get(&d.channel);
        subs.and_then(|subs| offer_chunk(subs.range(range), |s| s, &mut offer))
    };
    drop(st);
    metrics.frames_sent.inc_by(frames);
    metrics.bytes_sent.inc_by(bytes);
    metrics.frames_queued.inc_by(queued);
    p.frames += frames;
    if more.is_some() {
        p.after = more;
        return true;
    }
    // Shards without a subscriber of the channel did no fan-out: nothing to observe.
    if p.frames > 0 {
        metrics
            .fanout_duration
            .observe(d.handed_off.elapsed().as_secs_f64());
    }
    false
}

/// What a delivery needs of one subscriber, copied out of the table before the chunk's
/// writes begin (see [`offer_chunk`]).
#[derive(Clone, Copy)]
struct Target<'a> {
    out: &'a Outbox,
    encoding: Encoding,
    control: &'a ConnControl,
}

/// Offers the frame to the next [`DELIVER_CHUNK`] entries of a table (the connection table
/// for a broadcast, a channel's index otherwise). `Some(last id)` when the chunk was full.
///
/// The chunk's subscribers are first copied out of the table in one tight walk, then
/// written to one by one, each write preceded by a prefetch of the next one's outbox:
/// every write's system call leaves the CPU's caches cold, and walking the table between
/// writes, or reaching an outbox unannounced, missed them at every connection (round 19's
/// profile, "The hot path, as built" in docs/PERFORMANCE.md).
fn offer_chunk<'a, V: 'a>(
    entries: impl Iterator<Item = (&'a u64, &'a V)>,
    sub: impl Fn(&'a V) -> &'a Sub,
    offer: &mut impl FnMut(Target<'_>),
) -> Option<u64> {
    let mut chunk: [Option<Target<'a>>; DELIVER_CHUNK] = [None; DELIVER_CHUNK];
    let (mut walked, mut last) = (0, 0);
    for (slot, (id, v)) in chunk.iter_mut().zip(entries) {
        let s = sub(v);
        *slot = Some(Target {
            out: &s.out,
            encoding: s.encoding,
            control: &s.control,
        });
        (walked, last) = (walked + 1, *id);
    }
    let mut targets = chunk[..walked].iter().flatten().peekable();
    while let Some(t) = targets.next() {
        if let Some(next) = targets.peek() {
            next.out.prefetch();
        }
        offer(*t);
    }
    (walked == DELIVER_CHUNK).then_some(last)
}
