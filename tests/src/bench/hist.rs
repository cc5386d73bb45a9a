//! A log-bucketed histogram of microseconds (2 % resolution) that merges across processes.

use serde::{Deserialize, Serialize};

const GROWTH: f64 = 1.02;

/// Counts per bucket; bucket `i` holds values in `[GROWTH^i, GROWTH^(i+1))` µs, bucket 0
/// also holds 0.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Histogram {
    pub counts: Vec<u64>,
    pub total: u64,
    pub max_us: u64,
}

impl Histogram {
    fn bucket(us: u64) -> usize {
        if us <= 1 {
            0
        } else {
            ((us as f64).ln() / GROWTH.ln()) as usize
        }
    }

    pub fn record(&mut self, us: u64) {
        let b = Self::bucket(us);
        if self.counts.len() <= b {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The value at quantile `q` (0..=1), in µs (upper edge of its bucket).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let want = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return (GROWTH.powi(i as i32 + 1) as u64).min(self.max_us);
            }
        }
        self.max_us
    }

    /// (upper edge µs, cumulative fraction) points, for plotting.
    pub fn cdf(&self) -> Vec<(f64, f64)> {
        let mut seen = 0u64;
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| {
                seen += c;
                (GROWTH.powi(i as i32 + 1), seen as f64 / self.total as f64)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_two_percent() {
        let mut h = Histogram::default();
        for us in 1..=10_000u64 {
            h.record(us);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.03, "{p50}");
        assert_eq!(h.quantile(1.0), 10_000);
        let mut g = Histogram::default();
        g.record(20_000);
        h.merge(&g);
        assert_eq!(h.total, 10_001);
        assert_eq!(h.max_us, 20_000);
    }
}
