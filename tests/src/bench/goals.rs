//! The run's figures against DESIGN §5's goals: one row per goal and scenario that
//! measures it, with its verdict. A goal that no scenario of the run measures has no row.
//!
//! The goals are stated for 15,000 connections; a run without a 15,000-connection scenario
//! (`make bench-quick`) is judged at its largest, and the verdict says so.

use super::{worker::Protocol, Outcome};

/// The connection count DESIGN §5's goals are stated for.
pub const GOAL_CONNS: u64 = 15_000;

/// How a figure stands against its goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    /// Within the must but not the aim (RSS per idle connection: ≤ 8 KiB, not ≤ 4 KiB).
    MustOnly,
    NotMet,
}

/// One goal, measured by one scenario.
#[derive(Debug, Clone)]
pub struct Row {
    pub goal: &'static str,
    pub target: &'static str,
    pub scenario: String,
    /// Connections of the measuring scenario.
    pub conns: u64,
    pub result: String,
    pub verdict: Verdict,
    /// The goal is stated at [`GOAL_CONNS`] and this row measured it at `conns`.
    pub scaled_down: bool,
}

impl Row {
    pub fn verdict_text(&self) -> String {
        let v = match self.verdict {
            Verdict::Met => "met",
            Verdict::MustOnly => "must met, aim missed",
            Verdict::NotMet => "**not met**",
        };
        if self.scaled_down {
            format!(
                "{v} at {} connections (the goal is at 15,000)",
                thousands(self.conns)
            )
        } else {
            v.to_owned()
        }
    }
}

/// `15000` → `15,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The p99 goals again, to the frame's arrival on the client's socket (the kernel's
/// receive timestamp) rather than to the client's read: the clients share the gateway's
/// two cores, and a frame that has arrived can still wait for its reader to be scheduled.
const ARRIVAL_WINDOW: &str = "p99 publish → arrival on the client's socket, minus the window";
const ARRIVAL_NO_WINDOW: &str = "p99 publish → arrival on the client's socket, window 0";

fn pushfleet(r: &Outcome) -> bool {
    r.scenario
        .as_ref()
        .is_some_and(|s| s.server == Protocol::Pushfleet)
}

fn at_most(value: f64, goal: f64) -> Verdict {
    if value <= goal {
        Verdict::Met
    } else {
        Verdict::NotMet
    }
}

/// Every goal the run measured, in DESIGN §5's order.
pub fn evaluate(results: &[Outcome]) -> Vec<Row> {
    let mut rows = Vec::new();
    let row = |goal, target, r: &Outcome, result: String, verdict, scoped: bool| Row {
        goal,
        target,
        scenario: r.name(),
        conns: r.connected,
        result,
        verdict,
        scaled_down: scoped && r.connected < GOAL_CONNS,
    };

    // Memory and accepting: the idle scenarios (subscribed, nothing published).
    let idle: Vec<&Outcome> = results
        .iter()
        .filter(|r| pushfleet(r) && r.scenario.as_ref().is_some_and(|s| s.rate == 0))
        .collect();
    for r in &idle {
        let kib = r.rss_idle_kib_per_conn;
        let verdict = if kib <= 4.0 {
            Verdict::Met
        } else if kib <= 8.0 {
            Verdict::MustOnly
        } else {
            Verdict::NotMet
        };
        rows.push(row(
            "gateway RSS per idle connection",
            "≤ 4 KiB (must ≤ 8 KiB)",
            r,
            format!("{kib:.2} KiB"),
            verdict,
            true,
        ));
    }

    // CPU per frame and p99: the one-gateway scenarios with a bare-write baseline, at the
    // largest connection count the run has.
    let with_bare: Vec<&Outcome> = results
        .iter()
        .filter(|r| pushfleet(r) && r.cpu_ratio_to_bare.is_some())
        .collect();
    let largest = with_bare.iter().map(|r| r.connected).max().unwrap_or(0);
    let at_largest = || with_bare.iter().filter(|r| r.connected == largest);
    for r in at_largest() {
        let (Some(ratio), Some(bare)) = (r.cpu_ratio_to_bare, r.bare.as_ref()) else {
            continue;
        };
        rows.push(row(
            "gateway CPU per delivered frame",
            "≤ 1.3 × a bare socket write, same run",
            r,
            format!(
                "{:.2} µs vs {:.2} µs = {ratio:.2} ×",
                r.cpu_us_per_frame, bare.cpu_us_per_write
            ),
            at_most(ratio, 1.3),
            true,
        ));
    }

    let flushed: Vec<&Outcome> = results
        .iter()
        .filter(|r| pushfleet(r) && r.batches > 0.0)
        .collect();
    if !flushed.is_empty() {
        let per_batch = |r: &&Outcome| r.serializations_per_batch;
        let lo = flushed.iter().map(per_batch).fold(f64::INFINITY, f64::min);
        let hi = flushed.iter().map(per_batch).fold(0.0, f64::max);
        // Exactly one, as the summary shows it (two decimals).
        let exact = |x: f64| (x - 1.0).abs() < 0.005;
        rows.push(Row {
            goal: "serializations per flushed batch",
            target: "exactly 1 per encoding in use",
            scenario: format!("all {} that flushed batches", flushed.len()),
            conns: 0,
            result: format!("{lo:.2}–{hi:.2}"),
            verdict: if exact(lo) && exact(hi) {
                Verdict::Met
            } else {
                Verdict::NotMet
            },
            scaled_down: false,
        });
    }

    for r in at_largest().filter(|r| r.scenario.as_ref().is_some_and(|s| s.window_ms > 0)) {
        let without = r
            .batch_floor_without_gateway_code_ms
            .map_or(String::new(), |k| {
                format!(", {k:.1} ms without the gateway's user-mode CPU")
            });
        let floor = r.batch_cpu_floor_ms.map_or(String::new(), |f| {
            format!(", CPU floor per batch {f:.1} ms{without}")
        });
        rows.push(row(
            "p99 publish → deliver, minus the window",
            "≤ 100 ms at 15,000 connections",
            r,
            format!(
                "{:.1} ms (median batch {:.1} ms{floor})",
                r.excess_p99_ms, r.batch_p99_median_ms
            ),
            at_most(r.excess_p99_ms, 100.0),
            true,
        ));
        rows.push(row(
            ARRIVAL_WINDOW,
            "≤ 100 ms at 15,000 connections",
            r,
            format!(
                "{:.1} ms (median batch {:.1} ms)",
                r.arrival_ms[2], r.arrival_batch_p99_median_ms
            ),
            at_most(r.arrival_ms[2], 100.0),
            true,
        ));
    }
    for r in results.iter().filter(|r| {
        pushfleet(r)
            && r.connected == 500
            && r.messages_delivered > 0
            && r.scenario.as_ref().is_some_and(|s| s.window_ms == 0)
    }) {
        rows.push(row(
            "p99 publish → deliver, window 0",
            "≤ 5 ms at 500 connections",
            r,
            format!("{:.1} ms (p50 {:.1} ms)", r.excess_p99_ms, r.excess_p50_ms),
            at_most(r.excess_p99_ms, 5.0),
            false,
        ));
        rows.push(row(
            ARRIVAL_NO_WINDOW,
            "≤ 5 ms at 500 connections",
            r,
            format!("{:.1} ms (p50 {:.1} ms)", r.arrival_ms[2], r.arrival_ms[0]),
            at_most(r.arrival_ms[2], 5.0),
            false,
        ));
    }

    for r in &idle {
        // With `--ramp`, the time is mostly the ramp's, and the row says so.
        let ramp = r
            .scenario
            .as_ref()
            .and_then(|s| s.ramp)
            .map_or(String::new(), |n| {
                format!(" (opened at {} per second: `--ramp`)", thousands(n.into()))
            });
        rows.push(row(
            "time to accept the connections",
            "≤ 5 s for 15,000",
            r,
            format!("{:.2} s{ramp}", r.connect_s),
            at_most(r.connect_s, 5.0),
            true,
        ));
    }

    // The same load on Pushfleet and Socket.IO (compare-pushfleet, compare-socketio).
    let server = |p: Protocol| {
        results.iter().find(|r| {
            r.scenario
                .as_ref()
                .is_some_and(|s| s.server == p && s.name.starts_with("compare-"))
        })
    };
    if let (Some(pf), Some(sio)) = (server(Protocol::Pushfleet), server(Protocol::Socketio)) {
        if sio.messages_per_cpu_s > 0.0 {
            let x = pf.messages_per_cpu_s / sio.messages_per_cpu_s;
            rows.push(row(
                "delivered messages per CPU-second vs Socket.IO + Redis adapter",
                "≥ 50 ×, same load",
                pf,
                format!(
                    "{x:.1} × ({:.0} vs {:.0})",
                    pf.messages_per_cpu_s, sio.messages_per_cpu_s
                ),
                if x >= 50.0 {
                    Verdict::Met
                } else {
                    Verdict::NotMet
                },
                false,
            ));
        }
    }
    rows
}

/// The rows as the summary's "Goals" table.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "## Goals (DESIGN §5)\n\n| goal | target | scenario | conns | result | verdict |\n| --- | --- | --- | ---: | --- | --- |\n",
    );
    for r in rows {
        let conns = if r.conns > 0 {
            r.conns.to_string()
        } else {
            "–".into()
        };
        s.push_str(&format!(
            "| {} | {} | {} | {conns} | {} | {} |\n",
            r.goal,
            r.target,
            r.scenario,
            r.result,
            r.verdict_text()
        ));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{bare::BareReport, scenarios};

    /// The full run's scenarios, as if they had run, each shaped by `f`.
    fn run(size: &str, f: impl Fn(&str, &mut Outcome)) -> Vec<Outcome> {
        scenarios(size)
            .into_iter()
            .map(|s| {
                let mut o = Outcome {
                    connected: s.conns as u64,
                    scenario: Some(s.clone()),
                    ..Default::default()
                };
                if s.window_ms > 0 && s.rate > 0 {
                    o.batches = 10.0;
                    o.serializations_per_batch = 1.0;
                }
                if s.baseline {
                    o.bare = Some(BareReport {
                        cpu_us_per_write: 10.0,
                        ..Default::default()
                    });
                    o.cpu_ratio_to_bare = Some(1.0);
                }
                f(&s.name, &mut o);
                o
            })
            .collect()
    }

    fn find<'a>(rows: &'a [Row], goal: &str, scenario: &str) -> &'a Row {
        rows.iter()
            .find(|r| r.goal.starts_with(goal) && r.scenario == scenario)
            .unwrap_or_else(|| panic!("no row {goal} / {scenario} in {rows:#?}"))
    }

    #[test]
    fn each_goal_is_judged_from_the_scenario_that_measures_it() {
        let rows = evaluate(&run("full", |name, o| match name {
            "idle-15k" => {
                o.rss_idle_kib_per_conn = 3.7;
                o.connect_s = 1.4;
            }
            "fanout-15k" => {
                o.cpu_ratio_to_bare = Some(1.25);
                o.excess_p99_ms = 116.3;
                o.arrival_ms = [50.0, 80.0, 99.5, 120.0];
            }
            "fanout-15k-small" => {
                o.cpu_ratio_to_bare = Some(1.34);
                o.excess_p99_ms = 97.3;
            }
            "latency-500" => {
                o.messages_delivered = 500_000;
                o.excess_p99_ms = 3.2;
                o.arrival_ms = [1.0, 2.0, 5.5, 6.0];
            }
            "compare-pushfleet" => o.messages_per_cpu_s = 9_000_000.0,
            "compare-socketio" => o.messages_per_cpu_s = 100_000.0,
            _ => {}
        }));
        let v = |goal, sc| find(&rows, goal, sc).verdict;
        assert_eq!(v("gateway RSS", "idle-15k"), Verdict::Met);
        assert_eq!(v("time to accept", "idle-15k"), Verdict::Met);
        assert_eq!(v("gateway CPU", "fanout-15k"), Verdict::Met);
        assert_eq!(v("gateway CPU", "fanout-15k-small"), Verdict::NotMet);
        assert_eq!(v("gateway CPU", "fanout-15k-redis"), Verdict::Met);
        assert_eq!(
            v("p99 publish → deliver, minus", "fanout-15k"),
            Verdict::NotMet
        );
        assert_eq!(
            v("p99 publish → deliver, minus", "fanout-15k-small"),
            Verdict::Met
        );
        assert_eq!(
            v("p99 publish → deliver, window 0", "latency-500"),
            Verdict::Met
        );
        // The arrival rows are judged on their own figure.
        assert_eq!(v(ARRIVAL_WINDOW, "fanout-15k"), Verdict::Met);
        assert_eq!(
            find(&rows, ARRIVAL_WINDOW, "fanout-15k").result,
            "99.5 ms (median batch 0.0 ms)"
        );
        assert_eq!(v(ARRIVAL_NO_WINDOW, "latency-500"), Verdict::NotMet);
        let vs = find(&rows, "delivered messages", "compare-pushfleet");
        assert_eq!(vs.verdict, Verdict::Met);
        assert!(vs.result.starts_with("90.0 ×"), "{}", vs.result);
        // Only the 15,000-connection runs judge CPU and p99; none is scaled down.
        assert!(!rows.iter().any(|r| r.scenario == "fanout-1k"));
        assert!(rows.iter().all(|r| !r.scaled_down));
        let md = markdown(&rows);
        assert!(md.contains("= 1.34 ×"), "{md}");
        assert!(md.contains("**not met**"), "{md}");
    }

    #[test]
    fn misses_are_not_met_and_a_smaller_run_says_so() {
        let rows = evaluate(&run("quick", |name, o| match name {
            "idle-3k" => {
                o.rss_idle_kib_per_conn = 6.0;
                o.connect_s = 6.0;
            }
            "fanout-3k" => o.serializations_per_batch = 2.0,
            "latency-500" => {
                o.messages_delivered = 1;
                o.excess_p99_ms = 5.1;
            }
            "compare-pushfleet" => o.messages_per_cpu_s = 4_000_000.0,
            "compare-socketio" => o.messages_per_cpu_s = 100_000.0,
            _ => {}
        }));
        let rss = find(&rows, "gateway RSS", "idle-3k");
        assert_eq!(rss.verdict, Verdict::MustOnly);
        assert!(rss.scaled_down);
        assert!(rss.verdict_text().contains("at 3,000 connections"));
        assert_eq!(
            find(&rows, "time to accept", "idle-3k").verdict,
            Verdict::NotMet
        );
        assert_eq!(find(&rows, "time to accept", "idle-3k").result, "6.00 s");
        let cpu = find(&rows, "gateway CPU", "fanout-3k");
        assert!(cpu.scaled_down, "the quick run's largest is 3,000");
        let ser = rows
            .iter()
            .find(|r| r.goal.starts_with("serializations"))
            .expect("serializations row");
        assert_eq!(ser.verdict, Verdict::NotMet);
        assert_eq!(ser.result, "1.00–2.00");
        assert_eq!(
            find(&rows, "p99 publish → deliver, window 0", "latency-500").verdict,
            Verdict::NotMet
        );
        assert_eq!(
            find(&rows, "delivered messages", "compare-pushfleet").verdict,
            Verdict::NotMet
        );
    }

    #[test]
    fn a_set_ramp_is_named_beside_the_accept_time() {
        let rows = evaluate(&run("full", |name, o| {
            if name == "idle-15k" {
                o.connect_s = 5.01;
                if let Some(s) = o.scenario.as_mut() {
                    s.ramp = Some(3_000);
                }
            }
        }));
        let accept = find(&rows, "time to accept", "idle-15k");
        assert_eq!(
            accept.result,
            "5.01 s (opened at 3,000 per second: `--ramp`)"
        );
        assert_eq!(accept.verdict, Verdict::NotMet);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(500), "500");
        assert_eq!(thousands(3_000), "3,000");
        assert_eq!(thousands(15_000), "15,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn goals_no_scenario_measured_have_no_row() {
        assert!(evaluate(&[]).is_empty());
        let only_fanout = run("full", |_, _| {})
            .into_iter()
            .filter(|o| o.scenario.as_ref().is_some_and(|s| s.name == "fanout-1k"))
            .collect::<Vec<_>>();
        let rows = evaluate(&only_fanout);
        assert!(rows.iter().all(|r| r.scenario != "idle-15k"));
        assert!(!rows
            .iter()
            .any(|r| r.goal.starts_with("delivered messages")));
        assert!(rows.iter().any(|r| r.goal.starts_with("gateway CPU")));
    }
}
