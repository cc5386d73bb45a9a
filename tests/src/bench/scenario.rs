//! The scenarios `bench run` measures (`full`, `quick`, and `tiny` for `make test`), and
//! how each one's connections are spread over client worker processes.

use serde::{Deserialize, Serialize};

use super::worker;

/// Padding bytes in the standard message (`Scenario::payload`).
pub const STANDARD_PAYLOAD: usize = 64;

/// Most connections one worker process opens (one process may hold ~20,000 files).
const PER_WORKER: usize = 5_000;

/// One benchmark scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub gateways: usize,
    pub conns: usize,
    pub channels: usize,
    /// Messages per second, in total over all channels (0: idle scenario).
    pub rate: u32,
    pub duration_s: u64,
    pub window_ms: u64,
    pub via_redis: bool,
    /// Padding bytes in each message.
    pub payload: usize,
    /// Also measure the bare-write baseline with the same frame and socket count.
    pub baseline: bool,
    /// The server under load: Pushfleet, or a peer it is compared with.
    #[serde(default)]
    pub server: worker::Protocol,
    /// Pushfleet on the Redis bus even with one gateway and HTTP publishing.
    #[serde(default)]
    pub redis_bus: bool,
    /// Connections opened per second, all workers together (`None`: each worker as fast
    /// as [`WORKER_CONNECT_RATE`] lets it).
    #[serde(default)]
    pub ramp: Option<u32>,
    /// The gateway's `--ping-interval-secs` (`None`: its default). An idle scenario that
    /// sets it also measures what idle connections cost: [`IdleCost`](super::IdleCost), over two intervals.
    #[serde(default)]
    pub ping_secs: Option<u64>,
    /// How the client processes are scheduled beside the gateway.
    #[serde(default)]
    pub clients: worker::ClientSched,
    /// The gateways run with `--pin-workers true` (`false`: `bench run --unpinned`, the
    /// kernel places their worker threads; docs/PERFORMANCE-HISTORY.md, round 23). A run's JSON
    /// from before round 23 has no such field: its gateways were unpinned.
    #[serde(default)]
    pub pin_workers: bool,
    /// The client worker processes run pinned, one CPU each in turn (`bench run
    /// --pin-clients`, round 27); by default the kernel places them.
    #[serde(default)]
    pub pin_clients: bool,
    /// Connections that stop reading once subscribed, as clients whose network stalled
    /// (spread over the client processes): the gateway closes each with 1013 once the
    /// socket's buffers and its outbox are full, and the others should not notice. Their
    /// messages are not expected.
    #[serde(default)]
    pub stalled: usize,
    /// The gateway's `--queue-frames` (`None`: the bench's 256, `GATEWAY_FLAGS`).
    #[serde(default)]
    pub queue_frames: Option<usize>,
}

/// The gateway's default `--ping-interval-secs` (with no flag or environment variable).
pub fn default_ping_secs() -> u64 {
    gateway::config::Config::load_from(["gateway"]).map_or(0, |c| c.ping_interval_secs)
}

/// Connections per second one worker opens unless the scenario sets a ramp.
pub const WORKER_CONNECT_RATE: u32 = 20_000;

/// How many connections each client worker process of one target holds: at most
/// [`PER_WORKER`] each, and at least `min_workers` processes while each still gets a
/// connection, as even as they can be. Real clients read in parallel on their own
/// machines; one process holding all of a small scenario's connections would read them
/// one after another on one core, and its last read would come that much later.
pub fn worker_split(conns: usize, min_workers: usize) -> Vec<usize> {
    let n = conns.div_ceil(PER_WORKER).max(min_workers.min(conns));
    (0..n)
        .map(|i| conns / n + usize::from(i < conns % n))
        .collect()
}

/// At least this many worker processes for each of `gateways` targets on a machine of
/// `cores`: together, one per core.
pub(super) fn min_workers_per_target(gateways: usize, cores: usize) -> usize {
    cores.div_ceil(gateways.max(1))
}

/// Worker processes a scenario starts on a machine of `cores`: per gateway,
/// [`worker_split`] of its connections.
pub fn workers_for(s: &Scenario, cores: usize) -> usize {
    let gateways = s.gateways.max(1);
    gateways * worker_split(s.conns / gateways, min_workers_per_target(gateways, cores)).len()
}

/// Connections per second for each of the scenario's workers: its ramp shared among them
/// (at least 1), or [`WORKER_CONNECT_RATE`].
pub fn worker_connect_rate(s: &Scenario, cores: usize) -> u32 {
    match s.ramp {
        None => WORKER_CONNECT_RATE,
        Some(total) => {
            let workers = u32::try_from(workers_for(s, cores).max(1)).unwrap_or(u32::MAX);
            (total / workers).max(1)
        }
    }
}

/// The standard scenarios (`make bench`) or small ones (`make bench-quick`, and `tiny`
/// for `make test`).
pub fn scenarios(size: &str) -> Vec<Scenario> {
    let sc = |name: &str,
              gateways,
              conns,
              channels,
              rate,
              duration_s,
              window_ms,
              via_redis,
              baseline| Scenario {
        name: name.into(),
        gateways,
        conns,
        channels,
        rate,
        duration_s,
        window_ms,
        via_redis,
        payload: STANDARD_PAYLOAD,
        baseline,
        server: worker::Protocol::Pushfleet,
        redis_bus: false,
        ramp: None,
        ping_secs: None,
        clients: worker::ClientSched::Batch,
        pin_workers: true,
        pin_clients: false,
        stalled: 0,
        queue_frames: None,
    };
    // Idle scenarios ping every few seconds, so that two rounds of pings fit in a short
    // window (what a ping costs does not depend on the interval).
    let idle = |name: &str, conns, ping_secs| Scenario {
        ping_secs: Some(ping_secs),
        ..sc(name, 1, conns, 1, 0, 0, 1000, false, false)
    };
    // The same load on Pushfleet and on its peers. Pushfleet and Socket.IO run as a fleet
    // would, on Redis, and the backend publishes straight to Redis (Pushfleet's envelope;
    // for Socket.IO what `@socket.io/redis-emitter` sends); the plain Node broadcaster has
    // no bus and gets the same messages over HTTP.
    let compare = |conns: usize, rate: u32, duration_s: u64| {
        let pf = Scenario {
            redis_bus: true,
            ..sc(
                "compare-pushfleet",
                1,
                conns,
                1,
                rate,
                duration_s,
                1000,
                true,
                false,
            )
        };
        let sio = Scenario {
            name: "compare-socketio".into(),
            server: worker::Protocol::Socketio,
            window_ms: 0,
            ..pf.clone()
        };
        let ws = Scenario {
            name: "compare-nodews".into(),
            server: worker::Protocol::Plain,
            window_ms: 0,
            via_redis: false,
            ..pf.clone()
        };
        [pf, sio, ws]
    };
    // Clients whose network stalls: `stalled` of the connections stop reading once
    // subscribed, the rest read on. Window 0 and 16 KiB messages, so that a stalled
    // socket's buffers (the kernel's, which grow to megabytes, then the gateway's outbox,
    // at the product's default of 64 frames) fill within the run and the gateway closes
    // it; the same load with none stalled, just before, is what the readers get without them.
    let stall = |name: &str, conns, stalled, rate, duration_s| Scenario {
        payload: 16 * 1024,
        stalled,
        queue_frames: Some(64),
        ..sc(name, 1, conns, 1, rate, duration_s, 0, false, false)
    };
    match size {
        "tiny" => vec![
            idle("idle", 20, 1),
            sc("fanout", 1, 50, 1, 20, 2, 200, false, true),
            sc("fleet", 2, 40, 2, 20, 2, 100, true, false),
            stall("stalled", 10, 2, 500, 4),
        ],
        // About a minute in all: 3 s of publishing (three batches at a 1 s window) and
        // pings every 2 s are enough to show the figures; `full` is the measurement.
        "quick" => vec![
            idle("idle-3k", 3_000, 2),
            sc("fanout-3k", 1, 3_000, 1, 100, 3, 1000, false, true),
            sc("latency-500", 1, 500, 1, 100, 3, 0, false, false),
            sc("fleet-3x1k", 3, 3_000, 1, 100, 3, 1000, true, false),
        ]
        .into_iter()
        .chain(compare(500, 100, 3))
        .collect(),
        _ => vec![
            idle("idle-15k", 15_000, 5),
            // CPU per frame and latency against connection count (the same load, shorter).
            sc("fanout-1k", 1, 1_000, 1, 100, 5, 1000, false, true),
            sc("fanout-3k", 1, 3_000, 1, 100, 5, 1000, false, true),
            sc("fanout-7.5k", 1, 7_500, 1, 100, 5, 1000, false, true),
            sc("fanout-15k", 1, 15_000, 1, 100, 10, 1000, false, true),
            // The same with the smallest messages the bench sends (timestamp and sequence
            // number only): how latency at 15k depends on the frame size.
            Scenario {
                payload: 0,
                ..sc("fanout-15k-small", 1, 15_000, 1, 100, 10, 1000, false, true)
            },
            // fanout-15k with the messages taken in from Redis (a Redis bus, the backend
            // publishing straight to it) instead of one HTTP request each: how much of
            // the gap to the bare write is the HTTP publishing.
            Scenario {
                redis_bus: true,
                ..sc("fanout-15k-redis", 1, 15_000, 1, 100, 10, 1000, true, true)
            },
            sc("latency-500", 1, 500, 1, 100, 10, 0, false, false),
            // The cost of taking a message in, on the Redis bus: one subscriber, window 0,
            // so CPU per frame is CPU per message; straight from Redis, and through
            // `POST /api/publish` (which publishes to Redis itself).
            Scenario {
                redis_bus: true,
                ..sc("ingest-redis", 1, 1, 1, 100, 10, 0, true, false)
            },
            Scenario {
                redis_bus: true,
                ..sc("ingest-http-redis", 1, 1, 1, 100, 10, 0, false, false)
            },
            // The embedded bus through the API, as fanout-15k publishes.
            sc("ingest-http-memory", 1, 1, 1, 100, 10, 0, false, false),
            sc("fleet-3x5k", 3, 15_000, 1, 100, 10, 1000, true, false),
            stall("stalled-0-of-200", 200, 0, 100, 10),
            stall("stalled-20-of-200", 200, 20, 100, 10),
            sc(
                "channels-20x750",
                1,
                15_000,
                20,
                100,
                10,
                1000,
                false,
                false,
            ),
        ]
        .into_iter()
        .chain(compare(1_000, 100, 10))
        .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(name: &str) -> Scenario {
        scenarios("full")
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no scenario {name}"))
    }

    #[test]
    fn a_ramp_is_shared_among_the_workers() {
        let mut s = scenario("fanout-15k");
        assert_eq!(
            workers_for(&s, 2),
            3,
            "15,000 connections, 5,000 per worker"
        );
        assert_eq!(workers_for(&s, 4), 4, "at least one per core");
        assert_eq!(
            worker_connect_rate(&s, 2),
            WORKER_CONNECT_RATE,
            "no ramp set"
        );
        s.ramp = Some(3_000);
        assert_eq!(worker_connect_rate(&s, 2), 1_000);
        s.ramp = Some(1);
        assert_eq!(
            worker_connect_rate(&s, 2),
            1,
            "never 0: a worker must connect"
        );
        let mut fleet = scenario("fleet-3x5k");
        assert_eq!(workers_for(&fleet, 2), 3, "one worker per gateway");
        assert_eq!(workers_for(&fleet, 4), 6, "two per gateway on four cores");
        fleet.ramp = Some(900);
        assert_eq!(worker_connect_rate(&fleet, 2), 300);
        assert_eq!(workers_for(&scenario("latency-500"), 2), 2, "one per core");
        assert_eq!(
            workers_for(&scenario("ingest-redis"), 2),
            1,
            "one connection"
        );
    }

    #[test]
    fn connections_are_split_evenly_over_enough_workers() {
        assert_eq!(
            worker_split(15_000, 2),
            vec![5_000; 3],
            "at most 5,000 each"
        );
        assert_eq!(worker_split(7_500, 2), vec![3_750, 3_750]);
        assert_eq!(worker_split(500, 2), vec![250, 250], "one per core");
        assert_eq!(worker_split(5_001, 1), vec![2_501, 2_500]);
        assert_eq!(
            worker_split(3, 4),
            vec![1, 1, 1],
            "none without a connection"
        );
        assert!(worker_split(0, 2).is_empty());
    }
}
