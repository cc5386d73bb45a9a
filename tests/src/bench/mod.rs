//! `bench`: drives real gateway processes with real WebSocket clients spread over worker
//! processes and source addresses, and reports the figures of DESIGN §5.
//!
//! Every figure comes from the processes themselves: connections and latencies from the
//! workers, RSS and CPU from `/proc/<gateway>`, frames, batches and serializations from the
//! gateway's `/metrics`, and the bare-write baseline from [`bare`] in the same run.
//!
//! # Layout
//! - this file: one scenario's run ([`run`]): gateways, the publisher, what is read
//!   from them ([`Outcome`]), and the bare-write [`baseline`];
//! - `scenario`: the scenarios of each size and how their connections are spread over
//!   worker processes; `workers`: starting those processes and reading their reports;
//!   `scrape`: what is read from the gateways' `/metrics`; `peers`: the same load on
//!   Socket.IO and a plain Node broadcaster;
//! - `host`: the host ([`Host`]: machine, kernel, a system call's cost) and a process's
//!   CPU and RSS from `/proc`; [`report`]: the summary line and the Markdown summary;
//! - [`worker`]: the client worker process; [`bare`]: the bare-write server;
//!   [`hist`]: latency histograms; [`goals`]: DESIGN §5's verdicts; [`svg`]: the plots.

pub mod bare;
pub mod goals;
pub mod hist;
mod host;
mod peers;
pub mod report;
mod scenario;
mod scrape;
pub mod stalls;
pub mod svg;
pub mod worker;
mod workers;

pub use host::{build_id, cores, proc_cpu_s, proc_rss_kib, proc_sys_s, steal_s, syscall_ns, Host};
pub use peers::missing_prerequisite;
use peers::{run_peer, socketio_emit};
use scenario::min_workers_per_target;
pub use scenario::{
    default_ping_secs, scenarios, worker_connect_rate, worker_split, workers_for, Scenario,
    STANDARD_PAYLOAD, WORKER_CONNECT_RATE,
};
use scrape::{batches, bucket_quantile, buckets, idle_cost, sum_metric};
pub use workers::arg_name;
use workers::{all_ready, source, spawn_worker, spawn_workers, WorkerProc};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::{Gateway, Redis};
use hist::Histogram;
use worker::now_us;

/// What idle connections cost the gateway: its CPU over two ping intervals while every
/// connection is subscribed and nothing is published, per server ping sent (the ping's
/// write, the pong's read, the timer). Nothing else runs then, so this is the whole cost
/// of keeping the connections: × connections ÷ interval gives CPU per second.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdleCost {
    pub ping_interval_s: u64,
    pub window_s: f64,
    /// `pushfleet_pings_sent_total` over the window.
    pub pings: f64,
    pub gateway_cpu_s: f64,
    pub cpu_us_per_ping: f64,
}

impl IdleCost {
    /// Gateway CPU for `conns` idle connections pinged every `interval_s`, ms per second.
    pub fn cpu_ms_per_s(&self, conns: u64, interval_s: u64) -> f64 {
        self.cpu_us_per_ping * conns as f64 / interval_s.max(1) as f64 / 1000.0
    }
}

/// What a scenario measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub scenario: Option<Scenario>,
    pub connected: u64,
    pub connect_failed: u64,
    pub connect_s: f64,
    pub rss_idle_kib_per_conn: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub published: u64,
    pub messages_delivered: u64,
    pub messages_expected: u64,
    pub frames_delivered: u64,
    pub gateway_frames_sent: f64,
    pub gateway_cpu_s: f64,
    /// Messages delivered per CPU-second of the server (gateway or peer) process.
    pub messages_per_cpu_s: f64,
    /// CPU seconds of the client worker processes over the same window (they share the
    /// machine's cores with the gateway).
    pub clients_cpu_s: f64,
    pub cpu_us_per_frame: f64,
    pub cpu_s_per_million_messages: f64,
    pub batches: f64,
    pub serializations: f64,
    pub serializations_per_batch: f64,
    pub avg_frame_bytes: f64,
    pub excess_p50_ms: f64,
    pub excess_p90_ms: f64,
    pub excess_p99_ms: f64,
    pub excess_max_ms: f64,
    /// Per batch, in publish order: excess p50, p99 and max (ms) over the connections that
    /// received it. One slow batch among ten sets the run's p99 on its own.
    pub per_batch_excess_ms: Vec<[f64; 3]>,
    /// The median of the batches' p99s: what a typical batch's tail was.
    pub batch_p99_median_ms: f64,
    /// The excess counted to the frame's arrival on the client's socket (the kernel's
    /// receive timestamp) instead of to the client's read: p50, p90, p99, max, ms. The
    /// clients share the gateway's cores; this is the latency a client on a machine of
    /// its own would see, to within its read.
    #[serde(default)]
    pub arrival_ms: [f64; 4],
    /// Like `per_batch_excess_ms`, to arrival.
    #[serde(default)]
    pub per_batch_arrival_ms: Vec<[f64; 3]>,
    /// The median of the batches' p99s, to arrival.
    #[serde(default)]
    pub arrival_batch_p99_median_ms: f64,
    /// Each batch's p1 to arrival, in the order of `per_batch_arrival_ms`: when its
    /// fan-out had reached the first 1 % of the connections, i.e. when it started. A slow
    /// batch that started late was held up before its writes (window, hand-off to the
    /// shards); one that started on time was slowed during them.
    #[serde(default)]
    pub per_batch_arrival_start_ms: Vec<f64>,
    /// Each batch's key, in the order of `per_batch_excess_ms`: its first message's
    /// publish time, µs since the epoch. Its window closed a merge window later; its
    /// fan-out ran in the p99 after that (to line it up with `bench stalls`).
    #[serde(default)]
    pub per_batch_first_publish_us: Vec<u64>,
    /// CPU time the hypervisor kept from the machine (`steal`, all CPUs; `steal_s`) over
    /// the same window as `gateway_cpu_s`, ms: time the scenario's processes had work
    /// and no CPU to run it on, which no figure of the gateway's explains.
    #[serde(default)]
    pub steal_ms: f64,
    /// Each batch's steal, in the order of `per_batch_excess_ms`: from its window's close
    /// to its p99 (its fan-out), ms of the cores, sampled every 5 ms at the kernel's
    /// 10 ms resolution (`per_batch_steal_ms`). A slow batch with steal lost cores to the
    /// host.
    #[serde(default)]
    pub per_batch_steal_ms: Vec<f64>,
    /// Frames whose arrival the kernel timestamped (the rest count as arrived when read).
    #[serde(default)]
    pub frames_stamped: u64,
    /// One channel on one gateway: (gateway + clients CPU) per batch ÷ the machine's
    /// cores, ms. Where they share the cores, no batch can reach its last client sooner.
    pub batch_cpu_floor_ms: Option<f64>,
    /// Kernel-mode CPU (`stime`) of the gateway process(es) over the same window as
    /// `gateway_cpu_s`, s: its system calls and the loopback TCP path they run.
    #[serde(default)]
    pub gateway_sys_s: f64,
    /// Like `batch_cpu_floor_ms`, with the gateway's user-mode CPU left out: (gateway
    /// kernel-mode + clients CPU) per batch ÷ cores, ms. What a batch's last client would
    /// wait on these cores if the gateway's own code cost nothing, so about as low as any
    /// change to it could bring the floor (the kernel's tick split undercounts user time
    /// by a few points against `perf`, so this is up to a few ms high:
    /// `bench/cpu_split.sh`).
    #[serde(default)]
    pub batch_floor_without_gateway_code_ms: Option<f64>,
    /// Gateway side: p99 of hand-off → a shard's last write, per shard and batch (upper
    /// bound of its histogram bucket).
    pub gateway_fanout_p99_ms: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    /// Each publish's round trip (HTTP request → answer, or `PUBLISH` → reply): p50, p99
    /// and max, ms.
    #[serde(default)]
    pub publish_rtt_ms: [f64; 3],
    /// Idle scenarios with [`Scenario::ping_secs`]: the gateway's CPU per server ping.
    #[serde(default)]
    pub idle: Option<IdleCost>,
    /// The baseline read by the same WebSocket clients as the gateway (the ratio's base).
    pub bare: Option<bare::BareReport>,
    /// The same baseline read by plain TCP readers that discard what they read.
    pub bare_raw: Option<bare::BareReport>,
    pub cpu_ratio_to_bare: Option<f64>,
    pub slow_consumer_closes: f64,
    /// Batch frames the socket did not take at once (the writer task finished them).
    pub frames_queued: f64,
    #[serde(skip)]
    pub message_latency: Histogram,
}

/// The flags `bench run` gives every gateway besides its scenario's merge window, ping
/// interval and Redis URL (`bench gateway` starts one with them too). The defaults would
/// refuse this load, which all comes from a few loopback addresses: 10,000 connections at
/// most and 50 new ones per second per address after a burst of 200 (docs/SECURITY.md).
/// The larger batch and outbox bounds leave room for the ingest scenarios' bursts. The
/// machine's cores are the gateway's and its clients', so its workers are pinned, one per
/// core (`--pin-workers`, docs/OPERATIONS.md; unpinned, the kernel sometimes kept both on
/// one core for a whole fan-out: docs/PERFORMANCE-HISTORY.md, round 23).
pub const GATEWAY_FLAGS: [(&str, &str); 6] = [
    ("--max-connections", "19000"),
    ("--max-connects-per-ip-per-sec", "100000"),
    ("--connect-burst-per-ip", "1000000"),
    ("--max-batch-bytes", "1048576"),
    ("--queue-frames", "256"),
    ("--pin-workers", "true"),
];

/// `bench gateway`'s arguments for the gateway: each of [`GATEWAY_FLAGS`] that `flags` does
/// not set (as `--flag value` or `--flag=value`), then `flags`.
pub fn gateway_args(flags: Vec<String>) -> Vec<String> {
    let mut args = Vec::new();
    for (flag, value) in GATEWAY_FLAGS {
        if !crate::process::sets_flag(&flags, flag) {
            args.extend([flag.to_owned(), value.to_owned()]);
        }
    }
    args.extend(flags);
    args
}

/// A scenario's gateway arguments: its own flags (window, ping interval, Redis, and
/// `--pin-workers false` when it runs unpinned) over [`GATEWAY_FLAGS`], by [`gateway_args`].
pub fn scenario_gateway_args(s: &Scenario, redis_url: Option<String>) -> Vec<String> {
    let mut own = vec!["--merge-window-ms".to_owned(), s.window_ms.to_string()];
    if let Some(p) = s.ping_secs {
        own.extend(["--ping-interval-secs".to_owned(), p.to_string()]);
    }
    if let Some(url) = redis_url {
        own.extend(["--redis-url".to_owned(), url]);
    }
    if !s.pin_workers {
        own.extend(["--pin-workers".to_owned(), "false".to_owned()]);
    }
    if let Some(q) = s.queue_frames {
        own.extend(["--queue-frames".to_owned(), q.to_string()]);
    }
    gateway_args(own)
}

/// Directory of the running executable's sibling binaries (`target/release` for `bench`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.parent().expect("profile dir").to_path_buf()
    } else {
        dir
    }
}

async fn start_gateways(s: &Scenario, redis: Option<&Redis>) -> Vec<Gateway> {
    let mut gws = Vec::new();
    for _ in 0..s.gateways {
        let mut b = Gateway::builder().binary_dir(bin_dir());
        for pair in scenario_gateway_args(s, redis.map(|r| r.url())).chunks_exact(2) {
            b = b.arg(&pair[0], &pair[1]);
        }
        gws.push(b.start().await);
    }
    for gw in &gws {
        crate::eventually("gateway ready", || async {
            (crate::http::get(gw.public, "/readyz").await.status == 200).then_some(())
        })
        .await;
    }
    gws
}

/// Publishes the scenario's messages, each carrying its publish time: straight to Redis
/// (`via_redis`) or with `POST` to `targets` in turn (address, path). Returns how many
/// were accepted and each publish's round trip (request sent → answer read), µs: what a backend waits, and how long a
/// publish sat unread while the gateway was busy (a batch's window opens only then).
async fn publisher(
    s: &Scenario,
    targets: &[(SocketAddr, &str)],
    redis: Option<&Redis>,
    channels: &[String],
) -> (u64, Histogram) {
    let mut rtt = Histogram::default();
    let pad = "x".repeat(s.payload);
    let total = u64::from(s.rate) * s.duration_s;
    let gap = Duration::from_secs_f64(1.0 / f64::from(s.rate.max(1)));
    let mut tick = tokio::time::interval(gap);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut redis_conn = match redis {
        Some(r) if s.via_redis => Some(r.conn().await),
        _ => None,
    };
    let keys = gateway::bus::redis::Keys::new("pushfleet");
    // One kept-open connection per gateway, as a backend that publishes often would use.
    let mut http: Vec<crate::http::KeepAlive> = targets
        .iter()
        .map(|(addr, _)| crate::http::KeepAlive::new(*addr))
        .collect();
    let mut sent = 0;
    for i in 0..total {
        tick.tick().await;
        let ch = &channels[i as usize % channels.len()];
        let sent_at = now_us();
        let data = format!(r#"{{"ts_us":{sent_at},"seq":{i},"pad":"{pad}"}}"#);
        match redis_conn.as_mut() {
            Some(c) if s.server == worker::Protocol::Socketio => {
                let (key, payload) = socketio_emit(ch, &data);
                let r: Result<(), _> =
                    deadpool_redis::redis::AsyncCommands::publish(c, key, payload).await;
                if r.is_ok() {
                    sent += 1;
                }
            }
            Some(c) => {
                if gateway::bus::redis::publish_one(c, &keys, ch, data.as_bytes())
                    .await
                    .is_ok()
                {
                    sent += 1;
                }
            }
            None => {
                let t = i as usize % targets.len();
                let body = format!(r#"{{"channel":"{ch}","data":{data}}}"#);
                if http[t].post_json(targets[t].1, &body).await == 202 {
                    sent += 1;
                }
            }
        }
        rtt.record(now_us().saturating_sub(sent_at));
    }
    (sent, rtt)
}

impl Outcome {
    /// The scenario's name (empty for a report without one).
    pub fn name(&self) -> String {
        self.scenario
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    /// The figures of the idle phase, once every connection is up (`ready` from
    /// [`all_ready`]): RSS per connection from `rss_before` and `rss_now()`.
    async fn idle(
        s: &Scenario,
        (connected, failed, connect_s): (u64, u64, f64),
        rss_before: u64,
        rss_now: impl Fn() -> u64,
    ) -> Outcome {
        // Measurement pacing, not synchronisation: let allocations settle before reading RSS.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_after = rss_now();
        Outcome {
            scenario: Some(s.clone()),
            connected,
            connect_failed: failed,
            connect_s,
            rss_before_kib: rss_before,
            rss_after_kib: rss_after,
            rss_idle_kib_per_conn: rss_after.saturating_sub(rss_before) as f64
                / connected.max(1) as f64,
            ..Outcome::default()
        }
    }

    /// Takes the workers' reports and derives the delivery and latency figures
    /// (`published`, `gateway_cpu_s` and `connected` are already set).
    async fn collect(&mut self, workers: Vec<WorkerProc>, channels: usize) {
        let mut read = worker::Excess::default();
        let mut arrival = worker::Excess::default();
        let mut latency = Histogram::default();
        for w in workers {
            let r = w.report().await;
            self.messages_delivered += r.messages;
            self.frames_delivered += r.frames;
            self.frames_stamped += r.stamped;
            read.merge(&r.read);
            arrival.merge(&r.arrival);
            latency.merge(&r.message_latency);
        }
        // Stalled connections read nothing by design: every reader gets every message.
        let stalled = self.scenario.as_ref().map_or(0, |s| s.stalled) as u64;
        let readers = self.connected.saturating_sub(stalled);
        let per_channel = readers as f64 / channels.max(1) as f64;
        self.messages_expected = (self.published as f64 * per_channel).round() as u64;
        self.cpu_s_per_million_messages =
            self.gateway_cpu_s * 1e6 / (self.messages_delivered.max(1) as f64);
        self.messages_per_cpu_s = self.messages_delivered as f64 / self.gateway_cpu_s.max(1e-9);
        let ms = |us: u64| us as f64 / 1000.0;
        self.excess_p50_ms = ms(read.all.quantile(0.50));
        self.excess_p90_ms = ms(read.all.quantile(0.90));
        self.excess_p99_ms = ms(read.all.quantile(0.99));
        self.excess_max_ms = ms(read.all.max_us);
        self.per_batch_excess_ms = read.per_batch.values().map(spread_ms).collect();
        self.per_batch_first_publish_us = read.per_batch.keys().copied().collect();
        self.batch_p99_median_ms = median_p99(&self.per_batch_excess_ms);
        self.arrival_ms = [0.50, 0.90, 0.99, 1.0].map(|q| ms(arrival.all.quantile(q)));
        self.per_batch_arrival_ms = arrival.per_batch.values().map(spread_ms).collect();
        self.arrival_batch_p99_median_ms = median_p99(&self.per_batch_arrival_ms);
        self.per_batch_arrival_start_ms = arrival
            .per_batch
            .values()
            .map(|h| ms(h.quantile(0.01)))
            .collect();
        self.latency_p50_ms = ms(latency.quantile(0.50));
        self.latency_p99_ms = ms(latency.quantile(0.99));
        self.message_latency = latency;
    }
}

/// p50, p99 and max of one batch's (or one bare round's) histogram, ms.
fn spread_ms(h: &Histogram) -> [f64; 3] {
    let ms = |us: u64| us as f64 / 1000.0;
    [ms(h.quantile(0.50)), ms(h.quantile(0.99)), ms(h.max_us)]
}

/// The median of per-batch p99s (`[p50, p99, max]` rows); 0 without batches.
pub fn median_p99(rows: &[[f64; 3]]) -> f64 {
    let mut p99s: Vec<f64> = rows.iter().map(|b| b[1]).collect();
    p99s.sort_by(f64::total_cmp);
    p99s.get(p99s.len() / 2).copied().unwrap_or(0.0)
}

/// Runs one scenario end to end.
pub async fn run(s: &Scenario) -> Outcome {
    eprintln!(
        "bench: {} ({} conns, {} gateway(s))",
        s.name, s.conns, s.gateways
    );
    if s.server != worker::Protocol::Pushfleet {
        return run_peer(s).await;
    }
    let redis = if s.via_redis || s.gateways > 1 || s.redis_bus {
        Some(Redis::start().await)
    } else {
        None
    };
    let mut gws = start_gateways(s, redis.as_ref()).await;
    let channels: Vec<String> = (0..s.channels.max(1))
        .map(|i| format!("bench{i}"))
        .collect();
    let rss_before: u64 = gws.iter().map(|g| g.rss_kib()).sum();

    // Workers: per gateway, `worker_split` of its connections, each from its own source
    // address.
    let mut workers = Vec::new();
    let mut k = 0;
    for gw in &gws {
        let per_gw = s.conns / s.gateways;
        workers.extend(spawn_workers(gw.public, per_gw, &channels, s, &mut k).await);
    }
    let ready = all_ready(&mut workers).await;
    let connected = ready.0;
    for gw in &gws {
        let want = (connected / s.gateways as u64) as f64;
        gw.wait_metric_at_least("pushfleet_subscriptions", "", want)
            .await;
    }
    let mut out = Outcome::idle(s, ready, rss_before, || {
        gws.iter().map(|g| g.rss_kib()).sum()
    })
    .await;
    if let (0, Some(interval)) = (s.rate, s.ping_secs) {
        out.idle = Some(idle_cost(&gws, interval).await);
    }

    let mut steal = Vec::new();
    if s.rate > 0 {
        let sampler = StealSampler::start();
        let cpu0: f64 = gws.iter().map(|g| proc_cpu_s(g.pid())).sum();
        let clients0: f64 = workers.iter().map(WorkerProc::cpu_s).sum();
        let sys0: f64 = gws.iter().map(|g| proc_sys_s(g.pid())).sum();
        let frames0 = sum_metric(&gws, "pushfleet_frames_sent_total", "").await;
        let bytes0 = sum_metric(&gws, "pushfleet_bytes_sent_total", "").await;
        let ser0 = sum_metric(&gws, "pushfleet_serializations_total", "encoding=\"json\"").await;
        let batches0 = batches(&gws).await;
        let queued0 = sum_metric(&gws, "pushfleet_frames_queued_total", "").await;
        let fanout0 = buckets(&gws, "pushfleet_fanout_duration_seconds").await;
        let targets: Vec<(SocketAddr, &str)> =
            gws.iter().map(|g| (g.internal, "/api/publish")).collect();
        let (published, rtt) = publisher(s, &targets, redis.as_ref(), &channels).await;
        out.published = published;
        out.publish_rtt_ms = spread_ms(&rtt);
        // Measurement pacing: let the last window flush and the clients read it.
        tokio::time::sleep(Duration::from_millis(s.window_ms + 1500)).await;
        out.gateway_cpu_s = gws.iter().map(|g| proc_cpu_s(g.pid())).sum::<f64>() - cpu0;
        out.clients_cpu_s = workers.iter().map(WorkerProc::cpu_s).sum::<f64>() - clients0;
        out.gateway_sys_s = gws.iter().map(|g| proc_sys_s(g.pid())).sum::<f64>() - sys0;
        steal = sampler.stop().await;
        out.steal_ms = steal
            .last()
            .zip(steal.first())
            .map_or(0.0, |(l, f)| (l.1 - f.1) * 1e3);
        out.gateway_frames_sent =
            sum_metric(&gws, "pushfleet_frames_sent_total", "").await - frames0;
        let bytes = sum_metric(&gws, "pushfleet_bytes_sent_total", "").await - bytes0;
        out.serializations =
            sum_metric(&gws, "pushfleet_serializations_total", "encoding=\"json\"").await - ser0;
        out.batches = batches(&gws).await - batches0;
        out.serializations_per_batch = out.serializations / out.batches.max(1.0);
        if s.channels <= 1 && s.gateways == 1 && s.window_ms > 0 && out.batches > 0.0 {
            let cores = cores() as f64;
            let per_batch_ms = |s: f64| Some(s / out.batches / cores * 1000.0);
            out.batch_cpu_floor_ms = per_batch_ms(out.gateway_cpu_s + out.clients_cpu_s);
            out.batch_floor_without_gateway_code_ms =
                per_batch_ms(out.gateway_sys_s + out.clients_cpu_s);
        }
        out.avg_frame_bytes = bytes / out.gateway_frames_sent.max(1.0);
        out.cpu_us_per_frame = out.gateway_cpu_s * 1e6 / out.gateway_frames_sent.max(1.0);
        out.frames_queued = sum_metric(&gws, "pushfleet_frames_queued_total", "").await - queued0;
        let fanout = buckets(&gws, "pushfleet_fanout_duration_seconds").await;
        out.gateway_fanout_p99_ms = bucket_quantile(&fanout0, &fanout, 0.99) * 1000.0;
        out.slow_consumer_closes = sum_metric(
            &gws,
            "pushfleet_connections_closed_total",
            "reason=\"slow_consumer\"",
        )
        .await;
    }

    out.collect(workers, channels.len()).await;
    out.per_batch_steal_ms = per_batch_steal_ms(
        &steal,
        &out.per_batch_first_publish_us,
        &out.per_batch_excess_ms,
        s.window_ms,
    );
    for gw in gws.iter_mut() {
        gw.terminate();
        // The next scenario starts on a quiet machine.
        let _ = gw.wait_exit(Duration::from_secs(30)).await;
    }

    if s.baseline && out.gateway_frames_sent > 0.0 {
        let rounds = (out.gateway_frames_sent / connected.max(1) as f64)
            .round()
            .max(1.0) as u32;
        let window = Duration::from_millis(s.window_ms.max(100));
        let frame = out.avg_frame_bytes as usize;
        // Read by raw readers, then by the scenario's own WebSocket clients.
        let bare = |websocket| {
            let sockets = connected as usize;
            baseline(
                sockets,
                frame,
                rounds,
                window,
                websocket,
                s.clients,
                s.pin_clients,
            )
        };
        out.bare_raw = Some(bare(false).await);
        let b = bare(true).await;
        out.cpu_ratio_to_bare = Some(out.cpu_us_per_frame / b.cpu_us_per_write.max(1e-9));
        out.bare = Some(b);
    }
    out
}

/// Samples `steal_s` every 5 ms, with the wall-clock time of each sample (µs since the
/// epoch, the clock of the batches' publish times), from `start` to `stop`.
struct StealSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<(u64, f64)>>,
}

impl StealSampler {
    fn start() -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut samples = vec![(now_us(), steal_s())];
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => samples.push((now_us(), steal_s())),
                }
            }
            samples.push((now_us(), steal_s()));
            samples
        });
        StealSampler { stop, task }
    }

    async fn stop(self) -> Vec<(u64, f64)> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// Steal over each batch's fan-out, ms: between its window's close (first publish +
/// window) and its p99 after that, read from `samples` ((µs, steal s), in time order) as
/// the last sample at or before each end. A batch outside the samples gets 0.
fn per_batch_steal_ms(
    samples: &[(u64, f64)],
    first_publish_us: &[u64],
    excess_ms: &[[f64; 3]],
    window_ms: u64,
) -> Vec<f64> {
    let at = |t: u64| {
        let i = samples.partition_point(|&(ts, _)| ts <= t);
        samples.get(i.max(1) - 1).map_or(0.0, |s| s.1)
    };
    first_publish_us
        .iter()
        .zip(excess_ms)
        .map(|(&key, e)| {
            let from = key + window_ms * 1000;
            let to = from + (e[1].max(0.0) * 1000.0) as u64;
            (at(to) - at(from)) * 1e3
        })
        .collect()
}

/// The bare-write baseline: `sockets` sockets, `rounds` writes of `frame_bytes`, `gap`
/// apart (the scenario's merge window), read by the scenario's WebSocket clients
/// (`websocket`) or by plain TCP readers, scheduled and placed as the scenario's clients.
pub async fn baseline(
    sockets: usize,
    frame_bytes: usize,
    rounds: u32,
    gap: Duration,
    websocket: bool,
    sched: worker::ClientSched,
    pin_clients: bool,
) -> bare::BareReport {
    let mut cmd = Command::new(bin_dir().join("bench"));
    cmd.arg("bare")
        .args(["--sockets", &sockets.to_string()])
        .args(["--frame-bytes", &frame_bytes.saturating_sub(10).to_string()])
        .args(["--rounds", &rounds.to_string()])
        .args(["--gap-ms", &gap.as_millis().to_string()]);
    if websocket {
        cmd.arg("--websocket");
    }
    let mut server = cmd
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn bare server");
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let first = lines.next_line().await.ok().flatten().unwrap_or_default();
    let addr: SocketAddr = first
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .expect("bare server address");
    let mut readers = Vec::new();
    let cpus = workers::client_cpus(pin_clients);
    // Source addresses from 127.0.0.102 on, apart from the scenario's workers'.
    let split = worker_split(sockets, min_workers_per_target(1, cores()));
    for (k, n) in (100..).zip(split) {
        let mut w = spawn_worker(&worker::WorkerArgs {
            target: addr,
            source: source(k),
            conns: n,
            channels: vec!["x".into()],
            connect_rate: WORKER_CONNECT_RATE,
            window_us: 0,
            raw_tcp: !websocket,
            protocol: worker::Protocol::Pushfleet,
            sched,
            cpu: workers::client_cpu(&cpus, k - 100),
            stalled: 0,
        })
        .await;
        w.ready().await;
        readers.push(w);
    }
    let line = tokio::time::timeout(Duration::from_secs(300), lines.next_line())
        .await
        .ok()
        .and_then(|l| l.ok().flatten())
        .unwrap_or_default();
    let mut seen = worker::Excess::default();
    let mut arrival = worker::Excess::default();
    for r in readers {
        let r = r.report().await;
        seen.merge(&r.read);
        arrival.merge(&r.arrival);
    }
    let mut report: bare::BareReport = serde_json::from_str(&line).unwrap_or_default();
    if websocket {
        report.latency_p50_ms = seen.all.quantile(0.50) as f64 / 1000.0;
        report.latency_p99_ms = seen.all.quantile(0.99) as f64 / 1000.0;
        report.per_round_ms = seen.per_batch.values().map(spread_ms).collect();
        report.arrival_p99_ms = arrival.all.quantile(0.99) as f64 / 1000.0;
        report.per_round_arrival_ms = arrival.per_batch.values().map(spread_ms).collect();
    }
    report
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn a_batch_spread_and_the_median_of_batch_tails() {
        let mut h = Histogram::default();
        for us in 1..=1_000u64 {
            h.record(us * 100);
        }
        let [p50, p99, max] = spread_ms(&h);
        assert!((p50 - 50.0).abs() < 1.5, "{p50}");
        assert!((p99 - 99.0).abs() < 2.5, "{p99}");
        assert_eq!(max, 100.0);
        let rows = [[1.0, 30.0, 31.0], [1.0, 10.0, 11.0], [1.0, 500.0, 501.0]];
        assert_eq!(median_p99(&rows), 30.0, "one slow batch does not move it");
        assert_eq!(median_p99(&[]), 0.0);
    }

    #[test]
    fn a_batch_gets_the_steal_of_its_fan_out_only() {
        // Steal (s) sampled every 5 ms from t = 1 s: 10 ms stolen at 1.020 s, 20 ms more
        // at 2.600 s.
        let samples: Vec<(u64, f64)> = (0..400u64)
            .map(|i| {
                let t = 1_000_000 + i * 5_000;
                let steal = if t >= 2_600_000 {
                    0.030
                } else if t >= 1_020_000 {
                    0.010
                } else {
                    0.0
                };
                (t, steal)
            })
            .collect();
        // Window 500 ms: batch 0 published at 0.5 s fans out from 1.0 s for 100 ms (the
        // 1.020 s steal); batch 1 at 1.5 s, from 2.0 s for 100 ms (none); batch 2 at 2.0 s,
        // from 2.5 s for 150 ms (the 2.600 s steal); batch 3 after the samples (none).
        let keys = [500_000, 1_500_000, 2_000_000, 9_000_000];
        let p99 = |ms: f64| [0.0, ms, ms];
        let got = per_batch_steal_ms(
            &samples,
            &keys,
            &[p99(100.0), p99(100.0), p99(150.0), p99(80.0)],
            500,
        );
        let want = [10.0, 0.0, 20.0, 0.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{got:?}");
        }
        assert_eq!(got.len(), 4);
        assert!(per_batch_steal_ms(&[], &keys, &[p99(1.0); 4], 500)
            .iter()
            .all(|&v| v == 0.0));
    }
}

#[cfg(test)]
mod gateway_args_tests {
    use super::*;

    #[test]
    fn scenarios_pin_their_gateways_unless_a_run_says_unpinned() {
        let pairs = |s: &Scenario| -> Vec<(String, String)> {
            scenario_gateway_args(s, None)
                .chunks_exact(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect()
        };
        let pin = |v: &str| ("--pin-workers".to_owned(), v.to_owned());
        let mut s = scenarios("full").remove(0);
        let pinned = pairs(&s);
        for (flag, _) in GATEWAY_FLAGS {
            let n = pinned.iter().filter(|(f, _)| f == flag).count();
            assert_eq!(n, 1, "every bench flag once: {pinned:?}");
        }
        assert!(pinned.contains(&pin("true")), "{pinned:?}");
        s.pin_workers = false;
        let unpinned = pairs(&s);
        assert!(unpinned.contains(&pin("false")), "{unpinned:?}");
        assert_eq!(
            pinned.iter().filter(|f| !unpinned.contains(f)).count(),
            1,
            "only --pin-workers differs"
        );
    }

    #[test]
    fn given_flags_replace_the_bench_defaults_in_either_form() {
        let args = |v: &[&str]| gateway_args(v.iter().map(|s| s.to_string()).collect());
        let all = args(&[]);
        assert_eq!(all.len(), 2 * GATEWAY_FLAGS.len());
        assert_eq!(all[..2], ["--max-connections", "19000"]);
        let spaced = args(&["--max-connections", "500", "--listen", "127.0.0.1:0"]);
        assert_eq!(
            spaced.iter().filter(|a| *a == "--max-connections").count(),
            1
        );
        assert!(spaced.ends_with(&[
            "--max-connections".into(),
            "500".into(),
            "--listen".into(),
            "127.0.0.1:0".into()
        ]));
        let joined = args(&["--queue-frames=8"]);
        assert!(
            !joined.contains(&"--queue-frames".to_string()),
            "{joined:?}"
        );
        assert_eq!(joined.last().unwrap(), "--queue-frames=8");
        // A flag whose name only starts like one of the bench's is not taken for it.
        let other = args(&["--max-connections-foo", "1"]);
        assert!(
            other.contains(&"--max-connections".to_string()),
            "{other:?}"
        );
    }
}
