//! The servers Pushfleet is compared with under the same load: Socket.IO with its Redis
//! adapter and a plain Node `ws` broadcaster (`bench/node`, installed by `npm ci`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::host::{proc_cpu_s, proc_rss_kib};
use super::{
    all_ready, publisher, spawn_workers, spread_ms, worker, Outcome, Scenario, WorkerProc,
};
use crate::Redis;

/// What `@socket.io/redis-emitter` publishes for `io.to(room).emit("message", data)`: on
/// `socket.io#/#<room>#`, the MessagePack array `[uid, packet, opts]` that the Redis
/// adapter of every Socket.IO node decodes and broadcasts to the room.
pub(super) fn socketio_emit(room: &str, data: &str) -> (String, Vec<u8>) {
    #[derive(Serialize)]
    struct Packet<'a> {
        #[serde(rename = "type")]
        kind: u8,
        data: (&'a str, serde_json::Value),
        nsp: &'a str,
    }
    #[derive(Serialize)]
    struct Opts<'a> {
        rooms: [&'a str; 1],
        except: [&'a str; 0],
        flags: std::collections::BTreeMap<String, bool>,
    }
    let value = serde_json::from_str(data).unwrap_or(serde_json::Value::Null);
    let packet = Packet {
        kind: 2, // EVENT
        data: ("message", value),
        nsp: "/",
    };
    let opts = Opts {
        rooms: [room],
        except: [],
        flags: Default::default(),
    };
    let bytes = rmp_serde::to_vec_named(&("emitter", packet, opts)).unwrap_or_default();
    (format!("socket.io#/#{room}#"), bytes)
}

/// Where the peers' Node programs live (`bench/node`, dependencies from `npm ci`).
fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/node")
}

/// What `s` needs that this checkout lacks, said so that the reader can fix it (checked
/// before a run starts, so a long run does not stop halfway).
pub fn missing_prerequisite(s: &Scenario) -> Option<String> {
    let peer = matches!(
        s.server,
        worker::Protocol::Socketio | worker::Protocol::Plain
    );
    let modules = node_dir().join("node_modules");
    (peer && !modules.is_dir()).then(|| {
        format!(
            "{} is missing: run `npm ci --prefix bench/node` (make bench does)",
            modules.display()
        )
    })
}

/// A peer scenario: the same load as Pushfleet's comparison scenario, on Socket.IO with
/// its Redis adapter or on a plain Node `ws` broadcaster. Every message is its own frame
/// there (neither merges), so the figure compared is messages delivered per CPU-second of
/// the server process, over the publish phase and the time it takes to deliver the rest.
pub(super) async fn run_peer(s: &Scenario) -> Outcome {
    let script = match s.server {
        worker::Protocol::Socketio => "socketio-server.js",
        _ => "ws-server.js",
    };
    // `bench run` checks this before it starts; a direct caller gets the same words.
    if let Some(why) = missing_prerequisite(s) {
        panic!("{why}");
    }
    let dir = node_dir();
    let redis = if s.server == worker::Protocol::Socketio {
        Some(Redis::start().await)
    } else {
        None
    };
    let mut cmd = Command::new("node");
    cmd.arg(dir.join(script)).env("PORT", "0");
    if let Some(r) = &redis {
        cmd.env("REDIS_URL", r.url());
    }
    let mut server = cmd
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node (Node.js 20 is needed for the peer scenarios)");
    let pid = server.id().expect("node pid") as i32;
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .ok()
        .and_then(|l| l.ok().flatten())
        .unwrap_or_default();
    let port: u16 = first
        .strip_prefix("listening ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("{script} did not start: {first:?}"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let channels: Vec<String> = (0..s.channels.max(1))
        .map(|i| format!("bench{i}"))
        .collect();
    let rss_before = proc_rss_kib(pid).unwrap_or(0);
    let mut workers = spawn_workers(addr, s.conns, &channels, s, &mut 0).await;
    let ready = all_ready(&mut workers).await;
    let mut out = Outcome::idle(s, ready, rss_before, || proc_rss_kib(pid).unwrap_or(0)).await;
    let cpu0 = proc_cpu_s(pid);
    let clients0: f64 = workers.iter().map(WorkerProc::cpu_s).sum();
    let (published, rtt) = publisher(s, &[(addr, "/publish")], redis.as_ref(), &channels).await;
    out.published = published;
    out.publish_rtt_ms = spread_ms(&rtt);
    // Measurement pacing: a peer that fell behind gets the same 3 s to catch up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    out.gateway_cpu_s = proc_cpu_s(pid) - cpu0;
    out.clients_cpu_s = workers.iter().map(WorkerProc::cpu_s).sum::<f64>() - clients0;
    // Every frame of a peer is one message, written once per connection.
    out.collect(workers, channels.len()).await;
    out.gateway_frames_sent = out.frames_delivered as f64;
    out.cpu_us_per_frame = out.gateway_cpu_s * 1e6 / out.gateway_frames_sent.max(1.0);
    let _ = server.kill().await;
    out
}
