//! `bench`: the load generator and benchmark driver (see `make bench`).
//!
//! - `bench run [--size full|quick|tiny] [--out DIR] [--only NAME] [--rate N] [--conns N]`:
//!   runs the scenarios (those whose name contains NAME; `--rate`/`--conns` replace their
//!   publish rate / connection count for an ad-hoc run) and writes
//!   `DIR/<timestamp>-<size>.json`, `.md` and four SVG plots.
//! - `bench worker …`: one client process (started by `run`).
//! - `bench bare …`: the bare-write baseline server (started by `run`).
//! - `bench stalls --seconds N`: reports when a core stopped running the guest's work
//!   (a diagnostic beside a run; `bench/stalls.py` lines it up with the batches).
//! - `bench gateway [-- FLAGS…]`: runs the release `gateway` with the flags `run` gives it
//!   (raised connection limits), for load from another generator; FLAGS add or replace.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tests::bench::report::{markdown, summary_line, sweep, Build};
use tests::bench::{self, svg, Host, Outcome};

#[derive(Parser)]
#[command(name = "bench", about = "Pushfleet load generator and benchmark")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the scenarios and write the report.
    Run {
        #[arg(long, default_value = "full")]
        size: String,
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
        /// Only the scenarios whose name contains this.
        #[arg(long)]
        only: Option<String>,
        /// Publish at this many messages per second in every scenario that publishes
        /// (an ad-hoc run; the report's command line says so).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        rate: Option<u32>,
        /// Open this many connections in every scenario (an ad-hoc run; a gateway takes at
        /// most 19,000).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=50_000))]
        conns: Option<u64>,
        /// Open the connections at this many per second, all worker processes together
        /// (default: each worker at 20,000 per second).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        ramp: Option<u32>,
        /// Run the client processes under this policy (default: batch). `idle` leaves
        /// them only the CPU the gateway does not use, as if they were elsewhere; read
        /// the arrival figures then (docs/PERFORMANCE.md).
        #[arg(long, value_enum)]
        clients: Option<bench::worker::ClientSched>,
        /// Run the gateways without `--pin-workers` (the kernel places their worker
        /// threads), to compare with the pinned default (docs/PERFORMANCE-HISTORY.md, round 23).
        #[arg(long)]
        unpinned: bool,
        /// Pin the client worker processes, one CPU each in turn (by default the kernel
        /// places them), to tell the gateway's latency from the clients' own placement
        /// (docs/PERFORMANCE-HISTORY.md, round 27; docs/PERFORMANCE.md, round 28).
        #[arg(long)]
        pin_clients: bool,
    },
    /// A client process.
    Worker {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        source: IpAddr,
        #[arg(long)]
        conns: usize,
        #[arg(long, value_delimiter = ',')]
        channels: Vec<String>,
        #[arg(long, default_value_t = 1000)]
        window_ms: u64,
        #[arg(long, default_value_t = 5000)]
        connect_rate: u32,
        #[arg(long)]
        raw_tcp: bool,
        #[arg(long, value_enum, default_value_t)]
        protocol: bench::worker::Protocol,
        #[arg(long, value_enum, default_value_t)]
        sched: bench::worker::ClientSched,
        /// Run on this CPU only.
        #[arg(long)]
        cpu: Option<usize>,
        /// The first this many connections never read once upgraded.
        #[arg(long, default_value_t = 0)]
        stalled: usize,
    },
    /// Run a gateway as `bench run` starts one (its connection limits raised for load from
    /// one address), for another load generator to measure; flags after `--` are passed
    /// on and replace the bench's own.
    Gateway {
        #[arg(last = true)]
        flags: Vec<String>,
    },
    /// The bare-write baseline server.
    Bare {
        #[arg(long)]
        sockets: usize,
        #[arg(long)]
        frame_bytes: usize,
        #[arg(long)]
        rounds: u32,
        #[arg(long, default_value_t = 100)]
        gap_ms: u64,
        /// Answer a WebSocket upgrade on every socket before writing.
        #[arg(long)]
        websocket: bool,
    },
    /// Watch every CPU with a pinned real-time thread that sleeps 1 ms at a time, and
    /// print each wake-up later than the threshold (JSON lines), then a summary per CPU.
    Stalls {
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
        #[arg(long, default_value_t = 2000)]
        threshold_us: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Gateway { flags } => exec_gateway(flags),
        Cmd::Stalls {
            seconds,
            threshold_us,
        } => {
            if let Err(e) = bench::stalls::run(seconds, Duration::from_micros(threshold_us)) {
                eprintln!("bench stalls: {e}");
                std::process::exit(1);
            }
        }
        Cmd::Bare {
            sockets,
            frame_bytes,
            rounds,
            gap_ms,
            websocket,
        } => bench::bare::run(
            sockets,
            frame_bytes,
            rounds,
            Duration::from_millis(gap_ms),
            websocket,
        ),
        Cmd::Worker {
            target,
            source,
            conns,
            channels,
            window_ms,
            connect_rate,
            raw_tcp,
            protocol,
            sched,
            cpu,
            stalled,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(bench::worker::run(bench::worker::WorkerArgs {
                target,
                source,
                conns,
                channels,
                connect_rate,
                window_us: window_ms * 1000,
                raw_tcp,
                protocol,
                sched,
                cpu,
                stalled,
            }));
        }
        Cmd::Run {
            size,
            out,
            only,
            rate,
            conns,
            ramp,
            clients,
            unpinned,
            pin_clients,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(run(
                &size,
                &out,
                only.as_deref(),
                Overrides {
                    rate,
                    conns,
                    ramp,
                    clients,
                    unpinned,
                    pin_clients,
                },
            ));
        }
    }
}

/// Scenario settings replaced for an ad-hoc run (`bench run --rate/--conns/--ramp/--clients/--unpinned/--pin-clients`).
#[derive(Clone, Copy, Default)]
struct Overrides {
    rate: Option<u32>,
    conns: Option<u64>,
    ramp: Option<u32>,
    clients: Option<bench::worker::ClientSched>,
    unpinned: bool,
    pin_clients: bool,
}

impl Overrides {
    fn apply(self, s: &mut bench::Scenario) {
        if let Some(r) = self.rate.filter(|_| s.rate > 0) {
            s.rate = r;
        }
        if let Some(c) = self.conns {
            s.conns = c as usize;
        }
        if self.ramp.is_some() {
            s.ramp = self.ramp;
        }
        if let Some(c) = self.clients {
            s.clients = c;
        }
        if self.unpinned {
            s.pin_workers = false;
        }
        if self.pin_clients {
            s.pin_clients = true;
        }
    }

    /// The command that reproduces the run.
    fn command(self, size: &str, only: Option<&str>) -> String {
        let mut c = format!("bench run --size {size}");
        if let Some(o) = only {
            c.push_str(&format!(" --only {o}"));
        }
        if let Some(r) = self.rate {
            c.push_str(&format!(" --rate {r}"));
        }
        if let Some(n) = self.conns {
            c.push_str(&format!(" --conns {n}"));
        }
        if let Some(n) = self.ramp {
            c.push_str(&format!(" --ramp {n}"));
        }
        if let Some(k) = self.clients {
            c.push_str(&format!(" --clients {}", bench::arg_name(&k)));
        }
        if self.unpinned {
            c.push_str(" --unpinned");
        }
        if self.pin_clients {
            c.push_str(" --pin-clients");
        }
        c
    }
}

async fn run(size: &str, out: &std::path::Path, only: Option<&str>, over: Overrides) {
    let mut results: Vec<Outcome> = Vec::new();
    let command = over.command(size, only);
    let selected: Vec<bench::Scenario> = bench::scenarios(size)
        .into_iter()
        .filter(|s| only.is_none_or(|o| s.name.contains(o)))
        .collect();
    if let Some(why) = selected.iter().find_map(bench::missing_prerequisite) {
        eprintln!("bench: {why}");
        std::process::exit(2);
    }
    // Which gateway build the run measures, read before and after: bench/ab.sh swaps it
    // between runs, and a `cargo bench` may replace it with its own build.
    let gateway = bench::bin_dir().join("gateway");
    let build_before = bench::build_id(&gateway);
    for mut s in selected {
        over.apply(&mut s);
        let r = bench::run(&s).await;
        eprintln!("{}", summary_line(&r));
        results.push(r);
    }
    let build = Build {
        id: build_before,
        at_end: bench::build_id(&gateway),
    };
    let host = Host::measure();
    let stamp = timestamp();
    std::fs::create_dir_all(out).expect("create results dir");
    let base = out.join(format!("{stamp}-{size}"));
    let json = serde_json::json!({
        "when": stamp,
        "size": size,
        "machine": host.machine,
        "kernel": host.kernel,
        "syscall_ns": host.syscall_ns,
        "gateway_build_id": build.id,
        "gateway_build_id_at_end": build.at_end,
        "command": command,
        "results": results,
    });
    std::fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )
    .expect("write json");
    for g in bench::goals::evaluate(&results) {
        eprintln!(
            "goal: {} ({}), {}: {} — {}",
            g.goal,
            g.target,
            g.scenario,
            g.result,
            g.verdict_text().replace("**", "")
        );
    }
    let md = markdown(&stamp, size, &command, &host, &build, &results);
    std::fs::write(base.with_extension("md"), &md).expect("write md");
    let cdf: Vec<(String, Vec<(f64, f64)>)> = results
        .iter()
        .filter(|r| r.message_latency.total > 0)
        .map(|r| (r.name(), r.message_latency.cdf()))
        .collect();
    std::fs::write(
        format!("{}-latency.svg", base.display()),
        svg::latency_cdf(&cdf),
    )
    .expect("write svg");
    let cpu: Vec<(String, f64, f64, Option<f64>)> = results
        .iter()
        .filter(|r| r.gateway_frames_sent > 0.0)
        .map(|r| {
            (
                r.name(),
                r.connected as f64,
                r.cpu_us_per_frame,
                r.bare.as_ref().map(|b| b.cpu_us_per_write),
            )
        })
        .collect();
    std::fs::write(
        format!("{}-cpu.svg", base.display()),
        svg::cpu_per_frame(&cpu),
    )
    .expect("write svg");
    let sweep = sweep(&results);
    // One series of the sweep: (connections, value) where the run has the value.
    let points = |v: fn(&Outcome) -> Option<f64>| -> Vec<(f64, f64)> {
        sweep
            .iter()
            .filter_map(|r| Some((r.connected as f64, v(r)?)))
            .collect()
    };
    let cpu_by_conns = svg::by_connections(
        "Gateway CPU per delivered frame, by connection count",
        "µs of CPU per frame",
        &[
            ("gateway".into(), points(|r| Some(r.cpu_us_per_frame))),
            (
                "bare socket write, same run".into(),
                points(|r| Some(r.bare.as_ref()?.cpu_us_per_write)),
            ),
        ],
        None,
    );
    std::fs::write(format!("{}-cpu-by-conns.svg", base.display()), cpu_by_conns)
        .expect("write svg");
    let p99_by_conns = svg::by_connections(
        "p99 latency excess (window excluded), by connection count",
        "ms",
        &[
            ("gateway".into(), points(|r| Some(r.excess_p99_ms))),
            (
                "bare socket write to the same readers".into(),
                points(|r| Some(r.bare.as_ref()?.latency_p99_ms)),
            ),
            (
                "(gateway + clients CPU) per batch ÷ cores".into(),
                points(|r| r.batch_cpu_floor_ms),
            ),
        ],
        Some((100.0, "goal at 15,000 connections: 100 ms")),
    );
    std::fs::write(format!("{}-p99-by-conns.svg", base.display()), p99_by_conns)
        .expect("write svg");
    println!("{md}");
    println!(
        "written: {b}.{{json,md}}, {b}-latency.svg, {b}-cpu.svg, {b}-cpu-by-conns.svg, {b}-p99-by-conns.svg",
        b = base.display(),
    );
}

fn timestamp() -> String {
    let secs = tests::bench::worker::now_us() / 1_000_000;
    let (d, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = d as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Replaces this process with `gateway` and [`bench::gateway_args`]`(flags)`; the command
/// goes to stderr first.
fn exec_gateway(flags: Vec<String>) -> ! {
    use std::os::unix::process::CommandExt;
    let args = bench::gateway_args(flags);
    let exe = bench::bin_dir().join("gateway");
    eprintln!("bench gateway: {} {}", exe.display(), args.join(" "));
    let err = std::process::Command::new(&exe).args(&args).exec();
    eprintln!("bench gateway: cannot run {}: {err}", exe.display());
    std::process::exit(127)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn overrides_reach_the_scenario_and_the_command() {
        let over = Overrides {
            rate: Some(10),
            conns: Some(600),
            ramp: Some(2_000),
            clients: Some(bench::worker::ClientSched::Idle),
            unpinned: true,
            pin_clients: true,
        };
        let mut s = bench::scenarios("full")
            .into_iter()
            .find(|s| s.name == "fanout-15k")
            .expect("fanout-15k");
        over.apply(&mut s);
        assert_eq!((s.rate, s.conns, s.ramp), (10, 600, Some(2_000)));
        assert_eq!(s.clients, bench::worker::ClientSched::Idle);
        assert!(!s.pin_workers);
        assert!(s.pin_clients);
        let args = bench::scenario_gateway_args(&s, None);
        assert!(
            args.windows(2).any(|w| w == ["--pin-workers", "false"]),
            "{args:?}"
        );
        assert_eq!(
            over.command("full", Some("fanout")),
            "bench run --size full --only fanout --rate 10 --conns 600 --ramp 2000 --clients idle --unpinned --pin-clients"
        );
        // An idle scenario keeps publishing nothing.
        let mut idle = bench::scenarios("full")
            .into_iter()
            .find(|s| s.rate == 0)
            .expect("an idle scenario");
        over.apply(&mut idle);
        assert_eq!(idle.rate, 0);
    }
}
