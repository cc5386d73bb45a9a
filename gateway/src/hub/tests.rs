//! The hub's unit tests: shards, the channel index, ordering, yielding and the
//! slow-consumer policy, on in-memory outboxes.

use super::*;
use crate::ws::io::{RawWrite, Socket};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// A socket that records what is written, taking at most `budget` bytes.
struct Rec {
    budget: std::sync::atomic::AtomicUsize,
    got: Mutex<Vec<u8>>,
    notify: tokio::sync::Notify,
}

impl RawWrite for Arc<Rec> {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.budget.load(Ordering::SeqCst);
        if left == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = left.min(buf.len());
        self.budget.fetch_sub(n, Ordering::SeqCst);
        self.got.lock().unwrap().extend_from_slice(&buf[..n]);
        self.notify.notify_waiters();
        Ok(n)
    }
    fn poll_write_ready(
        &self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Pending
    }
}

fn rec(budget: usize) -> Arc<Rec> {
    Arc::new(Rec {
        budget: std::sync::atomic::AtomicUsize::new(budget),
        got: Mutex::new(Vec::new()),
        notify: tokio::sync::Notify::new(),
    })
}

fn conn(hub: &Hub, enc: Encoding, budget: usize, max: usize) -> (ConnHandle, Arc<Rec>) {
    let r = rec(budget);
    let c = hub.register(enc, Arc::new(Outbox::new(Socket::other(r.clone()), max)));
    (c, r)
}

/// Waits until `r` has received exactly `want`.
async fn got(r: &Rec, want: &str) {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = r.notify.notified();
            if String::from_utf8_lossy(&r.got.lock().unwrap()) == want {
                return;
            }
            n.await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "expected {want:?}, got {:?}",
            String::from_utf8_lossy(&r.got.lock().unwrap())
        )
    });
}

fn ch(s: &str) -> Channel {
    Arc::from(s)
}

fn frames(text: &str) -> Arc<Frames> {
    Arc::new(Frames {
        json: Some(Bytes::from(text.to_owned())),
        msgpack: Some(Bytes::from(format!("mp:{text}"))),
    })
}

#[tokio::test]
async fn channel_index_spans_shards() {
    let hub = Hub::new(4, Metrics::new());
    // Connections go to shards in runs of SHARD_RUN ids: keep one per run, so the
    // eight kept ones sit in shards 0, 1, 2, 3, 0, 1, 2, 3.
    let mut conns = Vec::new();
    for i in 0..8 * SHARD_RUN as usize {
        let c = conn(&hub, Encoding::Json, usize::MAX, 8);
        if i % SHARD_RUN as usize == 0 {
            conns.push(c);
        }
    }
    let shards: Vec<usize> = conns.iter().map(|c| hub.shard_index(c.0.id)).collect();
    assert_eq!(shards, [0, 1, 2, 3, 0, 1, 2, 3]);
    // First subscriber anywhere activates the channel; later ones do not.
    assert_eq!(
        hub.subscribe(&conns[0].0, &[ch("a")], 10).unwrap(),
        vec![ch("a")]
    );
    for c in &conns[1..4] {
        assert!(hub.subscribe(&c.0, &[ch("a")], 10).unwrap().is_empty());
    }
    let mut targets = hub.shared.refs.shards_of("a");
    targets.sort_unstable();
    assert_eq!(
        targets,
        [0, 1, 2, 3],
        "the channel is indexed in four shards"
    );
    hub.subscribe(&conns[4].0, &[ch("b")], 10).unwrap();
    hub.fanout(ch("a"), frames("A")).await;
    hub.fanout(ch("*"), frames("+")).await;
    for (i, c) in conns.iter().enumerate() {
        got(&c.1, if i < 4 { "A+" } else { "+" }).await;
    }
    assert!(hub.has_subscribers("a") && hub.has_subscribers("b"));
    // Last subscriber out deactivates.
    for c in &conns[1..4] {
        assert!(hub.unsubscribe(&c.0, &[ch("a")]).is_empty());
    }
    let (first, _) = conns.swap_remove(0);
    assert_eq!(hub.unregister(first), vec![ch("a")]);
    assert!(!hub.has_subscribers("a"));
    assert_eq!(hub.connection_count(), 8 * SHARD_RUN as usize - 1);
}

#[tokio::test]
async fn a_retired_connection_is_out_of_the_fanout_but_still_counted() {
    let metrics = Metrics::new();
    let hub = Hub::new(2, metrics.clone());
    let (leaving, leaving_rec) = conn(&hub, Encoding::Msgpack, usize::MAX, 8);
    let (staying, staying_rec) = conn(&hub, Encoding::Json, usize::MAX, 8);
    hub.subscribe(&leaving, &[ch("a"), ch("only")], 10).unwrap();
    hub.subscribe(&staying, &[ch("a")], 10).unwrap();
    assert_eq!(metrics.subscriptions.get(), 3);

    // Only the channel it alone held goes inactive; a second retire finds nothing.
    assert_eq!(hub.retire(&leaving), vec![ch("only")]);
    assert!(hub.retire(&leaving).is_empty());
    assert!(hub.has_subscribers("a") && !hub.has_subscribers("only"));
    assert_eq!(metrics.subscriptions.get(), 1);
    // Still a connection (its socket is open) and its encoding still counted.
    assert_eq!(hub.connection_count(), 2);
    assert_eq!(metrics.connections.get(), 2);
    assert!(hub.encoding_in_use(Encoding::Msgpack));
    // Neither its channel's batches nor broadcasts are offered to it.
    hub.fanout(ch("a"), frames("A")).await;
    hub.fanout(ch("*"), frames("+")).await;
    hub.fanout_barrier().await;
    got(&staying_rec, "A+").await;
    assert!(leaving_rec.got.lock().unwrap().is_empty());
    assert_eq!(metrics.frames_sent.get(), 2);
    // A shutdown's drain does not close it again.
    assert_eq!(hub.all_controls().len(), 1);
    // Unregistering counts it out once.
    assert!(hub.unregister(leaving).is_empty());
    assert_eq!(hub.connection_count(), 1);
    assert_eq!(metrics.connections.get(), 1);
    assert!(!hub.encoding_in_use(Encoding::Msgpack));
}

type WriteLog = Arc<Mutex<Vec<(usize, bool)>>>;

/// Logs which connection wrote, in the order of the writes, and whether `seen` was
/// set at the time.
struct Order {
    n: usize,
    log: WriteLog,
    seen: Arc<AtomicBool>,
}

impl RawWrite for Order {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        let seen = self.seen.load(Ordering::SeqCst);
        self.log.lock().unwrap().push((self.n, seen));
        Ok(buf.len())
    }
    fn poll_write_ready(
        &self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// `n` connections on a one-shard hub, subscribed to "a" in a scrambled order.
fn ordered_conns(hub: &Hub, n: usize, log: &WriteLog, seen: &Arc<AtomicBool>) -> Vec<ConnHandle> {
    let conns: Vec<ConnHandle> = (0..n)
        .map(|i| {
            let sock = Socket::other(Order {
                n: i,
                log: log.clone(),
                seen: seen.clone(),
            });
            hub.register(Encoding::Json, Arc::new(Outbox::new(sock, 8)))
        })
        .collect();
    // A stride coprime with every `n` used here (37 is prime).
    for k in 0..n {
        hub.subscribe(&conns[(k * 37) % n], &[ch("a")], 10).unwrap();
    }
    conns
}

#[tokio::test]
async fn fanout_writes_in_connection_order_whatever_the_subscription_order() {
    let hub = Hub::new(1, Metrics::new());
    let (log, seen): (WriteLog, Arc<AtomicBool>) = Default::default();
    let _conns = ordered_conns(&hub, 64, &log, &seen);
    hub.fanout(ch("a"), frames("A")).await;
    hub.fanout(ch("*"), frames("+")).await;
    hub.fanout_barrier().await;
    let order: Vec<usize> = log.lock().unwrap().iter().map(|w| w.0).collect();
    assert_eq!(order, (0..64).chain(0..64).collect::<Vec<_>>());
}

/// A large fan-out lets other tasks run between chunks, and still reaches every
/// subscriber once, in order.
#[tokio::test]
async fn a_large_fanout_yields_between_chunks() {
    let hub = Hub::new(1, Metrics::new());
    let (log, seen): (WriteLog, Arc<AtomicBool>) = Default::default();
    let n = 2 * DELIVER_CHUNK + 10;
    let _conns = ordered_conns(&hub, n, &log, &seen);
    hub.fanout(ch("a"), frames("A")).await;
    // Queued behind the shard's task on this single-threaded runtime: it runs before
    // the delivery ends only if the delivery yields.
    let flag = seen.clone();
    tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
    hub.fanout_barrier().await;
    let log = log.lock().unwrap();
    let order: Vec<usize> = log.iter().map(|w| w.0).collect();
    assert_eq!(order, (0..n).collect::<Vec<_>>());
    assert!(
        !log[DELIVER_CHUNK - 1].1,
        "the first chunk runs uninterrupted"
    );
    assert!(log[n - 1].1, "another task ran before the last chunk");
}

#[test]
fn channel_refs_track_shards_and_survive_racing_transitions() {
    let refs = ChannelRefs::new(2);
    let a = ch("a");
    assert!(refs.incr(&a, 1), "first shard activates the channel");
    assert!(!refs.incr(&a, 3));
    let mut shards = refs.shards_of("a");
    shards.sort_unstable();
    assert_eq!(shards, vec![1, 3]);
    assert!(!refs.decr(&a, 1));
    assert_eq!(refs.shards_of("a"), vec![3]);
    // Shard 3 emptied and re-filled its index concurrently: the activation was
    // counted before the removal; shard 3 must stay a target.
    assert!(!refs.incr(&a, 3));
    assert!(!refs.decr(&a, 3));
    assert_eq!(refs.shards_of("a"), vec![3]);
    assert!(refs.decr(&a, 3), "last shard deactivates the channel");
    assert!(refs.shards_of("a").is_empty() && !refs.contains("a"));
    assert!(!refs.decr(&a, 3), "unknown channel: nothing to do");
}

#[tokio::test]
async fn fanout_duration_is_observed_by_shards_that_delivered() {
    let m = Metrics::new();
    let hub = Hub::new(4, m.clone());
    let (c, rec) = conn(&hub, Encoding::Json, usize::MAX, 8);
    hub.subscribe(&c, &[ch("a")], 10).unwrap();
    hub.fanout(ch("a"), frames("A")).await;
    hub.fanout(ch("nobody"), frames("N")).await;
    tokio::time::timeout(Duration::from_secs(5), hub.fanout_barrier())
        .await
        .unwrap();
    got(&rec, "A").await;
    let count = crate::metrics::sample(&m.render(), "pushfleet_fanout_duration_seconds_count", "");
    assert_eq!(count, Some(1.0), "one shard delivered one batch");
}

#[tokio::test]
async fn close_wakes_waiters_and_later_callers_and_first_code_wins() {
    let c = Arc::new(ConnControl::default());
    let waiter = tokio::spawn({
        let c = c.clone();
        async move { c.closed().await }
    });
    tokio::task::yield_now().await;
    assert!(c.close(close::TRY_AGAIN, "slow consumer"));
    assert!(!c.close(close::DRAINING, "server draining"));
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("waiter woken")
        .unwrap();
    // Asking after the close returns at once.
    tokio::time::timeout(Duration::from_secs(5), c.closed())
        .await
        .expect("already closed");
    assert_eq!(c.code(), Some((close::TRY_AGAIN, "slow consumer")));
}

#[tokio::test]
async fn subscription_limit_is_all_or_nothing() {
    let hub = Hub::new(2, Metrics::new());
    let (c, _r) = conn(&hub, Encoding::Json, usize::MAX, 8);
    hub.subscribe(&c, &[ch("a"), ch("b")], 3).unwrap();
    // Re-subscribing to a channel already held does not count twice.
    hub.subscribe(&c, &[ch("a"), ch("c")], 3).unwrap();
    assert!(hub.subscribe(&c, &[ch("d"), ch("e")], 3).is_err());
    assert!(!hub.has_subscribers("d"));
}

#[tokio::test]
async fn full_queue_closes_with_1013_without_blocking_others() {
    let m = Metrics::new();
    let hub = Hub::new(1, m.clone());
    // The slow socket takes 3 bytes, then nothing; its queue holds 2 frames.
    let (slow, _slow_rec) = conn(&hub, Encoding::Json, 3, 2);
    let (fast, fast_rec) = conn(&hub, Encoding::Msgpack, usize::MAX, 2);
    hub.subscribe(&slow, &[ch("x")], 10).unwrap();
    hub.subscribe(&fast, &[ch("x")], 10).unwrap();
    let mut want = String::new();
    for i in 0..10 {
        hub.fanout(ch("x"), frames(&i.to_string())).await;
        want.push_str(&format!("mp:{i}"));
    }
    got(&fast_rec, &want).await;
    assert_eq!(
        slow.control.code(),
        Some((close::TRY_AGAIN, "slow consumer"))
    );
    assert_eq!(fast.control.code(), None);
    let text = m.render();
    let n = crate::metrics::sample(
        &text,
        "pushfleet_connections_closed_total",
        "reason=\"slow_consumer\"",
    );
    assert_eq!(n, Some(1.0), "counted once");
    // Sent: the fast one's 10, and of the slow one's only what its socket took (the
    // first three, a byte each) and its queue held (2), not the 5 the full queue refused.
    let sent = crate::metrics::sample(&text, "pushfleet_frames_sent_total", "");
    assert_eq!(sent, Some(15.0));
    let queued = crate::metrics::sample(&text, "pushfleet_frames_queued_total", "");
    assert_eq!(queued, Some(2.0));
}
