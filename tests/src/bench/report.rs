//! The run's report: the one-line summary of each scenario printed as it ends, and the
//! Markdown summary (`<timestamp>-<size>.md`) with its tables.

use super::host::Host;
use super::Outcome;

/// The runs that differ only in connection count: one gateway on the embedded bus, one
/// channel, the standard message published over HTTP, a merge window and a bare-write
/// baseline (fanout-1k … fanout-15k), by connections.
pub fn sweep(results: &[Outcome]) -> Vec<&Outcome> {
    let mut v: Vec<&Outcome> = results
        .iter()
        .filter(|r| {
            r.scenario.as_ref().is_some_and(|s| {
                s.server == super::worker::Protocol::Pushfleet
                    && s.baseline
                    && s.gateways == 1
                    && s.channels <= 1
                    && s.window_ms > 0
                    && s.payload == super::STANDARD_PAYLOAD
                    && !s.via_redis
                    && !s.redis_bus
            }) && r.gateway_frames_sent > 0.0
        })
        .collect();
    v.sort_by_key(|r| r.connected);
    v
}

/// The [`sweep`] as a table: how CPU per frame and the p99 move with connections.
fn by_connections(results: &[Outcome]) -> String {
    let rows = sweep(results);
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n## By connection count\n\nThe same load (one gateway, one channel, the standard message, HTTP publishing) at each connection count, each with its own bare-write baseline (plots: `-cpu-by-conns.svg`, `-p99-by-conns.svg`).\n\n| scenario | conns | CPU µs/frame | bare µs/write | ratio | excess p99 ms | median batch p99 ms | (gateway + clients CPU) per batch ÷ cores, ms | bare write p99 ms |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let opt = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.2} | {} | {} | {:.1} | {:.1} | {} | {} |\n",
            r.name(),
            r.connected,
            r.cpu_us_per_frame,
            opt(r.bare.as_ref().map(|b| b.cpu_us_per_write)),
            opt(r.cpu_ratio_to_bare),
            r.excess_p99_ms,
            r.batch_p99_median_ms,
            opt(r.batch_cpu_floor_ms),
            opt(r.bare.as_ref().map(|b| b.latency_p99_ms)),
        ));
    }
    s
}

/// `", … ms of it without the gateway's user-mode CPU"` when that was measured.
fn without_code(r: &Outcome) -> String {
    r.batch_floor_without_gateway_code_ms
        .map(|k| format!(", {k:.1} ms of it without the gateway's user-mode CPU"))
        .unwrap_or_default()
}

/// `", worst: batch k of n, p99 … ms"` when batches were told apart.
fn worst_batch(r: &Outcome) -> String {
    let worst = r
        .per_batch_excess_ms
        .iter()
        .enumerate()
        .max_by(|a, b| a.1[1].total_cmp(&b.1[1]));
    worst
        .map(|(i, b)| {
            let n = r.per_batch_excess_ms.len();
            let of = if n >= super::worker::TRACKED_BATCHES {
                format!("the first {n}")
            } else {
                n.to_string()
            };
            format!(", worst: batch {} of {of}, p99 {:.1} ms", i + 1, b[1])
        })
        .unwrap_or_default()
}

/// What an idle scenario's connections cost the gateway in CPU (its pings), in words.
fn idle_cost_text(r: &Outcome) -> Option<String> {
    let c = r.idle.as_ref()?;
    let default = super::default_ping_secs();
    Some(format!(
        "{:.0} pings (every {} s) in {:.1} s cost the gateway {:.3} CPU-s: {:.1} µs per ping; at the default interval ({default} s), {:.1} ms of CPU per second for these {} connections",
        c.pings,
        c.ping_interval_s,
        c.window_s,
        c.gateway_cpu_s,
        c.cpu_us_per_ping,
        c.cpu_ms_per_s(r.connected, default),
        r.connected,
    ))
}

pub fn summary_line(r: &Outcome) -> String {
    if let Some(idle) = idle_cost_text(r) {
        return format!(
            "bench: {}: connected {} in {:.2}s, RSS {:.1} KiB/conn; idle: {idle}",
            r.name(),
            r.connected,
            r.connect_s,
            r.rss_idle_kib_per_conn,
        );
    }
    format!(
        "bench: {}: connected {} in {:.2}s, RSS {:.1} KiB/conn, CPU {:.2} µs/frame{}, {:.3} CPU-s per million messages, clients CPU {:.2} s, excess p50 / p90 / p99 / max {:.1} / {:.1} / {:.1} / {:.1} ms (median batch's p99 {:.1} ms{}{}; gateway fan-out p99 ≤ {:.1} ms{}), to arrival {:.1} / {:.1} / {:.1} / {:.1} ms (median batch's p99 {:.1} ms{}), {} of {} messages, {:.2} serializations/batch, publish round trip p50 / p99 / max {:.1} / {:.1} / {:.1} ms, host steal {:.0} ms",
        r.name(),
        r.connected,
        r.connect_s,
        r.rss_idle_kib_per_conn,
        r.cpu_us_per_frame,
        r.cpu_ratio_to_bare.map(|x| format!(" ({x:.2}× bare)")).unwrap_or_default(),
        r.cpu_s_per_million_messages,
        r.clients_cpu_s,
        r.excess_p50_ms,
        r.excess_p90_ms,
        r.excess_p99_ms,
        r.excess_max_ms,
        r.batch_p99_median_ms,
        worst_batch(r),
        r.batch_cpu_floor_ms
            .map(|f| format!("; gateway + clients CPU per batch ÷ cores: {f:.1} ms{}", without_code(r)))
            .unwrap_or_default(),
        r.gateway_fanout_p99_ms,
        r.bare
            .as_ref()
            .map(|b| format!("; bare write to the same readers: p50 {:.1} ms, p99 {:.1} ms, median round's p99 {:.1} ms", b.latency_p50_ms, b.latency_p99_ms, super::median_p99(&b.per_round_ms)))
            .unwrap_or_default(),
        r.arrival_ms[0],
        r.arrival_ms[1],
        r.arrival_ms[2],
        r.arrival_ms[3],
        r.arrival_batch_p99_median_ms,
        r.bare
            .as_ref()
            .map(|b| format!("; bare write: p99 {:.1} ms, median round's p99 {:.1} ms", b.arrival_p99_ms, super::median_p99(&b.per_round_arrival_ms)))
            .unwrap_or_default(),
        r.messages_delivered,
        r.messages_expected,
        r.serializations_per_batch,
        r.publish_rtt_ms[0],
        r.publish_rtt_ms[1],
        r.publish_rtt_ms[2],
        r.steal_ms,
    )
}

/// The `compare-*` scenarios side by side: the same load on Pushfleet and its peers.
fn comparison(results: &[Outcome]) -> String {
    let rows: Vec<&Outcome> = results
        .iter()
        .filter(|r| r.name().starts_with("compare-"))
        .collect();
    let Some(pf) = rows.iter().find(|r| r.name() == "compare-pushfleet") else {
        return String::new();
    };
    let mut s = String::from(
        "\n## Same load, Pushfleet and its peers\n\nOne channel, every connection subscribed, the same messages at the same rate to each server. Pushfleet (Redis bus, 1 s window) and Socket.IO 4 + Redis adapter get them straight from Redis (Pushfleet's envelope; the `@socket.io/redis-emitter` format), the plain Node `ws` broadcaster (no bus) over HTTP; the peers send one frame per message. Server CPU = its threads' `se.sum_exec_runtime` over the publish phase plus a 3 s catch-up.\n\n| server | conns | msgs delivered / expected | server CPU s | msgs per CPU-s | Pushfleet's advantage | RSS KiB/conn | latency p50 / p99 ms | clients CPU s |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in &rows {
        s.push_str(&format!(
            "| {} | {} | {} / {} | {:.2} | {:.0} | {:.1} × | {:.1} | {:.1} / {:.1} | {:.2} |\n",
            r.name().trim_start_matches("compare-"),
            r.connected,
            r.messages_delivered,
            r.messages_expected,
            r.gateway_cpu_s,
            r.messages_per_cpu_s,
            pf.messages_per_cpu_s / r.messages_per_cpu_s.max(1e-9),
            r.rss_idle_kib_per_conn,
            r.latency_p50_ms,
            r.latency_p99_ms,
            r.clients_cpu_s,
        ));
    }
    s
}

/// The gateway build a run measured: its GNU build ID before the first scenario and after
/// the last (they differ when the binary was replaced during the run).
pub struct Build {
    pub id: Option<String>,
    pub at_end: Option<String>,
}

impl Build {
    /// "gateway build b0a67de99cf4", the ID's first 12 hex digits (the JSON has it whole).
    fn describe(&self) -> String {
        let short = |id: &Option<String>| {
            id.as_deref()
                .map_or_else(|| "unknown".to_owned(), |h| h.chars().take(12).collect())
        };
        if self.id == self.at_end {
            format!("gateway build {}", short(&self.id))
        } else {
            format!(
                "gateway build {}, **replaced during the run** ({} at its end)",
                short(&self.id),
                short(&self.at_end)
            )
        }
    }
}

pub fn markdown(
    stamp: &str,
    size: &str,
    command: &str,
    host: &Host,
    build: &Build,
    results: &[Outcome],
) -> String {
    let mut s = format!(
        "# Pushfleet benchmark {stamp} ({size})\n\nCommand: `{command}` (release build; {}). Machine: {}, kernel {}; one system call (`getppid`) {:.0} ns.\n\n",
        build.describe(),
        host.machine,
        host.kernel,
        host.syscall_ns
    );
    s.push_str(&super::goals::markdown(&super::goals::evaluate(results)));
    s.push_str("## Scenarios\n\n");
    s.push_str("| scenario | conns | connect s | RSS KiB/conn | msgs delivered / expected | frames | CPU µs/frame | CPU s per M msgs | bare µs/write (WS readers) | ratio | bare µs/write (raw readers) | ser/batch | excess p50 / p90 / p99 / max ms | to arrival p50 / p90 / p99 / max ms | latency p50 / p99 ms | slow closes | publish round trip p99 / max ms |\n");
    s.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for r in results {
        let bare = r
            .bare
            .as_ref()
            .map_or("–".into(), |b| format!("{:.2}", b.cpu_us_per_write));
        let ratio = r
            .cpu_ratio_to_bare
            .map_or("–".into(), |x| format!("{x:.2}"));
        let bare_raw = r
            .bare_raw
            .as_ref()
            .map_or("–".into(), |b| format!("{:.2}", b.cpu_us_per_write));
        s.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {} / {} | {} | {:.2} | {:.3} | {} | {} | {} | {:.2} | {:.1} / {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} / {:.1} | {:.1} / {:.1} | {} | {:.1} / {:.1} |\n",
            r.name(),
            r.connected,
            r.connect_s,
            r.rss_idle_kib_per_conn,
            r.messages_delivered,
            r.messages_expected,
            r.frames_delivered,
            r.cpu_us_per_frame,
            r.cpu_s_per_million_messages,
            bare,
            ratio,
            bare_raw,
            r.serializations_per_batch,
            r.excess_p50_ms,
            r.excess_p90_ms,
            r.excess_p99_ms,
            r.excess_max_ms,
            r.arrival_ms[0],
            r.arrival_ms[1],
            r.arrival_ms[2],
            r.arrival_ms[3],
            r.latency_p50_ms,
            r.latency_p99_ms,
            r.slow_consumer_closes,
            r.publish_rtt_ms[1],
            r.publish_rtt_ms[2],
        ));
    }
    s.push_str(&format!("\n`excess` = receive time − first message's publish time − merge window, per batch and connection; `to arrival`, the same from the time the kernel queued the frame on the client's socket (`SO_TIMESTAMPNS`) instead of the time the client read it. Publish round trip: each publish, request sent → answer read (a publish the gateway reads late, during a fan-out, opens its batch's window that much late). CPU = the gateway process(es)' threads' `se.sum_exec_runtime` (/proc/<pid>/task/*/sched) over the publish phase (+ window + 1.5 s), divided by `pushfleet_frames_sent_total`. The bare write's readers are the same WebSocket clients (ratio's base); raw readers read and discard. Load generator: worker processes of ≤ 5,000 connections, at least one per core, under {}.\n", clients_policy(results)));
    s.push_str(&idle_costs(results));
    s.push_str(&stalled_readers(results));
    s.push_str(&by_connections(results));
    s.push_str(&by_batch(results));
    s.push_str(&comparison(results));
    s
}

/// The client processes' scheduling policy in words (one `bench run` uses one).
fn clients_policy(results: &[Outcome]) -> &'static str {
    let sched = results
        .iter()
        .find_map(|r| r.scenario.as_ref())
        .map(|s| s.clients)
        .unwrap_or_default();
    match sched {
        super::worker::ClientSched::Batch => "SCHED_BATCH",
        super::worker::ClientSched::Idle => {
            "SCHED_IDLE (`--clients idle`: they read when the gateway leaves a core idle, so read the arrival figures)"
        }
    }
}

/// The scenarios with stalled connections (and their control, the same load with none
/// stalled): what the gateway did with the stalled ones and what the readers got.
fn stalled_readers(results: &[Outcome]) -> String {
    let rows: Vec<(&Outcome, &super::Scenario)> = results
        .iter()
        .filter_map(|r| Some((r, r.scenario.as_ref()?)))
        .filter(|(_, s)| s.queue_frames.is_some() && s.server == super::worker::Protocol::Pushfleet)
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n## Stalled readers\n\nSome connections stop reading once subscribed, as clients whose network stalled; the others read on. A stalled socket's buffers fill, then its outbox of `--queue-frames` frames, and the gateway closes it with 1013 (`slow_consumer`); the readers' figures are to be compared with the same load with none stalled.\n\n| scenario | conns | stalled | `--queue-frames` | closed as slow consumers | frames queued | readers' messages delivered / expected | read p50 / p99 / max ms | to arrival p99 ms | gateway CPU µs/frame |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (r, sc) in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} / {} | {:.1} / {:.1} / {:.1} | {:.1} | {:.2} |\n",
            sc.name,
            r.connected,
            sc.stalled,
            sc.queue_frames.unwrap_or_default(),
            r.slow_consumer_closes,
            r.frames_queued,
            r.messages_delivered,
            r.messages_expected,
            r.excess_p50_ms,
            r.excess_p99_ms,
            r.excess_max_ms,
            r.arrival_ms[2],
            r.cpu_us_per_frame,
        ));
    }
    s
}

/// The idle scenarios' CPU per ping, a line each.
fn idle_costs(results: &[Outcome]) -> String {
    let lines: Vec<String> = results
        .iter()
        .filter_map(|r| Some(format!("- {}: {}.\n", r.name(), idle_cost_text(r)?)))
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    format!(
        "\n## Idle connections\n\nGateway CPU (`se.sum_exec_runtime`) over two ping intervals while every connection is subscribed and nothing is published, divided by `pushfleet_pings_sent_total` over the same window: each ping's write, its pong's read and the timer, which is all an idle connection costs.\n\n{}",
        lines.concat()
    )
}

/// Each batch's p99 excess next to each bare round's p99, for the scenarios with a
/// baseline: whether a run's p99 is every batch's tail or one slow batch's.
fn by_batch(results: &[Outcome]) -> String {
    let rows: Vec<&Outcome> = results
        .iter()
        .filter(|r| r.bare.is_some() && !r.per_batch_excess_ms.is_empty())
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let p99s = |v: &[[f64; 3]]| {
        v.iter()
            .map(|b| format!("{:.0}", b[1]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = String::from(
        "\n## p99 by batch\n\nEach batch's p99 excess over its connections, in publish order; when each batch had reached the first 1 % of its connections (p1 to arrival on the socket: when its fan-out started, so a slow batch that started late was held up before its writes, one that started on time during them); all the CPU gateway and clients spent per batch spread over the machine's cores (no batch can reach its last client sooner while they share the cores); the same without the gateway's user-mode CPU (its `stime` + the clients' CPU: about what a batch would take if the gateway's own code cost nothing; the kernel's tick split undercounts user time, so up to a few ms high); and each bare-write round's p99 to the same number of readers (ms); last, the CPU time the hypervisor kept from the machine (`steal` of /proc/stat, both cores, 10 ms resolution) during each batch's fan-out, from its window's close to its p99, and over the whole publish phase: a slow batch with steal lost cores to the host.\n\n| scenario | gateway, per batch | median | first 1 % arrived, per batch | (gateway + clients CPU) per batch ÷ cores | without the gateway's user-mode CPU | bare write, per round | median | steal in the fan-out, per batch | steal, publish phase |\n| --- | --- | ---: | --- | ---: | ---: | --- | ---: | --- | ---: |\n",
    );
    for r in rows {
        let bare = r
            .bare
            .as_ref()
            .map(|b| b.per_round_ms.as_slice())
            .unwrap_or_default();
        s.push_str(&format!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {:.1} | {} | {:.0} |\n",
            r.name(),
            p99s(&r.per_batch_excess_ms),
            r.batch_p99_median_ms,
            r.per_batch_arrival_start_ms
                .iter()
                .map(|v| format!("{v:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            r.batch_cpu_floor_ms
                .map_or("–".into(), |f| format!("{f:.1}")),
            r.batch_floor_without_gateway_code_ms
                .map_or("–".into(), |f| format!("{f:.1}")),
            p99s(bare),
            super::median_p99(bare),
            r.per_batch_steal_ms
                .iter()
                .map(|v| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            r.steal_ms,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario of `size` as if it had run and sent frames.
    fn ran(size: &str) -> Vec<Outcome> {
        crate::bench::scenarios(size)
            .into_iter()
            .map(|s| Outcome {
                connected: s.conns as u64,
                gateway_frames_sent: 1.0,
                scenario: Some(s),
                ..Default::default()
            })
            .collect()
    }

    fn names(v: &[&Outcome]) -> Vec<String> {
        v.iter().map(|o| o.name()).collect()
    }

    #[test]
    fn the_header_names_the_gateway_build_and_a_replacement_during_the_run() {
        let id = |h: &str| Some(h.to_owned());
        let same = Build {
            id: id("b0a67de99cf4552756de"),
            at_end: id("b0a67de99cf4552756de"),
        };
        assert_eq!(same.describe(), "gateway build b0a67de99cf4");
        let swapped = Build {
            id: id("b0a67de99cf4552756de"),
            at_end: id("0123456789abcdef"),
        };
        assert_eq!(
            swapped.describe(),
            "gateway build b0a67de99cf4, **replaced during the run** (0123456789ab at its end)"
        );
        let none = Build {
            id: None,
            at_end: None,
        };
        assert_eq!(none.describe(), "gateway build unknown");
    }

    #[test]
    fn the_sweep_is_the_same_load_at_each_connection_count() {
        let full = ran("full");
        assert!(
            full.iter().any(|o| o.name() == "fanout-15k-redis"),
            "the Redis-ingest variant is a full scenario"
        );
        // Not the 4.6 KB frames, not the Redis-ingest variant, not the fleet: those
        // differ in more than the connection count.
        assert_eq!(
            names(&sweep(&full)),
            ["fanout-1k", "fanout-3k", "fanout-7.5k", "fanout-15k"]
        );
        assert_eq!(names(&sweep(&ran("quick"))), ["fanout-3k"]);
    }
}
