//! Prometheus metrics, passed in (no global registry), so each test gets its own.
//!
//! Names are prefixed `pushfleet_`; counters get `_total` from the encoder.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// One label pair, e.g. `[("reason", "slow_consumer")]`.
pub type Label = [(&'static str, &'static str); 1];

/// Every metric the gateway exports. Cheap to clone (all fields are `Arc`s inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// WebSocket connections accepted since start.
    pub connections_accepted: Counter,
    /// Upgrades refused, by reason (`server_full`, `draining`, `bad_handshake`, `origin`).
    pub connections_rejected: Family<Label, Counter>,
    /// Connections closed by the server, by reason (`slow_consumer`, `idle`, `too_big`,
    /// `protocol`, `drain`).
    pub connections_closed: Family<Label, Counter>,
    /// Current (connection, channel) subscriptions.
    pub subscriptions: Gauge,
    /// Channels with at least one local subscriber.
    pub channels: Gauge,
    /// Messages that reached the merger from the bus.
    pub messages_in: Counter,
    /// Messages dropped before fan-out, by reason (`no_subscribers`).
    pub messages_dropped: Family<Label, Counter>,
    /// Batches flushed by the merger, by trigger (`window`, `count`, `bytes`, `shutdown`).
    pub batches_flushed: Family<Label, Counter>,
    /// Batch serializations, by encoding; equals batches × encodings in use.
    pub serializations: Family<Label, Counter>,
    /// Frames handed to sockets (batches and replies): written, or queued in the
    /// connection's outbox; not those a full outbox refused or a failed socket dropped.
    pub frames_sent: Counter,
    /// Payload bytes of those frames.
    pub bytes_sent: Counter,
    /// Batch frames the socket did not take at once (finished by the connection's session).
    pub frames_queued: Counter,
    /// Server pings sent (`--ping-interval-secs`); not counted in `frames_sent`.
    pub pings_sent: Counter,
    /// Client commands refused, by error code.
    pub command_errors: Family<Label, Counter>,
    /// `POST /api/publish` requests, by HTTP status.
    pub publish_requests: Family<[(&'static str, String); 1], Counter>,
    /// Seconds spent encoding a batch and handing it to the shards that have subscribers.
    pub flush_duration: Histogram,
    /// Seconds from a batch's hand-off to a shard until that shard has offered it to
    /// every subscriber (queue wait + the shard's writes), one observation per shard.
    pub fanout_duration: Histogram,
    /// 1 when the bus is connected.
    pub bus_up: Gauge,
    /// Reconnect attempts of the bus subscriber.
    pub bus_reconnects: Counter,
    /// Full resubscriptions after the change queue overflowed.
    pub bus_resyncs: Counter,
    /// Reads of the bus subscriber held back while messages kept coming and done at once
    /// by the pacing timer (`bus::redis`, "Paced reads").
    pub bus_paced_reads: Counter,
    /// Channels subscribed on the bus (Redis) by this gateway.
    pub bus_subscribed_channels: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("pushfleet");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            connections: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_rejected: Family::default(),
            connections_closed: Family::default(),
            subscriptions: Gauge::default(),
            channels: Gauge::default(),
            messages_in: Counter::default(),
            messages_dropped: Family::default(),
            batches_flushed: Family::default(),
            serializations: Family::default(),
            frames_sent: Counter::default(),
            bytes_sent: Counter::default(),
            frames_queued: Counter::default(),
            pings_sent: Counter::default(),
            command_errors: Family::default(),
            publish_requests: Family::default(),
            flush_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            // 0.5 ms to ~1.4 s in steps of √2.
            fanout_duration: Histogram::new(exponential_buckets(
                0.0005,
                std::f64::consts::SQRT_2,
                24,
            )),
            bus_up: Gauge::default(),
            bus_reconnects: Counter::default(),
            bus_resyncs: Counter::default(),
            bus_paced_reads: Counter::default(),
            bus_subscribed_channels: Gauge::default(),
        };
        r.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        r.register(
            "connections_accepted",
            "WebSocket connections accepted",
            m.connections_accepted.clone(),
        );
        r.register(
            "connections_rejected",
            "WebSocket upgrades refused, by reason",
            m.connections_rejected.clone(),
        );
        r.register(
            "connections_closed",
            "Connections closed by the server, by reason",
            m.connections_closed.clone(),
        );
        r.register(
            "subscriptions",
            "Connection-channel subscriptions",
            m.subscriptions.clone(),
        );
        r.register(
            "channels",
            "Channels with local subscribers",
            m.channels.clone(),
        );
        r.register(
            "messages_in",
            "Messages received from the bus",
            m.messages_in.clone(),
        );
        r.register(
            "messages_dropped",
            "Messages dropped before fan-out, by reason",
            m.messages_dropped.clone(),
        );
        r.register(
            "batches_flushed",
            "Batches flushed, by trigger",
            m.batches_flushed.clone(),
        );
        r.register(
            "serializations",
            "Batch serializations, by encoding",
            m.serializations.clone(),
        );
        r.register(
            "frames_sent",
            "Frames written to sockets",
            m.frames_sent.clone(),
        );
        r.register(
            "bytes_sent",
            "Payload bytes written to sockets",
            m.bytes_sent.clone(),
        );
        r.register(
            "frames_queued",
            "Batch frames the socket did not take at once",
            m.frames_queued.clone(),
        );
        r.register(
            "pings_sent",
            "Server pings sent to clients",
            m.pings_sent.clone(),
        );
        r.register(
            "command_errors",
            "Client commands refused, by code",
            m.command_errors.clone(),
        );
        r.register(
            "publish_requests",
            "Publish API requests, by status",
            m.publish_requests.clone(),
        );
        r.register(
            "flush_duration_seconds",
            "Time to encode a batch and hand it to the shards with subscribers",
            m.flush_duration.clone(),
        );
        r.register(
            "fanout_duration_seconds",
            "Time from a batch's hand-off to a shard until the shard offered it to every subscriber",
            m.fanout_duration.clone(),
        );
        r.register("bus_up", "1 when the bus is connected", m.bus_up.clone());
        r.register(
            "bus_reconnects",
            "Bus reconnect attempts",
            m.bus_reconnects.clone(),
        );
        r.register(
            "bus_resyncs",
            "Full bus resubscriptions after the change queue overflowed",
            m.bus_resyncs.clone(),
        );
        r.register(
            "bus_paced_reads",
            "Bus subscriber reads held back while messages kept coming, then done by the pacing timer",
            m.bus_paced_reads.clone(),
        );
        r.register(
            "bus_subscribed_channels",
            "Channels this gateway subscribes to on the bus",
            m.bus_subscribed_channels.clone(),
        );
        Metrics {
            registry: Arc::new(r),
            ..m
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads one sample from a Prometheus text exposition: `name` with the exact label text
/// (e.g. `encoding="json"`), or without labels when `labels` is empty. Used by tests and
/// by the benchmark.
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = if labels.is_empty() {
            rest.strip_prefix(' ')?
        } else {
            let inner = rest.strip_prefix('{')?;
            let (lab, value) = inner.split_once("} ")?;
            if !lab.split(',').any(|l| l == labels) {
                return None;
            }
            value
        };
        rest.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_and_sample() {
        let m = Metrics::new();
        m.frames_sent.inc_by(3);
        m.serializations
            .get_or_create(&[("encoding", "json")])
            .inc();
        let text = m.render();
        assert_eq!(sample(&text, "pushfleet_frames_sent_total", ""), Some(3.0));
        assert_eq!(
            sample(&text, "pushfleet_serializations_total", "encoding=\"json\""),
            Some(1.0)
        );
        assert!(text.contains("pushfleet_flush_duration_seconds_bucket"));
    }
}
