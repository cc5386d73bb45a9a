//! Token buckets: per-connection command rate and per-address connect rate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

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
}
