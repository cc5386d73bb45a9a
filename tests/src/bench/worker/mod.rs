//! A load-generating client process: N WebSocket connections from one source address,
//! each subscribed at connect, counting frames and messages and measuring latency from
//! the publish time carried in every message (`"ts_us"`).
//!
//! Protocol with the orchestrator: prints `ready <connected> <failed> <elapsed_ms>` once
//! every connection is up, then on a `report` line on stdin prints one JSON line of
//! [`WorkerReport`] and exits.

mod stamp;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;

use super::hist::Histogram;
use stamp::{read_stamped, stamp_arrivals};

/// What a worker measured.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct WorkerReport {
    pub connected: u64,
    pub failed: u64,
    pub connect_ms: u64,
    pub frames: u64,
    pub messages: u64,
    pub closed: u64,
    /// Per batch and connection: the time the client read the frame − the first message's
    /// publish time − the merge window.
    pub read: Excess,
    /// The same from the time the kernel queued the frame on the client's socket
    /// (`SO_TIMESTAMPNS`): when the frame reached the client, whenever the client got the
    /// CPU to read it.
    pub arrival: Excess,
    /// Frames whose arrival time came from the kernel (the others count as arrived when
    /// read).
    pub stamped: u64,
    /// Per message: receive time − its publish time, µs.
    pub message_latency: Histogram,
}

/// Latency excess per batch and connection, µs: over all batches, and split by batch
/// (keyed by the batch's first publish time, µs) for the first [`TRACKED_BATCHES`]
/// batches, which shows whether a tail is every batch's or one batch's.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Excess {
    pub all: Histogram,
    pub per_batch: BTreeMap<u64, Histogram>,
}

impl Excess {
    fn record(&mut self, first_ts: u64, excess_us: u64) {
        self.all.record(excess_us);
        if self.per_batch.len() < TRACKED_BATCHES || self.per_batch.contains_key(&first_ts) {
            self.per_batch
                .entry(first_ts)
                .or_default()
                .record(excess_us);
        }
    }

    /// Adds another worker's figures to these.
    pub fn merge(&mut self, other: &Excess) {
        self.all.merge(&other.all);
        for (ts, h) in &other.per_batch {
            self.per_batch.entry(*ts).or_default().merge(h);
        }
    }
}

/// Batches a worker keeps a histogram of its own for (later ones count only in the total).
pub const TRACKED_BATCHES: usize = 1024;

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    pub target: SocketAddr,
    pub source: IpAddr,
    pub conns: usize,
    pub channels: Vec<String>,
    pub connect_rate: u32,
    pub window_us: u64,
    /// Plain TCP sockets that only read and discard (for the bare-write baseline).
    pub raw_tcp: bool,
    /// Which server the WebSocket clients speak to.
    pub protocol: Protocol,
    pub sched: ClientSched,
    /// The one CPU this worker runs on (`bench run --pin-clients`); `None`: where the
    /// kernel places it.
    pub cpu: Option<usize>,
    /// How many of its connections stop reading once upgraded (a client whose network
    /// stalled): they count as connected and read nothing, so the server's buffers for
    /// them fill (`Scenario::stalled`).
    pub stalled: usize,
}

/// The servers a worker can load: Pushfleet, and the peers it is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `GET /ws?channels=<ch>`; every text frame is a batch.
    #[default]
    Pushfleet,
    /// Socket.IO 4 (Engine.IO 4 over WebSocket): `GET /socket.io/?EIO=4&transport=websocket&channel=<ch>`;
    /// the client answers the open packet with a namespace connect (`40`) and pings
    /// (`2`) with pongs (`3`); events arrive as `42["message",<data>]`.
    Socketio,
    /// A plain broadcaster: `GET /?channel=<ch>`; every text frame is one message.
    Plain,
}

impl Protocol {
    fn path(self, ch: &str) -> String {
        match self {
            Protocol::Pushfleet => format!("/ws?channels={ch}"),
            Protocol::Socketio => format!("/socket.io/?EIO=4&transport=websocket&channel={ch}"),
            Protocol::Plain => format!("/?channel={ch}"),
        }
    }
}

pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[derive(Default)]
struct Shared {
    /// Signalled whenever a connection is upgraded or ends.
    settled: tokio::sync::Notify,
    upgraded: AtomicU64,
    frames: AtomicU64,
    stamped: AtomicU64,
    messages: AtomicU64,
    closed: AtomicU64,
    hist: Mutex<Hists>,
}

/// What the connections record into.
#[derive(Default)]
struct Hists {
    read: Excess,
    arrival: Excess,
    latency: Histogram,
}

/// The key of every message's publish time, its searcher built once per process.
static TS_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"ts_us\":"));

/// Pulls every `"ts_us":<digits>` out of a batch frame without a full JSON parse (this
/// process shares the machine with the gateway being measured).
fn timestamps(text: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let key = TS_KEY.needle().len();
    TS_KEY
        .find_iter(text)
        .filter_map(move |i| leading_number(&text[i + key..]))
}

/// The decimal number at the start of `text` (none without a digit, or past `u64`).
fn leading_number(text: &[u8]) -> Option<u64> {
    let digits = text.iter().take_while(|c| c.is_ascii_digit());
    let mut n: Option<u64> = None;
    for d in digits {
        n = Some(
            n.unwrap_or(0)
                .checked_mul(10)?
                .checked_add(u64::from(d - b'0'))?,
        );
    }
    n
}

async fn connect(args: &WorkerArgs, i: usize) -> std::io::Result<tokio::net::TcpStream> {
    let sock = if args.source.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.bind(SocketAddr::new(args.source, 0))?;
    let _ = i;
    sock.connect(args.target).await
}

/// One connection in this many records every message's latency.
const SAMPLE: usize = 16;

/// Messages in a frame. Every message the bench publishes carries exactly one `"seq":`,
/// and nothing else in a frame has a `q`: not the batch envelope's keys (`op`,
/// `channel`, `messages`), the channel names (`bench<i>`), the padding (`x`s), nor a
/// peer's framing (`42["message",…]`). So counting that one byte counts the messages, in
/// one SIMD pass with no work per match, where searching for the key cost this process
/// most of 18 % of its CPU (`perf record` of the workers during fanout-15k-small). A stray
/// `q` would count a message too many, and the bench's every-message-arrived check
/// (`messages delivered = expected`) would say so.
fn count_messages(text: &[u8]) -> u64 {
    memchr::memchr_iter(b'q', text).count() as u64
}

/// How a worker process shares the CPU with the gateway it loads. Clients of a real
/// gateway run on other machines; here they share two cores with the gateway (and with
/// the baseline server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientSched {
    /// `SCHED_BATCH`: a fair share of the CPU, but a frame that wakes a client never
    /// preempts a running task, so the gateway is not switched out in the middle of its
    /// fan-out at every frame.
    #[default]
    Batch,
    /// `SCHED_IDLE`: only the CPU the gateway (and everything else) leaves idle, the
    /// nearest this machine comes to clients on machines of their own. Frames wait in
    /// the clients' socket buffers until the fan-out is over, so read times are late by
    /// design; the arrival times (`SO_TIMESTAMPNS`) are the figure to read.
    Idle,
}

impl ClientSched {
    /// Puts this process under the policy.
    fn apply(self) {
        let policy = match self {
            ClientSched::Batch => libc::SCHED_BATCH,
            ClientSched::Idle => libc::SCHED_IDLE,
        };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler reads `param` and changes only this process's policy.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
        if rc != 0 {
            eprintln!(
                "bench worker: scheduling policy {self:?} not set: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Each connection's read buffer, allocated at connect: a whole batch frame of the
/// standard scenarios (≤ 11 KB) per `read`. Larger frames grow it.
const READ_BUFFER: usize = 16 * 1024;

/// Largest frame a worker accepts (batches are far smaller).
const MAX_FRAME: usize = 4 << 20;

/// Upgrades with a minimal HTTP/1.1 request; returns bytes read past the response head
/// (frames may follow it in the same read).
async fn handshake(
    stream: &mut tokio::net::TcpStream,
    args: &WorkerArgs,
    ch: &str,
) -> Option<Vec<u8>> {
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        args.protocol.path(ch),
        args.target
    );
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            let ok = buf.starts_with(b"HTTP/1.1 101")
                // The key is fixed, so is the answer (RFC 6455 §1.3).
                && memchr::memmem::find(&buf[..end], b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=").is_some();
            return ok.then(|| buf.split_off(end + 4));
        }
        if buf.len() > 8192 {
            return None;
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One parsed server frame header: FIN, opcode, header length, payload length.
fn frame_header(buf: &[u8]) -> Option<(bool, u8, usize, usize)> {
    let (&b0, rest) = buf.split_first()?;
    let &b1 = rest.first()?;
    let (len, head) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?,
            10,
        ),
        n => (n as usize, 2),
    };
    // Server frames are never masked (RFC 6455 §5.1): a masked one ends the connection.
    let masked = b1 & 0x80 != 0;
    (!masked).then_some((b0 & 0x80 != 0, b0 & 0x0f, head, len))
}

/// A WebSocket client reduced to what the measurement needs, so the load generator
/// spends as little of the shared CPU as it can: one read buffer per connection that
/// takes a whole batch frame per `read`, no per-frame allocation, no UTF-8 validation
/// (the gateway's text frames are checked by the browser tests), pongs answered, close
/// ends the connection.
async fn run_ws(
    mut stream: tokio::net::TcpStream,
    args: Arc<WorkerArgs>,
    i: usize,
    shared: Arc<Shared>,
) {
    let sampled = i.is_multiple_of(SAMPLE);
    let ch = args.channels[i % args.channels.len()].clone();
    let Some(mut buf) = handshake(&mut stream, &args, &ch).await else {
        shared.closed.fetch_add(1, Ordering::Relaxed);
        shared.settled.notify_one();
        return;
    };
    // A Socket.IO client is ready once its namespace connect is acknowledged (the server
    // has joined it to its room by then).
    let socketio = args.protocol == Protocol::Socketio;
    if !socketio {
        shared.upgraded.fetch_add(1, Ordering::Relaxed);
        shared.settled.notify_one();
    }
    if i <= args.stalled {
        // Hold the socket open and never read it, until the worker exits.
        std::future::pending::<()>().await;
    }
    // `buf[..filled]` holds unparsed bytes; `message` collects fragments.
    let mut filled = buf.len();
    // The whole read buffer now, while connecting: growing it at the first batch would put
    // 15,000 allocations and their page faults into the first fan-out's latency (these
    // processes share the gateway's cores).
    buf.resize(filled.max(READ_BUFFER), 0);
    let mut message: Vec<u8> = Vec::new();
    stamp_arrivals(&stream);
    // The kernel's receive time of the last segment read (frames completed by that read
    // arrived no later); none for bytes that came with the handshake's answer.
    let mut arrived: Option<u64> = None;
    loop {
        while let Some((fin, op, head, len)) = frame_header(&buf[..filled]) {
            if len > MAX_FRAME {
                shared.closed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if filled < head + len {
                if buf.len() < head + len {
                    buf.resize(head + len, 0);
                }
                break;
            }
            let payload = &buf[head..head + len];
            match op {
                0x9 => {
                    // Pong with the same payload, masked with a zero key.
                    let mut pong = vec![0x8a, 0x80 | len.min(125) as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(&payload[..len.min(125)]);
                    if stream.write_all(&pong).await.is_err() {
                        break;
                    }
                }
                0x8 => {
                    let _ = stream.write_all(&[0x88, 0x80, 0, 0, 0, 0]).await;
                    shared.closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                0x0..=0x2 if !fin || !message.is_empty() => {
                    message.extend_from_slice(payload);
                    if fin {
                        record(&message, arrived, &args, sampled, &shared);
                        message.clear();
                    }
                }
                0x1 if socketio => {
                    let reply: &[u8] = match payload {
                        [b'0', b'{', ..] => b"40",
                        b"2" => b"3",
                        [b'4', b'0', ..] => {
                            shared.upgraded.fetch_add(1, Ordering::Relaxed);
                            shared.settled.notify_one();
                            b""
                        }
                        [b'4', b'2', ..] => {
                            record(payload, arrived, &args, sampled, &shared);
                            b""
                        }
                        _ => b"",
                    };
                    if !reply.is_empty() && stream.write_all(&client_text(reply)).await.is_err() {
                        break;
                    }
                }
                0x1 | 0x2 => record(payload, arrived, &args, sampled, &shared),
                _ => {}
            }
            buf.copy_within(head + len..filled, 0);
            filled -= head + len;
        }
        if filled >= 2 && buf[1] & 0x80 != 0 {
            break; // a masked server frame: not a WebSocket server
        }
        if filled == buf.len() {
            if buf.len() > MAX_FRAME {
                break;
            }
            buf.resize((buf.len() * 2).max(256), 0);
        }
        match read_stamped(&stream, &mut buf[filled..]).await {
            Ok((0, _)) | Err(_) => break,
            Ok((n, stamp)) => {
                filled += n;
                arrived = stamp;
            }
        }
    }
    shared.closed.fetch_add(1, Ordering::Relaxed);
}

/// A short client text frame, masked with a zero key.
fn client_text(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x81, 0x80 | payload.len().min(125) as u8, 0, 0, 0, 0];
    f.extend_from_slice(&payload[..payload.len().min(125)]);
    f
}

/// Counts one batch frame and records its latencies; `arrived` is the kernel's receive
/// time of the frame's last segment, when the read that completed it had one.
fn record(frame: &[u8], arrived: Option<u64>, args: &WorkerArgs, sampled: bool, shared: &Shared) {
    let now = now_us();
    shared.frames.fetch_add(1, Ordering::Relaxed);
    if arrived.is_some() {
        shared.stamped.fetch_add(1, Ordering::Relaxed);
    }
    let arrived = arrived.unwrap_or(now);
    // Every connection times the first message of each batch (cheap: it is near the
    // start of the frame); one in SAMPLE also times every message, and counts are taken
    // from the batch size. The worker runs on a current-thread runtime: this lock is
    // never contended.
    let mut h = shared.hist.lock().unwrap_or_else(|e| e.into_inner());
    let batch = |h: &mut Hists, ts: u64| {
        let excess = |t: u64| t.saturating_sub(ts).saturating_sub(args.window_us);
        h.read.record(ts, excess(now));
        h.arrival.record(ts, excess(arrived));
    };
    if sampled {
        let mut first = true;
        for ts in timestamps(frame) {
            shared.messages.fetch_add(1, Ordering::Relaxed);
            h.latency.record(now.saturating_sub(ts));
            if first {
                batch(&mut h, ts);
                first = false;
            }
        }
    } else {
        if let Some(ts) = timestamps(frame).next() {
            batch(&mut h, ts);
        }
        shared
            .messages
            .fetch_add(count_messages(frame), Ordering::Relaxed);
    }
}

async fn run_raw(mut stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    shared.upgraded.fetch_add(1, Ordering::Relaxed);
    shared.settled.notify_one();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                shared.frames.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
    shared.closed.fetch_add(1, Ordering::Relaxed);
}

/// Runs the worker until the orchestrator asks for the report.
pub async fn run(args: WorkerArgs) {
    args.sched.apply();
    if let Some(cpu) = args.cpu {
        if let Err(e) = gateway::affinity::set_affinity(&[cpu]) {
            eprintln!("bench worker: not pinned to CPU {cpu}: {e}");
        }
    }
    let args = Arc::new(args);
    let shared = Arc::new(Shared::default());
    let started = Instant::now();
    let mut pace = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(args.connect_rate.max(1)),
    ));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut connected, mut failed) = (0u64, 0u64);
    let mut pending = Vec::new();
    for i in 0..=args.conns {
        if i < args.conns {
            pace.tick().await;
            let a = args.clone();
            pending.push(tokio::spawn(async move { connect(&a, i).await }));
        }
        // Keep at most 256 connects in flight; collect the rest at the end.
        if pending.len() >= 256 || i == args.conns {
            for p in pending.drain(..) {
                match p.await {
                    Ok(Ok(s)) => {
                        connected += 1;
                        spawn_conn(s, &args, connected as usize, &shared);
                    }
                    _ => failed += 1,
                }
            }
        }
    }
    // Connected means upgraded (or failed), not just the TCP handshake.
    let _ = tokio::time::timeout(Duration::from_secs(120), async {
        while shared.upgraded.load(Ordering::Relaxed) + shared.closed.load(Ordering::Relaxed)
            < connected
        {
            shared.settled.notified().await;
        }
    })
    .await;
    let connect_ms = started.elapsed().as_millis() as u64;
    let connected = shared.upgraded.load(Ordering::Relaxed);
    println!("ready {connected} {failed} {connect_ms}");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(l)) = lines.next_line().await {
        if l.trim() == "report" {
            break;
        }
    }
    let Hists {
        read,
        arrival,
        latency: message_latency,
    } = std::mem::take(&mut *shared.hist.lock().unwrap_or_else(|e| e.into_inner()));
    let report = WorkerReport {
        connected,
        failed,
        connect_ms,
        frames: shared.frames.load(Ordering::Relaxed),
        messages: shared.messages.load(Ordering::Relaxed),
        closed: shared.closed.load(Ordering::Relaxed),
        read,
        arrival,
        stamped: shared.stamped.load(Ordering::Relaxed),
        message_latency,
    };
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
    std::process::exit(0);
}

fn spawn_conn(s: tokio::net::TcpStream, args: &Arc<WorkerArgs>, i: usize, shared: &Arc<Shared>) {
    let shared = shared.clone();
    if args.raw_tcp {
        tokio::spawn(run_raw(s, shared));
    } else {
        tokio::spawn(run_ws(s, args.clone(), i, shared));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_timestamps() {
        let t = r#"{"op":"batch","channel":"c","messages":[{"ts_us":12,"pad":"x"},{"ts_us":345}]}"#;
        assert_eq!(timestamps(t.as_bytes()).collect::<Vec<_>>(), vec![12, 345]);
        assert_eq!(count_messages(br#"[{"seq":1},{"seq":2}]"#), 2);
        let batch = br#"{"op":"batch","channel":"bench3","messages":[{"ts_us":1,"seq":0,"pad":"xx"},{"ts_us":2,"seq":1,"pad":"xx"}]}"#;
        assert_eq!(count_messages(batch), 2);
        assert_eq!(
            count_messages(br#"42["message",{"ts_us":1,"seq":0,"pad":"x"}]"#),
            1
        );
        assert_eq!(leading_number(b"18446744073709551615,"), Some(u64::MAX));
        assert_eq!(leading_number(b"18446744073709551616"), None, "past u64");
        assert_eq!(
            leading_number(b"184467440737095516160"),
            None,
            "past u64, then more"
        );
        assert_eq!(leading_number(b",1"), None, "no digit");
        assert_eq!(
            timestamps(br#"{"ts_us":,"ts_us":7}"#).collect::<Vec<_>>(),
            vec![7],
            "a key without digits is skipped"
        );
    }

    #[test]
    fn tracks_each_batch_apart_up_to_a_bound() {
        let mut h = Excess::default();
        h.record(100, 5_000);
        h.record(100, 9_000);
        h.record(200, 1_000);
        assert_eq!(h.all.total, 3);
        assert_eq!(h.per_batch.len(), 2);
        assert_eq!(h.per_batch[&100].total, 2);
        assert_eq!(h.per_batch[&100].max_us, 9_000);
        for ts in 0..2 * TRACKED_BATCHES as u64 {
            h.record(1_000 + ts, 10);
        }
        assert_eq!(h.per_batch.len(), TRACKED_BATCHES, "bounded");
        h.record(100, 20_000);
        assert_eq!(h.per_batch[&100].total, 3, "a tracked batch still counts");
        assert_eq!(h.all.total, 4 + 2 * TRACKED_BATCHES as u64);
        let mut other = Excess::default();
        other.record(100, 1);
        other.record(7, 1);
        h.merge(&other);
        assert_eq!(h.per_batch[&100].total, 4);
        assert_eq!(h.per_batch[&7].total, 1, "merged batches are all kept");
    }

    #[test]
    fn client_policies_are_applied() {
        for (sched, policy) in [
            (ClientSched::Batch, libc::SCHED_BATCH),
            (ClientSched::Idle, libc::SCHED_IDLE),
        ] {
            // On Linux the policy is the calling thread's: a thread of its own each.
            let got = std::thread::spawn(move || {
                sched.apply();
                // SAFETY: sched_getscheduler only reads this thread's policy.
                #[allow(unsafe_code)]
                unsafe {
                    libc::sched_getscheduler(0)
                }
            })
            .join()
            .expect("thread");
            assert_eq!(got, policy, "{sched:?}");
        }
    }

    #[test]
    fn parses_frame_headers() {
        assert_eq!(frame_header(&[0x81, 5]), Some((true, 1, 2, 5)));
        assert_eq!(
            frame_header(&[0x01, 126, 0x30, 0x39]),
            Some((false, 1, 4, 12345))
        );
        let mut long = vec![0x82, 127];
        long.extend_from_slice(&70_000u64.to_be_bytes());
        assert_eq!(frame_header(&long), Some((true, 2, 10, 70_000)));
        assert_eq!(frame_header(&[0x81]), None, "incomplete");
        assert_eq!(frame_header(&[0x81, 126, 0]), None, "incomplete length");
        assert_eq!(frame_header(&[0x81, 0x85]), None, "masked server frame");
    }
}
