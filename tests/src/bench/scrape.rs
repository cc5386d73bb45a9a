//! What the bench reads from the gateways' `/metrics`: counter sums, histogram buckets
//! and their quantiles, flushed batches, and the CPU idle connections cost.

use std::time::Duration;

use super::{proc_cpu_s, IdleCost};
use crate::Gateway;

/// The gateways' CPU and pings over two ping intervals of an idle scenario.
pub(super) async fn idle_cost(gws: &[Gateway], interval_s: u64) -> IdleCost {
    let window = Duration::from_secs(2 * interval_s);
    let cpu0: f64 = gws.iter().map(|g| proc_cpu_s(g.pid())).sum();
    let pings0 = sum_metric(gws, "pushfleet_pings_sent_total", "").await;
    let t0 = std::time::Instant::now();
    // Measurement window, not synchronisation: two rounds of pings to every connection.
    tokio::time::sleep(window).await;
    let gateway_cpu_s = gws.iter().map(|g| proc_cpu_s(g.pid())).sum::<f64>() - cpu0;
    let pings = sum_metric(gws, "pushfleet_pings_sent_total", "").await - pings0;
    IdleCost {
        ping_interval_s: interval_s,
        window_s: t0.elapsed().as_secs_f64(),
        pings,
        gateway_cpu_s,
        cpu_us_per_ping: gateway_cpu_s * 1e6 / pings.max(1.0),
    }
}

pub(super) async fn sum_metric(gws: &[Gateway], name: &str, labels: &str) -> f64 {
    let mut t = 0.0;
    for g in gws {
        t += g.metric(name, labels).await;
    }
    t
}

/// Cumulative `(upper bound, count)` buckets of a histogram, summed over the gateways.
pub(super) async fn buckets(gws: &[Gateway], name: &str) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for g in gws {
        let text = crate::http::get(g.internal, "/metrics").await.body;
        let prefix = format!("{name}_bucket{{le=\"");
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else {
                continue;
            };
            let Some((le, count)) = rest.split_once("\"} ") else {
                continue;
            };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            let count: f64 = count.trim().parse().unwrap_or(0.0);
            match out.iter_mut().find(|(b, _)| *b == le) {
                Some(e) => e.1 += count,
                None => out.push((le, count)),
            }
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The upper bound of the bucket holding quantile `q` of the observations made between
/// two bucket snapshots (the resolution of the histogram's buckets).
pub(super) fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| {
            let b = before.iter().find(|(l, _)| l == le).map_or(0.0, |x| x.1);
            (*le, c - b)
        })
        .collect();
    let total = delta.last().map_or(0.0, |x| x.1);
    if total <= 0.0 {
        return 0.0;
    }
    delta
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map_or(f64::INFINITY, |x| x.0)
}

pub(super) async fn batches(gws: &[Gateway]) -> f64 {
    let mut t = 0.0;
    for trig in ["window", "count", "bytes", "immediate"] {
        t += sum_metric(
            gws,
            "pushfleet_batches_flushed_total",
            &format!("trigger=\"{trig}\""),
        )
        .await;
    }
    t
}
