//! Token buckets: per-connection command rate and per-address connect rate; and the log
//! summary of the clients the operator's limits turn away.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Config;

/// A token bucket: `rate` tokens per second, at most `burst` stored.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> Self {
        TokenBucket {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
    }

    /// Takes one token if there is one.
    pub fn allow(&mut self) -> bool {
        self.refill(Instant::now());
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Time until the next token.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0))
    }

    /// Whether the bucket has refilled completely by `now` (then it can be forgotten).
    fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }
}

/// Most client addresses tracked at once; beyond it, full buckets are forgotten first,
/// and if every bucket is still draining the new address is let through untracked
/// (fail open: the limit protects the gateway, the connection cap still holds).
const MAX_TRACKED: usize = 65_536;

/// Per-address connect rate. Policy when exceeded: **refuse** the upgrade with HTTP 429.
pub struct IpLimiter {
    rate: u32,
    burst: u32,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl IpLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        IpLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `ip`.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(&ip) && map.len() >= MAX_TRACKED {
            let now = Instant::now();
            map.retain(|_, b| !b.is_full_at(now));
            if map.len() >= MAX_TRACKED {
                return true;
            }
        }
        map.entry(ip)
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst))
            .allow()
    }
}

/// A limit an operator sets whose refusals are logged ([`LimitLog`]), besides being
/// counted: upgrades in `pushfleet_connections_rejected_total`, slow consumers in
/// `pushfleet_connections_closed_total`. The discriminant is the limit's slot there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `--max-connections` (503 `server_full`).
    Connections = 0,
    /// `--max-connects-per-ip-per-sec` / `--connect-burst-per-ip` (429 `rate_limited`).
    ConnectRate = 1,
    /// `--allowed-origins` (403 `origin_not_allowed`).
    Origin = 2,
    /// `--queue-frames`: a connection that fell that far behind (close 1013 `slow consumer`).
    QueueFrames = 3,
}

/// How often at most [`LimitLog`] writes a line per limit.
pub const LIMIT_LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct LimitSlot {
    /// Refusals not yet in a log line.
    pending: u64,
    /// When the last line was written.
    last: Option<Instant>,
}

/// Refusals per [`Limit`], summarised for the log: the first refusal is logged at once,
/// later ones at most once per [`LIMIT_LOG_EVERY`] with the count since the last line. An
/// operator whose clients get 503, 429 or 1013 finds the flag that refused them in the
/// log, and a flood of refusals costs one line per limit per 10 s. The counts are bounded
/// by the refusals themselves (a `u64` each); nothing is queued.
#[derive(Debug, Default)]
pub struct LimitLog {
    slots: [Mutex<LimitSlot>; 4],
}

impl LimitLog {
    /// Counts one refusal by `limit` and writes the line that is due, if one is, naming the
    /// flag and its value in `cfg`, and `client`, the address of the refusal that wrote it,
    /// where the caller knows it.
    pub fn refused(&self, limit: Limit, cfg: &Config, client: Option<IpAddr>) {
        let Some(n) = self.note(limit) else {
            return;
        };
        let line = match limit {
            Limit::Connections => format!(
                "{n} WebSocket upgrade(s) refused with 503 server_full since the last such \
                 line: the gateway holds --max-connections {} (PUSHFLEET_MAX_CONNECTIONS) \
                 connections; raise it or add gateways",
                cfg.max_connections
            ),
            Limit::ConnectRate => format!(
                "{n} WebSocket upgrade(s) refused with 429 rate_limited since the last such \
                 line: more than --max-connects-per-ip-per-sec {} after a burst of \
                 --connect-burst-per-ip {} from one address; behind a proxy that ends TCP set \
                 --trusted-proxies, for a load test from a few addresses raise both",
                cfg.max_connects_per_ip_per_sec, cfg.connect_burst_per_ip
            ),
            Limit::Origin => format!(
                "{n} WebSocket upgrade(s) refused with 403 origin_not_allowed since the last \
                 such line: an Origin not in --allowed-origins"
            ),
            Limit::QueueFrames => format!(
                "{n} connection(s) closed with 1013 slow consumer since the last such line: \
                 the client fell --queue-frames {} (PUSHFLEET_QUEUE_FRAMES) frames behind with \
                 its socket's buffers full (a stalled or slow network, or a client that stopped \
                 reading); raise it to ride out longer stalls, at the cost of memory per \
                 lagging connection",
                cfg.queue_frames
            ),
        };
        match client {
            Some(client) => tracing::warn!(%client, "{line}"),
            None => tracing::warn!("{line}"),
        }
    }

    /// Counts one refusal by `limit`; `Some(n)` when a line is due now, `n` being the
    /// refusals it reports (this one and those since the last line).
    fn note(&self, limit: Limit) -> Option<u64> {
        self.note_at(limit, Instant::now())
    }

    fn note_at(&self, limit: Limit, now: Instant) -> Option<u64> {
        let mut slot = self.slots[limit as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        slot.pending += 1;
        if slot
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < LIMIT_LOG_EVERY)
        {
            return None;
        }
        slot.last = Some(now);
        Some(std::mem::take(&mut slot.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_refills() {
        let mut rl = TokenBucket::new(10, 3);
        assert!(rl.allow() && rl.allow() && rl.allow());
        assert!(!rl.allow());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(rl.allow());
        assert!(!rl.allow());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(rl.allow() && rl.allow() && rl.allow());
        assert!(!rl.allow(), "never more than the burst");
    }

    #[tokio::test(start_paused = true)]
    async fn per_address() {
        let l = IpLimiter::new(1, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(l.allow(a) && l.allow(a));
        assert!(!l.allow(a));
        assert!(l.allow(b), "another address has its own bucket");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(l.allow(a));
    }

    #[test]
    fn refusals_are_logged_at_once_then_summed_every_ten_seconds() {
        let log = LimitLog::default();
        let t0 = Instant::now();
        assert_eq!(
            log.note_at(Limit::Connections, t0),
            Some(1),
            "the first at once"
        );
        for k in 1..=4 {
            let t = t0 + Duration::from_secs(2 * k);
            assert_eq!(log.note_at(Limit::Connections, t), None, "then held back");
        }
        assert_eq!(
            log.note_at(Limit::ConnectRate, t0 + Duration::from_secs(1)),
            Some(1),
            "each limit has its own line"
        );
        assert_eq!(
            log.note_at(Limit::Connections, t0 + LIMIT_LOG_EVERY),
            Some(5),
            "ten seconds on: the four held back and this one"
        );
        assert_eq!(
            log.note_at(
                Limit::Connections,
                t0 + LIMIT_LOG_EVERY * 2 - Duration::from_millis(1)
            ),
            None
        );
        assert_eq!(
            log.note_at(Limit::Connections, t0 + LIMIT_LOG_EVERY * 3),
            Some(2)
        );
        assert_eq!(
            log.note_at(Limit::Origin, t0 + LIMIT_LOG_EVERY * 3),
            Some(1)
        );
        assert_eq!(
            log.note_at(Limit::QueueFrames, t0 + LIMIT_LOG_EVERY * 3),
            Some(1),
            "slow consumers have their own line too"
        );
    }
}
