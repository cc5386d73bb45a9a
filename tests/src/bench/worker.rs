//! A load-generating client process: N WebSocket connections from one source address,
//! each subscribed at connect, counting frames and messages and measuring latency from
//! the publish time carried in every message (`"ts_us"`).
//!
//! Protocol with the orchestrator: prints `ready <connected> <failed> <elapsed_ms>` once
//! every connection is up, then on a `report` line on stdin prints one JSON line of
//! [`WorkerReport`] and exits.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::hist::Histogram;

/// What a worker measured.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct WorkerReport {
    pub connected: u64,
    pub failed: u64,
    pub connect_ms: u64,
    pub frames: u64,
    pub messages: u64,
    pub closed: u64,
    /// Per batch: receive time − first message's publish time − merge window, µs.
    pub batch_excess: Histogram,
    /// Per message: receive time − its publish time, µs.
    pub message_latency: Histogram,
}

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
    messages: AtomicU64,
    closed: AtomicU64,
    hist: Mutex<(Histogram, Histogram)>,
}

/// Pulls every `"ts_us":<digits>` out of a batch frame without a full JSON parse (this
/// process shares the machine with the gateway being measured).
fn timestamps(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.match_indices("\"ts_us\":").filter_map(move |(i, m)| {
        let rest = &text[i + m.len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    })
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

/// Messages in a batch frame: every message carries exactly one `"seq":`.
fn count_messages(text: &str) -> u64 {
    text.matches("\"seq\":").count() as u64
}

async fn run_ws(
    stream: tokio::net::TcpStream,
    args: Arc<WorkerArgs>,
    i: usize,
    shared: Arc<Shared>,
) {
    let sampled = i.is_multiple_of(SAMPLE);
    let ch = &args.channels[i % args.channels.len()];
    let url = format!("ws://{}/ws?channels={ch}", args.target);
    let cfg = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let Ok((mut ws, _)) = tokio_tungstenite::client_async_with_config(url, stream, Some(cfg)).await
    else {
        shared.closed.fetch_add(1, Ordering::Relaxed);
        shared.settled.notify_one();
        return;
    };
    shared.upgraded.fetch_add(1, Ordering::Relaxed);
    shared.settled.notify_one();
    // The worker runs on a current-thread runtime: these locks are never contended.
    while let Some(msg) = ws.next().await {
        let Ok(Message::Text(t)) = msg else {
            if msg.is_err() {
                break;
            }
            continue;
        };
        let now = now_us();
        shared.frames.fetch_add(1, Ordering::Relaxed);
        // Every connection times the first message of each batch (cheap: it is near the
        // start of the frame); one in SAMPLE also times every message, and counts are
        // taken from the batch size. This process shares the CPU with the gateway.
        let mut h = shared.hist.lock().unwrap_or_else(|e| e.into_inner());
        if sampled {
            let mut first = true;
            for ts in timestamps(&t) {
                shared.messages.fetch_add(1, Ordering::Relaxed);
                h.1.record(now.saturating_sub(ts));
                if first {
                    h.0.record(now.saturating_sub(ts).saturating_sub(args.window_us));
                    first = false;
                }
            }
        } else {
            if let Some(ts) = timestamps(&t).next() {
                h.0.record(now.saturating_sub(ts).saturating_sub(args.window_us));
            }
            shared
                .messages
                .fetch_add(count_messages(&t), Ordering::Relaxed);
        }
    }
    shared.closed.fetch_add(1, Ordering::Relaxed);
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
    let (batch_excess, message_latency) = {
        let h = shared.hist.lock().unwrap_or_else(|e| e.into_inner());
        h.clone()
    };
    let report = WorkerReport {
        connected,
        failed,
        connect_ms,
        frames: shared.frames.load(Ordering::Relaxed),
        messages: shared.messages.load(Ordering::Relaxed),
        closed: shared.closed.load(Ordering::Relaxed),
        batch_excess,
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
        assert_eq!(timestamps(t).collect::<Vec<_>>(), vec![12, 345]);
    }
}
