//! The merger: per-channel buffers flushed once per merge window, driven by one timer.
//!
//! A channel's buffer opens with its first message and is flushed `window` later, so a
//! burst inside one window always leaves as one batch. The window opens when that message
//! was published, as far as its envelope says (`published_ms`), not when it reached this
//! gateway: time it spent on the way (Redis, a paced read of the subscriber socket) comes
//! out of the window instead of adding to it. At most half a window is taken that way,
//! so a publisher whose clock runs behind cannot shrink windows to nothing, and never so
//! far back that a buffer opens before the one opened last. Buffers so open in time
//! order, and a FIFO of (opened, channel) gives the next deadline; the loop sleeps until
//! the front one, never holding a timer per channel or per connection. A buffer also
//! flushes early at `max_messages` or `max_bytes`. Window 0 sends each message on its own.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::hub::Channel;

/// A message from the bus, headed for a channel's buffer. `data` is valid JSON.
#[derive(Debug, Clone)]
pub struct BusMessage {
    pub channel: Channel,
    pub data: Bytes,
    /// Publish time, Unix milliseconds (0 when unknown).
    pub published_ms: u64,
}

/// Messages queued between the bus and the merger. Policy when full: **backpressure**
/// (the bus reader waits; the publish endpoint answers 503 after its timeout).
pub const MERGER_QUEUE: usize = 65_536;

/// Why a batch was flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Window,
    Count,
    Bytes,
    Immediate,
    Shutdown,
}

impl Trigger {
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Window => "window",
            Trigger::Count => "count",
            Trigger::Bytes => "bytes",
            Trigger::Immediate => "immediate",
            Trigger::Shutdown => "shutdown",
        }
    }
}

/// Where flushed batches go (the hub, or a test's collector).
pub trait BatchSink: Send {
    /// Whether messages for `channel` are wanted at all (someone subscribes here).
    fn accepts(&self, channel: &str) -> bool;
    /// Takes one batch: the channel's messages in arrival order.
    fn flush(
        &mut self,
        channel: Channel,
        messages: Vec<Bytes>,
        trigger: Trigger,
    ) -> impl Future<Output = ()> + Send;
}

/// Merge settings.
#[derive(Debug, Clone, Copy)]
pub struct MergeConfig {
    pub window: Duration,
    pub max_messages: usize,
    pub max_bytes: usize,
}

struct Buffer {
    messages: Vec<Bytes>,
    bytes: usize,
    generation: u64,
}

/// See the module docs.
pub struct Merger<S> {
    cfg: MergeConfig,
    sink: S,
    buffers: HashMap<Channel, Buffer>,
    order: VecDeque<(Instant, Channel, u64)>,
    next_generation: u64,
}

impl<S: BatchSink> Merger<S> {
    pub fn new(cfg: MergeConfig, sink: S) -> Self {
        Merger {
            cfg,
            sink,
            buffers: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
        }
    }

    /// Runs until `rx` closes, then flushes what is buffered.
    pub async fn run(mut self, mut rx: mpsc::Receiver<BusMessage>) {
        loop {
            let deadline = self.order.front().map(|(t, _, _)| *t + self.cfg.window);
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => self.push(m).await,
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    self.flush_due(Instant::now()).await;
                }
            }
        }
        self.flush_all().await;
    }

    async fn push(&mut self, m: BusMessage) {
        if !self.sink.accepts(&m.channel) {
            return;
        }
        if self.cfg.window.is_zero() {
            self.sink
                .flush(m.channel, vec![m.data], Trigger::Immediate)
                .await;
            return;
        }
        let len = m.data.len();
        let over_bytes = self
            .buffers
            .get(&m.channel)
            .is_some_and(|b| !b.messages.is_empty() && b.bytes + len > self.cfg.max_bytes);
        if over_bytes {
            self.flush_channel(&m.channel, Trigger::Bytes).await;
        }
        let MergeConfig {
            max_messages,
            max_bytes,
            ..
        } = self.cfg;
        let buf = self.buffer(&m.channel, m.published_ms);
        buf.messages.push(m.data);
        buf.bytes += len;
        let trigger = if buf.messages.len() >= max_messages {
            Some(Trigger::Count)
        } else if buf.bytes >= max_bytes {
            Some(Trigger::Bytes)
        } else {
            None
        };
        if let Some(t) = trigger {
            self.flush_channel(&m.channel, t).await;
        }
    }

    fn buffer(&mut self, channel: &Channel, published_ms: u64) -> &mut Buffer {
        if !self.buffers.contains_key(channel) {
            let generation = self.next_generation;
            self.next_generation += 1;
            let opened = self.opened_at(Instant::now(), published_ms, crate::wire::now_unix_ms());
            self.order.push_back((opened, channel.clone(), generation));
            self.buffers.insert(
                channel.clone(),
                Buffer {
                    messages: Vec::new(),
                    bytes: 0,
                    generation,
                },
            );
        }
        // Inserted just above when missing.
        self.buffers
            .get_mut(channel)
            .expect("buffer exists after insert")
    }

    /// When a buffer whose first message was published at `published_ms` (Unix ms, 0 when
    /// unknown) and arrives `now` (`now_ms` on the wall clock) opens: see the module docs.
    fn opened_at(&self, now: Instant, published_ms: u64, now_ms: u64) -> Instant {
        let age = Duration::from_millis(now_ms.saturating_sub(published_ms));
        let age = if published_ms == 0 {
            Duration::ZERO
        } else {
            age.min(self.cfg.window / 2)
        };
        let opened = now.checked_sub(age).unwrap_or(now);
        match self.order.back() {
            Some((last, _, _)) if *last > opened => *last,
            _ => opened,
        }
    }

    async fn flush_channel(&mut self, channel: &Channel, trigger: Trigger) {
        if let Some(buf) = self.buffers.remove(channel) {
            self.sink
                .flush(channel.clone(), buf.messages, trigger)
                .await;
        }
    }

    async fn flush_due(&mut self, now: Instant) {
        while let Some((opened, _, _)) = self.order.front() {
            if *opened + self.cfg.window > now {
                break;
            }
            let Some((_, channel, generation)) = self.order.pop_front() else {
                break;
            };
            // A stale entry: that buffer was flushed early and maybe reopened since.
            if self.buffers.get(&channel).map(|b| b.generation) == Some(generation) {
                self.flush_channel(&channel, Trigger::Window).await;
            }
        }
    }

    async fn flush_all(&mut self) {
        while let Some((_, channel, _)) = self.order.pop_front() {
            self.flush_channel(&channel, Trigger::Shutdown).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<(String, Vec<String>, Trigger, Instant)>>>;

    struct Collect(Log);

    impl BatchSink for Collect {
        fn accepts(&self, channel: &str) -> bool {
            channel != "nobody"
        }
        async fn flush(&mut self, channel: Channel, messages: Vec<Bytes>, trigger: Trigger) {
            let msgs = messages
                .iter()
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .collect();
            self.0
                .lock()
                .unwrap()
                .push((channel.to_string(), msgs, trigger, Instant::now()));
        }
    }

    fn start(
        window_ms: u64,
        max_messages: usize,
        max_bytes: usize,
    ) -> (mpsc::Sender<BusMessage>, Log) {
        let log = Log::default();
        let cfg = MergeConfig {
            window: Duration::from_millis(window_ms),
            max_messages,
            max_bytes,
        };
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(Merger::new(cfg, Collect(log.clone())).run(rx));
        (tx, log)
    }

    fn msg(ch: &str, data: &str) -> BusMessage {
        BusMessage {
            channel: Arc::from(ch),
            data: Bytes::from(data.to_owned()),
            published_ms: 0,
        }
    }

    async fn settle() {
        // Let the merger task run; with the paused clock this does not advance time.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn window_merges_a_burst_into_one_batch_per_channel() {
        let (tx, log) = start(1000, 1000, 1 << 20);
        let t0 = Instant::now();
        for i in 0..50 {
            tx.send(msg("news", &i.to_string())).await.unwrap();
            tx.send(msg("scores", &format!("s{i}"))).await.unwrap();
            settle().await;
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        // 500 ms after the first message.
        tokio::time::advance(Duration::from_millis(499)).await;
        settle().await;
        assert!(
            log.lock().unwrap().is_empty(),
            "nothing before the window ends"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        settle().await;
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 2);
        let news = log.iter().find(|b| b.0 == "news").unwrap();
        let expect: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        assert_eq!(news.1, expect, "in order, once");
        assert_eq!(news.2, Trigger::Window);
        assert_eq!(news.3 - t0, Duration::from_millis(1000));
    }

    fn published(ch: &str, data: &str, ms_ago: i64) -> BusMessage {
        let now = crate::wire::now_unix_ms() as i64;
        BusMessage {
            published_ms: (now - ms_ago) as u64,
            ..msg(ch, data)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_opens_at_the_publish_time_within_half_a_window() {
        let (tx, log) = start(1000, 1000, 1 << 20);
        let t0 = Instant::now();
        // Published 300 ms ago (time spent in Redis or in a paced read): 700 ms left.
        tx.send(published("late", "1", 300)).await.unwrap();
        // Published 5 s ago, as a publisher whose clock runs behind would say: the window
        // is shortened by half a window at most.
        tx.send(published("skewed", "2", 5_000)).await.unwrap();
        // A publish time in the future (a clock ahead): the window opens on arrival.
        tx.send(published("ahead", "3", -5_000)).await.unwrap();
        for _ in 0..10 {
            settle().await;
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        settle().await;
        let log = log.lock().unwrap();
        let at = |ch: &str| log.iter().find(|b| b.0 == ch).map(|b| b.3 - t0);
        // The two backdated buffers: "skewed" may not open before "late" did (FIFO order).
        assert_eq!(at("late"), Some(Duration::from_millis(700)), "{log:?}");
        assert_eq!(at("skewed"), Some(Duration::from_millis(700)), "{log:?}");
        assert_eq!(at("ahead"), Some(Duration::from_millis(1000)), "{log:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_far_behind_takes_at_most_half_a_window() {
        let (tx, log) = start(1000, 1000, 1 << 20);
        let t0 = Instant::now();
        tx.send(published("skewed", "1", 60_000)).await.unwrap();
        for _ in 0..10 {
            settle().await;
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].3 - t0, Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn early_flush_by_count() {
        let (tx, log) = start(1000, 3, 1 << 20);
        for i in 0..7 {
            tx.send(msg("c", &i.to_string())).await.unwrap();
        }
        settle().await;
        {
            let log = log.lock().unwrap();
            assert_eq!(log.len(), 2);
            assert_eq!(log[0].1, ["0", "1", "2"]);
            assert_eq!(log[1].1, ["3", "4", "5"]);
            assert!(log.iter().all(|b| b.2 == Trigger::Count));
        }
        tokio::time::advance(Duration::from_millis(1000)).await;
        settle().await;
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 3);
        assert_eq!(log[2].1, ["6"]);
        assert_eq!(log[2].2, Trigger::Window);
    }

    #[tokio::test(start_paused = true)]
    async fn early_flush_by_bytes() {
        let (tx, log) = start(1000, 1000, 10);
        tx.send(msg("c", "\"aaaa\"")).await.unwrap(); // 6 bytes
        tx.send(msg("c", "\"bbbb\"")).await.unwrap(); // would make 12 > 10: flush first
        tx.send(msg("c", "\"cccccccccccc\"")).await.unwrap(); // alone over the limit
        settle().await;
        let log = log.lock().unwrap();
        let batches: Vec<_> = log.iter().map(|b| (b.1.clone(), b.2)).collect();
        assert_eq!(
            batches,
            vec![
                (vec!["\"aaaa\"".to_string()], Trigger::Bytes),
                (vec!["\"bbbb\"".to_string()], Trigger::Bytes),
                (vec!["\"cccccccccccc\"".to_string()], Trigger::Bytes),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn window_zero_sends_each_message_alone() {
        let (tx, log) = start(0, 1000, 1 << 20);
        for i in 0..5 {
            tx.send(msg("c", &i.to_string())).await.unwrap();
        }
        settle().await;
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 5);
        assert!(log
            .iter()
            .enumerate()
            .all(|(i, b)| b.1 == [i.to_string()] && b.2 == Trigger::Immediate));
    }

    #[tokio::test(start_paused = true)]
    async fn unwanted_channels_are_not_buffered_and_close_flushes() {
        let (tx, log) = start(1000, 1000, 1 << 20);
        tx.send(msg("nobody", "1")).await.unwrap();
        tx.send(msg("c", "2")).await.unwrap();
        drop(tx);
        settle().await;
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!((log[0].0.as_str(), log[0].2), ("c", Trigger::Shutdown));
    }
}
